"""The live runs table: 10,000 runs, only the visible rows rendered, updated in place.

`apply(changeset)` merges what changed since the last tick; the order (sort + filter) is rebuilt
from keys kept per run, so a tick costs the changed runs plus one sort of prepared keys. The
selection is kept by run id and the scroll offset is never touched by an update. Columns that do
not fit are dropped, least useful first, so 80 columns still shows what matters.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from backend.facade import Run, RunState, format_eta, utcnow

from .safe_text import visible


def human_duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def run_duration(run: Run, now: datetime) -> float:
    """Age while waiting, run time once admitted, total time once finished."""
    start = run.admitted_at or run.submitted_at
    end = run.finished_at or now
    return (end - start).total_seconds()


def format_cost(run: Run) -> str:
    if run.cost_micro_usd is None:
        return "unpriced"
    micro = run.cost_micro_usd
    if 0 < micro < 10_000:  # under a cent: a minute of a CPU slot must not read as $0.00
        return f"${micro / 1_000_000:.4f}"
    return f"${micro / 1_000_000:,.2f}"


def format_metric(run: Run) -> str:
    name = run.primary_metric
    if not name or name not in run.metrics:
        return ""
    # The value first: when the column is narrow, the name is what gets cut.
    return f"{run.metrics[name]:.4g} {name}"


def format_gpus(run: Run) -> str:
    if run.gpus == 0:
        return "cpu"
    return f"{run.gpus}×{run.gpu_type}" if run.gpu_type else str(run.gpus)


def format_queue(run: Run, now: datetime | None = None) -> str:
    """`#3`, and with `now` the estimated start: `#3 ~12m` (the tilde marks an estimate)."""
    if run.queue_position is None:
        return ""
    position = f"{'~' if run.queue_position_approximate else ''}#{run.queue_position}"
    if now is None or run.eta is None:
        return position
    return f"{position} {format_eta(run.eta, now)}"


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int  # the width it wants
    min_width: int
    drop_rank: int  # dropped first when the table is too narrow: higher goes first; 0 never
    flex: bool = False
    align_right: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("id", "ID", 18, 18, 0),
    Column("name", "NAME", 24, 10, 0, flex=True),
    Column("experiment", "EXPERIMENT", 16, 10, 7, flex=True),
    Column("state", "STATE", 11, 11, 0),
    Column("queue", "QUEUE", 10, 5, 3),
    Column("gpus", "GPUS", 8, 6, 4),
    Column("assigned", "ASSIGNED", 22, 10, 8, flex=True),
    Column("age", "AGE", 7, 7, 5),
    Column("cost", "COST", 9, 8, 2, align_right=True),
    Column("metric", "METRIC", 16, 12, 6),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)

STATE_ORDER = {s: i for i, s in enumerate(RunState)}

SORT_KEYS: dict[str, Callable[[Run], object]] = {
    "id": lambda r: r.id,
    "name": lambda r: r.name.lower(),
    "experiment": lambda r: (r.experiment or "").lower(),
    "state": lambda r: (STATE_ORDER[r.state], r.queue_position or 0),
    "queue": lambda r: (r.queue_position is None, r.queue_position or 0),
    "gpus": lambda r: (r.gpus, r.gpu_type or ""),
    "assigned": lambda r: ",".join(r.assigned),
    "age": lambda r: r.submitted_at.timestamp(),
    "cost": lambda r: r.cost_micro_usd if r.cost_micro_usd is not None else -1,
    "metric": lambda r: r.metrics.get(r.primary_metric or "", float("inf")),
}


@functools.lru_cache(maxsize=16)
def layout(width: int) -> list[tuple[Column, int]]:
    """The columns that fit `width` and their widths (one space between columns)."""
    cols = list(COLUMNS)
    while len(cols) > 1 and sum(c.min_width for c in cols) + len(cols) - 1 > width:
        victim = max(cols, key=lambda c: c.drop_rank)
        if victim.drop_rank == 0:
            break
        cols.remove(victim)
    widths = {c.key: c.min_width for c in cols}
    spare = width - sum(widths.values()) - (len(cols) - 1)
    # Give fixed columns what they want first, then share the rest among the flexible ones.
    for c in cols:
        if not c.flex and spare > 0:
            extra = min(spare, c.width - widths[c.key])
            widths[c.key] += extra
            spare -= extra
    flex = [c for c in cols if c.flex]
    while spare > 0 and flex:
        for c in flex:
            if spare <= 0:
                break
            widths[c.key] += 1
            spare -= 1
    return [(c, widths[c.key]) for c in cols]


def fit(text: str, width: int, right: bool = False) -> str:
    if cell_len(text) > width:
        text = text[: max(0, width - 1)]
        while cell_len(text) > width - 1 and text:
            text = text[:-1]
        text += "…"
    pad = " " * (width - cell_len(text))
    return pad + text if right else text + pad


class RunTable(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    RunTable { background: $surface; overflow-x: hidden; }
    RunTable > .run-table--header { background: $panel; color: $foreground; text-style: bold; }
    RunTable > .run-table--cursor { background: $primary 40%; }
    RunTable:focus > .run-table--cursor { background: $primary; color: $text; }
    RunTable > .run-table--empty { color: $text-muted; text-style: italic; }
    RunTable > .run-table--QUEUED { color: $warning; }
    RunTable > .run-table--PENDING { color: $secondary; }
    RunTable > .run-table--DOWNLOADING { color: $secondary; }
    RunTable > .run-table--PROCESSING { color: $accent; text-style: bold; }
    RunTable > .run-table--STORING { color: $secondary; }
    RunTable > .run-table--COMPLETED { color: $success; }
    RunTable > .run-table--FAILED { color: $error; text-style: bold; }
    RunTable > .run-table--HALTED { color: $text-muted; }
    """
    COMPONENT_CLASSES = {
        "run-table--header",
        "run-table--cursor",
        "run-table--empty",
        *(f"run-table--{s.value}" for s in RunState),
    }
    BINDINGS = [
        Binding("j,down", "cursor_down", "Down", show=False, id="table.down"),
        Binding("k,up", "cursor_up", "Up", show=False, id="table.up"),
        Binding("g,home", "cursor_top", "Top", show=False, id="table.top"),
        Binding("G,end", "cursor_bottom", "Bottom", show=False, id="table.bottom"),
        Binding("pagedown,ctrl+f", "page_down", "Page down", show=False, id="table.page_down"),
        Binding("pageup,ctrl+b", "page_up", "Page up", show=False, id="table.page_up"),
        Binding("enter", "select", "Detail", id="table.select"),
        Binding("s", "sort_next", "Sort", id="table.sort"),
        Binding("S", "sort_reverse", "Reverse", show=False, id="table.sort_reverse"),
    ]

    cursor: reactive[int] = reactive(0, always_update=True)
    sort_key: reactive[str] = reactive("age")
    sort_reverse: reactive[bool] = reactive(True)

    class Selected(Message):
        def __init__(self, run: Run) -> None:
            super().__init__()
            self.run = run

    class CursorMoved(Message):
        def __init__(self, run: Run | None) -> None:
            super().__init__()
            self.run = run

    def __init__(self, *, clock: Callable[[], datetime] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._clock = clock or utcnow
        self._runs: dict[str, Run] = {}
        self._sort_values: dict[str, object] = {}
        self._haystack: dict[str, str] = {}
        self._order: list[str] = []
        self._filter: re.Pattern[str] | None = None
        self._selected_id: str | None = None
        self._now = self._clock()

    # ---------------------------------------------------------------- data
    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def total_count(self) -> int:
        return len(self._runs)

    @property
    def selected_run(self) -> Run | None:
        if 0 <= self.cursor < len(self._order):
            return self._runs[self._order[self.cursor]]
        return None

    def runs(self) -> Iterable[Run]:
        return self._runs.values()

    def apply(self, changed: Iterable[Run], deleted: Iterable[str] = (), *, full: bool = False) -> None:
        """Merge a ChangeSet's runs; keeps the selected run selected and the scroll offset as is."""
        if full:
            self._runs.clear()
            self._sort_values.clear()
            self._haystack.clear()
        sort = SORT_KEYS[self.sort_key]
        for run in changed:
            self._runs[run.id] = run
            self._sort_values[run.id] = (sort(run), run.id)  # ties break on id: no flicker
            self._haystack.pop(run.id, None)  # rebuilt when a filter needs it
        for run_id in deleted:
            self._runs.pop(run_id, None)
            self._sort_values.pop(run_id, None)
            self._haystack.pop(run_id, None)
        self._rebuild_order()

    @staticmethod
    def _search_text(run: Run) -> str:
        return " ".join(
            (
                run.id,
                run.name,
                run.experiment or "",
                run.state.value,
                format_queue(run),
                format_gpus(run),
                " ".join(run.assigned),
                format_cost(run),
                format_metric(run),
                run.error_code or "",
            )
        )

    def _rebuild_order(self) -> None:
        selected = self._selected_id
        ids: Iterable[str] = self._runs.keys()
        if self._filter is not None:
            search = self._filter.search
            hay = self._haystack
            for i, run in self._runs.items():
                if i not in hay:
                    hay[i] = self._search_text(run)
            ids = [i for i in ids if search(hay[i])]
        self._order = sorted(ids, key=self._sort_values.__getitem__, reverse=self.sort_reverse)
        if selected is not None and selected in self._runs:
            try:
                self.cursor = self._order.index(selected)
            except ValueError:
                self.cursor = min(self.cursor, max(0, len(self._order) - 1))
        else:
            self.cursor = min(self.cursor, max(0, len(self._order) - 1))
        self._selected_id = self._order[self.cursor] if self._order else None
        self.virtual_size = Size(self.scrollable_content_region.width, len(self._order) + 1)
        self.refresh()

    def set_filter(self, query: str) -> bool:
        """Show only rows matching `query` in any column (regex, else text). False if it is bad."""
        ok = True
        if not query:
            self._filter = None
        else:
            flags = 0 if any(c.isupper() for c in query) else re.IGNORECASE
            try:
                self._filter = re.compile(query, flags)
            except re.error:
                self._filter = re.compile(re.escape(query), flags)
                ok = False
        self._rebuild_order()
        return ok

    @property
    def filter_text(self) -> str:
        return self._filter.pattern if self._filter is not None else ""

    def tick(self) -> None:
        """Redraw the visible rows so ages and costs move; nothing else is recomputed."""
        self._now = self._clock()
        self.refresh()

    # ---------------------------------------------------------------- sorting
    def watch_sort_key(self, key: str) -> None:
        sort = SORT_KEYS[key]
        self._sort_values = {i: (sort(r), i) for i, r in self._runs.items()}
        self._rebuild_order()

    def watch_sort_reverse(self) -> None:
        self._rebuild_order()

    def action_sort_next(self) -> None:
        visible_keys = [c.key for c, _ in layout(self.scrollable_content_region.width or 80)]
        i = visible_keys.index(self.sort_key) if self.sort_key in visible_keys else -1
        self.sort_key = visible_keys[(i + 1) % len(visible_keys)]

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse

    # ---------------------------------------------------------------- cursor
    def watch_cursor(self, old: int, new: int) -> None:
        if self._order:
            self._selected_id = self._order[max(0, min(new, len(self._order) - 1))]
        self.refresh()

    def _move_to(self, row: int) -> None:
        if not self._order:
            return
        row = max(0, min(row, len(self._order) - 1))
        self.cursor = row
        height = max(1, self.scrollable_content_region.height - 1)
        if row < self.scroll_y:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif row >= self.scroll_y + height:
            self.scroll_to(y=row - height + 1, animate=False, immediate=True)
        self.post_message(self.CursorMoved(self.selected_run))

    def action_cursor_down(self) -> None:
        self._move_to(self.cursor + 1)

    def action_cursor_up(self) -> None:
        self._move_to(self.cursor - 1)

    def action_cursor_top(self) -> None:
        self._move_to(0)

    def action_cursor_bottom(self) -> None:
        self._move_to(len(self._order) - 1)

    def action_page_down(self) -> None:
        step = max(1, self.scrollable_content_region.height - 1)
        self.scroll_to(y=self.scroll_y + step, animate=False, immediate=True)
        self._move_to(self.cursor + step)

    def action_page_up(self) -> None:
        step = max(1, self.scrollable_content_region.height - 1)
        self.scroll_to(y=self.scroll_y - step, animate=False, immediate=True)
        self._move_to(self.cursor - step)

    def action_select(self) -> None:
        run = self.selected_run
        if run is not None:
            self.post_message(self.Selected(run))

    def on_click(self, event: events.Click) -> None:
        row = int(self.scroll_y) + event.y - 1
        if event.y >= 1 and 0 <= row < len(self._order):
            self._move_to(row)
            if event.chain >= 2:
                self.action_select()

    def on_resize(self) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width, len(self._order) + 1)

    # ---------------------------------------------------------------- rendering
    def _cells(self, run: Run) -> dict[str, str]:
        return {
            "id": run.id,
            "name": visible(run.name),
            "experiment": visible(run.experiment or ""),
            "state": run.state.value,
            "queue": format_queue(run, self._now),
            "gpus": format_gpus(run),
            "assigned": visible(", ".join(run.assigned) or (run.node or "")),
            "age": human_duration(run_duration(run, self._now)),
            "cost": format_cost(run),
            "metric": visible(format_metric(run)),
        }

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        cols = layout(width)
        if y == 0:
            return self._header(cols, width)
        row = int(self.scroll_y) + y - 1
        if row >= len(self._order):
            if row == 0 and y == 1:
                return self._empty_line(width)
            return Strip.blank(width, base)
        run = self._runs[self._order[row]]
        cells = self._cells(run)
        cursor = row == self.cursor
        row_style = base + self.get_component_rich_style("run-table--cursor") if cursor else base
        state_style = row_style + self.get_component_rich_style(f"run-table--{run.state.value}")
        if cursor:
            state_style = row_style + Style(bold=True)
        segments: list[Segment] = []
        for i, (col, w) in enumerate(cols):
            if i:
                segments.append(Segment(" ", row_style))
            text = fit(cells[col.key], w, col.align_right)
            segments.append(Segment(text, state_style if col.key == "state" else row_style))
        return Strip(segments).crop_extend(0, width, row_style)

    def _header(self, cols: list[tuple[Column, int]], width: int) -> Strip:
        style = self.rich_style + self.get_component_rich_style("run-table--header")
        parts = []
        for col, w in cols:
            title = col.title
            if col.key == self.sort_key:
                title += "▼" if self.sort_reverse else "▲"
            parts.append(fit(title, w, col.align_right))
        return Strip([Segment(" ".join(parts), style)]).crop_extend(0, width, style)

    def _empty_line(self, width: int) -> Strip:
        style = self.rich_style + self.get_component_rich_style("run-table--empty")
        if self._runs:
            text = f" No run matches /{visible(self.filter_text)}  (esc clears the filter)"
        else:
            text = " No runs yet. Press n to write a manifest and submit it."
        return Strip([Segment(text, style)]).crop_extend(0, width, style)
