"""A one-line modal prompt with local path completion (the bucket browser, the editor) or completion
from a list (a run's priority)."""
from __future__ import annotations

import os
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, Label, Static

_PROMPT_CSS = """
#prompt-box {
    width: 76; max-width: 100%; height: auto; padding: 1 2;
    background: $panel; border: round $accent;
}
#prompt-box Label { width: 100%; }
#prompt-box Input { margin-top: 1; }
#prompt-hint { color: $text-muted; margin-top: 1; }
"""


class PathSuggester(Suggester):
    """Completes the last segment of a local path from what is on disk (folders get a `/`)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        expanded = os.path.expanduser(value)
        folder, _, stem = expanded.rpartition("/")
        folder_path = Path(folder or ".") if folder or not value.startswith("/") else Path("/")
        try:
            names = sorted(n for n in os.listdir(folder_path) if n.startswith(stem))
        except OSError:
            return None
        if not stem:
            names = [n for n in names if not n.startswith(".")]
        if not names:
            return None
        name = names[0]
        suffix = "/" if (folder_path / name).is_dir() else ""
        # Keep what the user typed (e.g. `~`) and add only the completion.
        return value + name[len(stem) :] + suffix


class InputPrompt(ModalScreen[str | None]):
    """Ask for one line; `enter` answers it, `esc` cancels (None)."""

    DEFAULT_CSS = "InputPrompt { align: center middle; }" + _PROMPT_CSS
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="prompt.cancel"),
        Binding("tab", "complete", "Complete", show=False, id="prompt.complete"),
    ]

    def __init__(
        self, question: str, value: str = "", *, paths: bool = False, hint: str = "",
        suggester: Suggester | None = None,
    ) -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.paths = paths
        self.hint = hint
        self.suggester = suggester

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Label(self.question, markup=False)
            yield Input(
                value=self.value,
                suggester=PathSuggester() if self.paths else self.suggester,
                id="prompt-input",
            )
            if self.hint:
                yield Static(self.hint, id="prompt-hint", markup=False)

    def action_complete(self) -> None:
        field = self.query_one(Input)
        if field._suggestion:
            field.value = field._suggestion
            field.cursor_position = len(field.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
