"""The bucket browser's list: buckets, prefixes (as folders) and objects, filled page by page.

A DataTable whose every cell is a `Text` built from data (DataTable reads plain `str` cells as
markup, so keys never go in as `str`). It asks for the next page with `NeedMore` when the cursor
comes near the end of what is loaded; the screen decides whether there is more to fetch.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from ..formatting import human_bytes
from .safe_text import visible

NEAR_END_ROWS = 15


@dataclass(frozen=True)
class Entry:
    kind: str  # "bucket", "prefix" or "object"
    name: str  # what the row shows: bucket name, last segment (+ "/" for a prefix)
    key: str = ""  # full key (prefixes end with "/"); "" for a bucket
    size: int | None = None
    modified: datetime | None = None

    @property
    def is_container(self) -> bool:
        return self.kind in ("bucket", "prefix")


def _when(ts: datetime | None) -> str:
    return "" if ts is None else ts.strftime("%Y-%m-%d %H:%M")


class ObjectList(DataTable):
    DEFAULT_CSS = """
    ObjectList { height: 1fr; }
    """
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="list.down"),
        Binding("k", "cursor_up", "Up", show=False, id="list.up"),
        Binding("g", "scroll_top", "Top", show=False, id="list.top"),
        Binding("G", "scroll_bottom", "Bottom", show=False, id="list.bottom"),
    ]

    class NeedMore(Message):
        """The cursor is near the last loaded row."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        # A listing too short to scroll is "near the end" at once; the screen checks again
        # when the message arrives, since the level may have changed meanwhile.
        self._all: list[Entry] = []
        self._shown: list[Entry] = []
        self._filter = ""

    def on_mount(self) -> None:
        self._add_columns()

    # -- columns that fit the width: the name takes what size and date leave ------------------
    def _name_width(self) -> int:
        width = self.size.width or 80
        return max(12, width - 9 - 16 - 2 * 3 - 2)

    def _add_columns(self) -> None:
        self.add_column("NAME", width=self._name_width(), key="name")
        self.add_column("SIZE".rjust(9), width=9, key="size")
        self.add_column("MODIFIED", width=16, key="modified")

    def on_resize(self) -> None:
        if self.columns and self.columns["name"].width != self._name_width():
            self._rebuild(keep_cursor=True)

    # -- content -------------------------------------------------------------------------------
    @property
    def entries(self) -> list[Entry]:
        """The rows shown, after the filter."""
        return self._shown

    @property
    def loaded(self) -> int:
        return len(self._all)

    @property
    def selected(self) -> Entry | None:
        if not self._shown or not 0 <= self.cursor_row < len(self._shown):
            return None
        return self._shown[self.cursor_row]

    def set_entries(self, entries: list[Entry], select: str | None = None) -> None:
        self._all = list(entries)
        self._rebuild(keep_cursor=False, select=select)

    def append_entries(self, entries: list[Entry]) -> None:
        self._all.extend(entries)
        new = [e for e in entries if self._matches(e)]
        self._shown.extend(new)
        self.add_rows([self._row(e) for e in new])

    def set_filter(self, text: str) -> None:
        if text != self._filter:
            self._filter = text
            self._rebuild(keep_cursor=False)

    @property
    def filter_text(self) -> str:
        return self._filter

    def _matches(self, entry: Entry) -> bool:
        return not self._filter or self._filter.lower() in entry.name.lower()

    def _row(self, e: Entry) -> list[Text]:
        if e.kind == "bucket":
            name = Text("▪ ", style="dim") + Text(visible(e.name), style="bold")
        elif e.kind == "prefix":
            name = Text("▸ ", style="dim") + Text(visible(e.name), style="bold")
        else:
            name = Text("  ") + Text(visible(e.name))
        name.truncate(self._name_width(), overflow="ellipsis")
        size = "" if e.kind != "object" else human_bytes(e.size)
        return [name, Text(size.rjust(9)), Text(_when(e.modified), style="dim")]

    def _rebuild(self, keep_cursor: bool, select: str | None = None) -> None:
        current = self.selected.key + self.selected.name if keep_cursor and self.selected else None
        self.clear(columns=True)
        self._add_columns()
        self._shown = [e for e in self._all if self._matches(e)]
        self.add_rows([self._row(e) for e in self._shown])
        target = 0
        for i, e in enumerate(self._shown):
            if (current and e.key + e.name == current) or (select is not None and e.name == select):
                target = i
                break
        if self._shown:
            self.move_cursor(row=target, animate=False, scroll=True)

    # -- paging --------------------------------------------------------------------------------
    def watch_cursor_coordinate(self, old, new) -> None:  # type: ignore[override]
        super().watch_cursor_coordinate(old, new)
        self._check_near_end()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._check_near_end()

    def _check_near_end(self) -> None:
        if self.near_end():
            self.post_message(self.NeedMore())

    def near_end(self) -> bool:
        """True when the cursor or the view is near the last loaded row (and no filter is set)."""
        if self._filter or not self.row_count:
            return False  # a filter only searches what is loaded: it must not walk the whole bucket
        bottom_visible = int(self.scroll_y) + self.size.height
        return self.cursor_row >= self.row_count - NEAR_END_ROWS or bottom_visible >= self.row_count
