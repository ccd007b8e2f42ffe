"""The `/` filter of a table, in view: the text while it is typed and after `enter`, with "n of m".

    / seed-0005_______________________________________   10 of 60 runs
    / seed-0005   esc clears · / edits                     10 of 60 runs

It sits just above the footer (never under it) and is hidden while no filter is on. The bar posts
the CommandBar messages (`Typed`, `Entered`, `Cancelled`) that the screen acts on.
"""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from .command_bar import CommandBar
from .safe_text import visible

HINT = "filter: text or regex · enter keeps it · esc clears"


class FilterLine(Horizontal):
    DEFAULT_CSS = """
    FilterLine { height: 1; display: none; background: $panel; }
    FilterLine.-on { display: block; }
    FilterLine #filter-prompt { width: 2; padding-left: 1; color: $accent; text-style: bold; }
    FilterLine CommandBar { dock: none; width: 1fr; padding: 0 1 0 0; }
    FilterLine #filter-text { width: 1fr; }
    FilterLine #filter-count { width: auto; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, noun: str = "rows", **kwargs) -> None:
        super().__init__(**kwargs)
        self.noun = noun
        self.query_text = ""
        self.shown = 0
        self.total = 0

    def compose(self) -> ComposeResult:
        yield Static("/", id="filter-prompt", markup=False)
        yield CommandBar(id="filter-bar")
        yield Static("", id="filter-text")
        yield Static("", id="filter-count", markup=False)

    @property
    def bar(self) -> CommandBar:
        return self.query_one(CommandBar)

    @property
    def editing(self) -> bool:
        return self.bar.is_open

    @property
    def count_text(self) -> str:
        return f"{self.shown:,} of {self.total:,} {self.noun}"

    def edit(self) -> None:
        """Open the bar on the current filter text."""
        self.add_class("-on")
        self.query_one("#filter-text").display = False
        self.bar.open("/", self.query_text, hint=HINT)

    def set_query(self, query: str, shown: int, total: int) -> None:
        """The filter now in force (typed or entered) and how many rows it leaves."""
        self.query_text = query
        self.set_counts(shown, total)
        if not self.editing:
            self.set_class(bool(query), "-on")
            text = self.query_one("#filter-text", Static)
            text.display = bool(query)
            line = Text(visible(query), style="bold")
            line.append("   esc clears · / edits", style="dim")
            text.update(line)

    def set_counts(self, shown: int, total: int) -> None:
        self.shown, self.total = shown, total
        self.query_one("#filter-count", Static).update(self.count_text)
