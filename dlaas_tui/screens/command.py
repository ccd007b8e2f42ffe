"""`:` from any screen: the command bar (widgets/command_bar.py) as a modal over whatever is showing."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import ModalScreen
from textual.suggester import Suggester

from ..widgets.command_bar import CommandBar


class CommandScreen(ModalScreen[str | None]):
    """`:` from any screen: the bar over whatever is showing; dismisses with the command or None."""

    DEFAULT_CSS = """
    CommandScreen { background: $background 0%; align: left bottom; }
    CommandScreen CommandBar { dock: bottom; }
    """

    def __init__(self, suggester: Suggester, history: list[str], *, hint: str = "command") -> None:
        super().__init__()
        self._suggester = suggester
        self._history = history
        self._hint = hint

    def compose(self) -> ComposeResult:
        yield CommandBar(self._suggester, id="command-bar")

    def on_mount(self) -> None:
        bar = self.query_one(CommandBar)
        bar.histories[":"] = list(self._history)
        bar.open(":", hint=self._hint)

    def on_command_bar_entered(self, event: CommandBar.Entered) -> None:
        event.stop()
        self.dismiss(event.value or None)

    def on_command_bar_cancelled(self, event: CommandBar.Cancelled) -> None:
        event.stop()
        self.dismiss(None)
