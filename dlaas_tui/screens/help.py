"""`?`: every key the screen underneath answers to, generated from its live bindings."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from ..keymap import describe


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; background: $background 60%; }
    HelpScreen > VerticalScroll {
        width: 76; max-width: 95%; height: auto; max-height: 90%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    """
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close")]

    def __init__(self, target: Screen) -> None:
        super().__init__()
        self._target = target

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False, expand=False)
        table.add_column(Text("KEY"), style="bold", no_wrap=True, min_width=10)
        table.add_column(Text("ACTION"), no_wrap=True, min_width=14)
        table.add_column(Text("ID (config [keys])"), style="dim", no_wrap=True)
        # The screen's own keys first, then the app's (quit, help, command), then the focused widget's
        # moves: at 80×24 the list scrolls, and what a new user looks for is on top.
        target, app = type(self._target).__name__, type(self.app).__name__
        rank = {target: 0, app: 1}
        for item in sorted(describe(self._target), key=lambda item: rank.get(item.owner, 2)):
            table.add_row(Text(item.keys), Text(item.description), Text(item.binding_id))
        with VerticalScroll() as scroll:
            scroll.border_title = f"Keys: {self._target.__class__.__name__.removesuffix('Screen')}"
            scroll.border_subtitle = "esc closes"
            yield Static(table)
