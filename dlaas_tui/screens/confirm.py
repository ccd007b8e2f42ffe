"""A reusable yes/no modal for anything that destroys or spends: halt, delete, submit, object delete.

    self.app.push_screen(ConfirmScreen("Delete run?", details, confirm_label="Delete", danger=True),
                         callback=lambda ok: ok and self.do_delete())

`details` may be a `str` (shown literally, never as markup; its line breaks are kept, so a caller
passes data in it through `visible()` first) or a rich renderable you built yourself.
`y`/`enter` confirm, `n`/`esc`/`q` cancel; the cancel button has focus first so a stray `enter` is safe
only when the caller wants it (`default_confirm=True`).
"""
from __future__ import annotations

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from rich.text import Text

from ..widgets.safe_text import data_text, visible_lines

# What resuming a run means, said in its confirmation (from the runs table and from the run's screen).
RESUME_DETAILS = ("It goes back to the queue as its next attempt and continues from the checkpoints "
                  "its command saved in CHECKPOINT_DIR. Billing starts again when it gets its devices.")


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; background: $background 60%; }
    ConfirmScreen > #confirm-box {
        width: auto; min-width: 40; max-width: 90%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    ConfirmScreen.-danger > #confirm-box { border: thick $error; }
    ConfirmScreen #confirm-title { text-style: bold; margin-bottom: 1; }
    ConfirmScreen #confirm-details { height: auto; max-height: 20; overflow-y: auto; }
    ConfirmScreen #confirm-buttons { height: auto; margin-top: 1; align-horizontal: right; }
    ConfirmScreen Button { margin-left: 2; min-width: 10; }
    """
    BINDINGS = [
        Binding("y", "confirm", "Yes", id="confirm.yes"),
        Binding("n,escape,q", "cancel", "No", id="confirm.no"),
    ]

    def __init__(
        self,
        title: str,
        details: str | RenderableType = "",
        *,
        confirm_label: str = "Yes",
        cancel_label: str = "Cancel",
        danger: bool = False,
        default_confirm: bool = False,
    ) -> None:
        super().__init__(classes="-danger" if danger else "")
        self._title = title
        self._details = Text(visible_lines(details), end="") if isinstance(details, str) else details
        self._confirm_label = confirm_label
        self._cancel_label = cancel_label
        self._danger = danger
        self._default_confirm = default_confirm

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(data_text(self._title), id="confirm-title")
            if self._details:
                yield Static(self._details, id="confirm-details")
            with Horizontal(id="confirm-buttons"):
                yield Button(self._cancel_label, id="cancel")
                yield Button(
                    f"{self._confirm_label} (y)",
                    id="confirm",
                    variant="error" if self._danger else "primary",
                )

    def on_mount(self) -> None:
        self.query_one("#confirm" if self._default_confirm else "#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
