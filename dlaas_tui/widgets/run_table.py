"""The live runs table: 10,000 runs, only the visible rows rendered, updated in place.

`apply(changeset)` merges what changed since the last tick; the order (sort + filter) is rebuilt
from keys kept per run, so a tick costs the changed runs plus one sort of prepared keys. The
selection is kept by run id and the scroll offset is never touched by an update.

Columns are sized k9s-style from what they hold and the width there is (`plan_columns`): a column
with nothing in it is not shown, the ID is cut to a unique prefix before a name is cut, a name is
cut in the middle so its distinguishing tail (`sweep-10`) stays, and at 80 columns NAME, STATE,
QUEUE, GPUS, COST and METRIC still fit. Content widths are counted per column as runs arrive, so
finding the widest cell never scans 10,000 runs.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from collections import Counter
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

from ..formatting import AGE_WIDTH, age_verb, bare_age, format_age, format_params, human_duration, run_duration  # noqa: F401
from .safe_text import NEEDS_VISIBLE, visible


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
    return f"{position} {format_eta(run.eta, now, bound=run.eta_bound)}"


def wait_reason(run: Run) -> str:
    """Why a queued run waits (the engine's words: behind N runs, GPUs busy, waiting for …)."""
    return run.message if run.state is RunState.QUEUED else ""


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    keep: int  # when the width runs out, columns are kept in this order (name and state always)
    cut_to: int = 0  # the narrowest it may be cut to; 0: shown whole or not at all
    align_right: bool = False


def age_width(run: Run) -> int:
    """The TIME cell's widest form for `run` (its verb does not move with the clock, the number may)."""
    return len(age_verb(run)) + 1 + AGE_WIDTH


# In display order. Widths come from the content; a column with nothing in it is not shown.
COLUMNS: tuple[Column, ...] = (
    Column("id", "ID", 6),  # cut to a unique prefix before anything else is dropped
    Column("name", "NAME", 0),
    Column("experiment", "EXPERIMENT", 9, cut_to=10),
    Column("state", "STATE", 1),
    Column("queue", "QUEUE", 2),
    Column("wait", "WAITING FOR", 6, cut_to=16),  # why a queued run waits (backend/waits.py's words)
    Column("gpus", "GPUS", 3),
    Column("assigned", "ASSIGNED", 10, cut_to=10),
    # `queued 3m02s` / `ran 12m04s`, or just `3m02s` where the width runs short; sorted by the seconds
    Column("age", "TIME", 7, cut_to=AGE_WIDTH),
    Column("cost", "COST", 4, align_right=True),
    Column("metric", "METRIC", 5, cut_to=12),
    Column("params", "PARAMS", 8, cut_to=12),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)
BY_KEY = {c.key: c for c in COLUMNS}
ALWAYS = frozenset({"name", "state"})
NAME_FLOOR = 12  # a name is cut below its length only when even this much is not left
# Spare width goes to these, in order, up to what their content wants.
GROW_ORDER = ("name", "metric", "params", "experiment", "wait", "assigned", "id")

STATE_ORDER = {s: i for i, s in enumerate(RunState)}
_DIGITS = re.compile(r"(\d+)")


def natural(text: str) -> tuple:
    """`sweep-2` before `sweep-10`: digit runs compare as numbers."""
    parts = _DIGITS.split(text.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def _lifecycle(run: Run) -> tuple:
    """The default order: what runs now, then the queue in the order it will run, then what ended
    (newest submitted first, as engines list runs: a first page reads the same as the full table)."""
    state = run.state
    if state is RunState.QUEUED:
        return (1, run.queue_position if run.queue_position is not None else 1 << 30, 0.0)
    if state.terminal:
        return (2, 0, -run.submitted_at.timestamp())
    return (0, STATE_ORDER[state], -(run.admitted_at or run.submitted_at).timestamp())


SORT_KEYS: dict[str, Callable[[Run], object]] = {
    "id": lambda r: r.id,
    "name": lambda r: natural(r.name),
    "experiment": lambda r: natural(r.experiment or ""),
    "state": _lifecycle,
    "queue": lambda r: (r.queue_position is None, r.queue_position or 0),
    "wait": lambda r: natural(wait_reason(r)),
    "gpus": lambda r: (r.gpus, r.gpu_type or ""),
    "assigned": lambda r: natural(",".join(r.assigned)),
    # TIME is a duration that moves with the clock: sorted by its seconds, (end or now) - start,
    # worked out at sort time (never by the text: `9m` before `10m`, `59s` before `2m`).
    "age": lambda r: ((r.admitted_at or r.submitted_at).timestamp(),
                      r.finished_at.timestamp() if r.finished_at else None),
    "cost": lambda r: r.cost_micro_usd if r.cost_micro_usd is not None else -1,
    "metric": lambda r: r.metrics.get(r.primary_metric or "", float("inf")),
    "params": lambda r: tuple(sorted((k, str(v)) for k, v in r.params.items())),
}
DEFAULT_SORT = ("state", False)


def tree_order(order: list[str], runs: dict[str, Run]) -> tuple[list[str], dict[str, str]]:
    """Rows as `runs --tree` prints them: each run under the first of its prerequisites that is
    in `order` (siblings keep `order`'s order), and the branch drawn before each dependent's name."""
    present = set(order)
    children: dict[str, list[str]] = {}
    roots = []
    for run_id in order:
        parent = next((p for p in runs[run_id].depends_on if p in present and p != run_id), None)
        if parent is None:
            roots.append(run_id)
        else:
            children.setdefault(parent, []).append(run_id)
    out: list[str] = []
    branches: dict[str, str] = {}
    seen: set[str] = set()
    # Depth-first without recursion: (run id, the indent its children get, its own branch).
    stack = [(run_id, "", "") for run_id in reversed(roots)]
    while stack:
        run_id, indent, branch = stack.pop()
        if run_id in seen:
            continue
        seen.add(run_id)
        out.append(run_id)
        if branch:
            branches[run_id] = indent + branch
        kids = children.get(run_id, [])
        inner = indent + ("" if not branch else ("   " if branch == "└─ " else "│  "))
        for i in range(len(kids) - 1, -1, -1):
            stack.append((kids[i], inner, "└─ " if i == len(kids) - 1 else "├─ "))
    out += [run_id for run_id in order if run_id not in seen]  # a circle (never made by an engine)
    return out, branches


def unique_prefix_length(ids: Iterable[str]) -> int:
    """The shortest length at which every id's prefix is still unique (git's short hashes)."""
    ids = list(ids)
    if len(ids) < 2:
        return min((len(i) for i in ids), default=0)
    longest = max(len(i) for i in ids)
    # Everything before the first difference (e.g. `training-`) tells no id apart: start after it.
    lo, hi = min(ids), max(ids)
    n = 0
    while n < len(lo) and lo[n] == hi[n]:
        n += 1
    for length in range(n + 1, longest + 1):
        if len({i[:length] for i in ids}) == len(ids):
            return length
    return longest


def plan_columns(width: int, wanted: dict[str, int], id_prefix: int = 0) -> list[tuple[Column, int]]:
    """The columns shown in `width` and their widths (one space between columns), k9s-style.

    `wanted`: the width each column's content needs, header included; a column missing from it
    has nothing to show and is left out (NAME and STATE are always shown). `id_prefix`: the
    length that keeps every id unique; the ID is cut to it (plus `…`) before a name is cut.
    Columns are taken in `keep` order, each as wide as its content while that fits, else cut down
    to no less than its narrowest, else left out; the name starts at up to a quarter of the width
    and the ID at its unique prefix. What is left widens the name, then cut columns, then the ID.
    """
    cols = [c for c in COLUMNS if c.key in wanted or c.key in ALWAYS]
    want = {c.key: max(wanted.get(c.key, 0), len(c.title) + 1) for c in cols}  # +1: the sort arrow

    def narrowest(c: Column) -> int:
        w = want[c.key]
        if c.key == "id" and id_prefix:
            return min(w, id_prefix + 1)
        if c.key == "name":
            return min(w, max(NAME_FLOOR, width // 4))
        return min(w, c.cut_to) if c.cut_to else w

    widths: dict[str, int] = {}
    used = -1
    for c in sorted(cols, key=lambda c: c.keep):
        least = narrowest(c)
        # The name starts at its share, the ID at its prefix and a wait reason at its first words:
        # they widen last, from what is left.
        most = least if c.key in ("name", "id", "wait") else want[c.key]
        room = width - used - 1
        if c.key in ALWAYS:
            w = most
        elif room >= least:
            w = min(most, room)
            if c.key == "age" and w < most:
                w = least  # TIME reads in words or as the bare duration, nothing between
        else:
            continue
        widths[c.key] = w
        used += 1 + w
    if used > width:  # a very narrow terminal: the name gives way, down to a few characters
        widths["name"] = max(4, widths["name"] - (used - width))
        used = sum(widths.values()) + len(widths) - 1
    spare = width - used
    for key in GROW_ORDER:
        if key not in widths or spare <= 0:
            continue
        grow = min(spare, want[key] - widths[key])
        if key == "id" and grow < want[key] - widths[key]:
            continue  # an ID is whole or a unique prefix, nothing between
        widths[key] += grow
        spare -= grow
    return [(c, widths[c.key]) for c in cols if c.key in widths]


def layout(width: int) -> list[tuple[Column, int]]:
    """Every column at the width it would take for typical content (for callers with no runs)."""
    typical = {"id": 17, "name": 24, "experiment": 16, "state": 11, "queue": 10, "gpus": 6,
               "assigned": 22, "age": len("queued ") + AGE_WIDTH, "cost": 8, "metric": 12, "params": 20}
    return plan_columns(width, typical, id_prefix=11)


def fit(text: str, width: int, right: bool = False) -> str:
    if cell_len(text) > width:
        text = text[: max(0, width - 1)]
        while cell_len(text) > width - 1 and text:
            text = text[:-1]
        text += "…"
    pad = " " * (width - cell_len(text))
    return pad + text if right else text + pad


def fit_middle(text: str, width: int) -> str:
    """Cut in the middle, so a name keeps its distinguishing tail: `pytorch…weep-10`."""
    length = cell_len(text)
    if length <= width:
        return text + " " * (width - length)
    if width < 4 or not text.isascii():
        return fit(text, width)
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + text[len(text) - tail:]


# The cells that depend on the run alone (not on the clock), kept per run: (key, text) pairs.
STATIC_KEYS = ("id", "name", "experiment", "state", "gpus", "assigned", "cost", "metric", "params", "wait")


def static_cells(run: Run) -> tuple[str, ...]:
    name, experiment = run.name, run.experiment or ""
    assigned = ", ".join(run.assigned) or (run.node or "")
    metric = format_metric(run)
    params = format_params(run.params, round_floats=True) if run.params else ""
    wait = wait_reason(run)
    if not NEEDS_VISIBLE.search(f"{name}{experiment}{assigned}{metric}{params}{wait}"):
        pass  # the common case: nothing to make visible, one search instead of six
    else:
        name, experiment, assigned, metric, params, wait = map(
            visible, (name, experiment, assigned, metric, params, wait))
    return (run.id, name, experiment, run.state.value, format_gpus(run), assigned, format_cost(run), metric, params,
            wait)


WIDTH_KEYS = (*STATIC_KEYS, "queue", "age")  # the content widths kept per run, in this order
_DATA_CELLS = (1, 2, 5, 7, 8, 9)  # the cells that hold user text; the others are ASCII or `×` (one cell)


def cells_and_widths(run: Run) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """A run's static cells and the width of each (and of its queue position and TIME cell); 0 = empty."""
    cells = static_cells(run)
    widths = tuple(map(len, cells))
    if not (cells[1] + cells[2] + cells[5] + cells[7] + cells[8] + cells[9]).isascii():  # e.g. CJK in a name
        widths = tuple(cell_len(c) if i in _DATA_CELLS else w for i, (c, w) in enumerate(zip(cells, widths)))
    position = run.queue_position
    queue = 0 if position is None else len(str(position)) + 1 + run.queue_position_approximate  # `~#12`
    return cells, (*widths, queue, age_width(run))


def count_widths(widths: Iterable[tuple[int, ...]]) -> list[Counter[int]]:
    """Per column, how many runs have each content width (empty cells not counted)."""
    columns = list(zip(*widths)) or [() for _ in WIDTH_KEYS]
    counts = [Counter(column) for column in columns]
    for count in counts:
        count.pop(0, None)
    return counts


@dataclass
class Prepared:
    """A full load's per-run work, done off the UI thread (`prepare`): `apply(full=True)` adopts it."""

    cells: dict[str, tuple[str, ...]]
    widths: dict[str, tuple[int, ...]]
    counts: list[Counter[int]]
    sort_key: str
    sort_values: dict[str, object]


def prepare(runs: Iterable[Run], sort_key: str = DEFAULT_SORT[0]) -> Prepared:
    """Cells, content widths and sort values for a full load; pure, so a worker thread can run it."""
    cells_of: dict[str, tuple[str, ...]] = {}
    widths_of: dict[str, tuple[int, ...]] = {}
    sort = SORT_KEYS[sort_key]
    sort_values = {}
    for run in runs:
        cells_of[run.id], widths_of[run.id] = cells_and_widths(run)
        sort_values[run.id] = (sort(run), run.id)
    return Prepared(cells_of, widths_of, count_widths(widths_of.values()), sort_key, sort_values)


def _uncount(count: Counter[int], width: int) -> None:
    count[width] -= 1
    if count[width] <= 0:
        del count[width]


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
        Binding("t", "toggle_tree", "Tree", show=False, id="table.tree"),
    ]

    cursor: reactive[int] = reactive(0, always_update=True)
    sort_key: reactive[str] = reactive(DEFAULT_SORT[0])
    sort_reverse: reactive[bool] = reactive(DEFAULT_SORT[1])

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
        self._cells: dict[str, tuple[str, ...]] = {}  # STATIC_KEYS' texts per run
        self._sort_values: dict[str, object] = {}
        self._haystack: dict[str, str] = {}
        self._order: list[str] = []
        self._filter: re.Pattern[str] | None = None
        self._selected_id: str | None = None
        self._now = self._clock()
        # How many runs have each content width, per column (WIDTH_KEYS): the widest is found
        # without a scan, and a tick touches only the widths that changed.
        self._widths: dict[str, tuple[int, ...]] = {}
        self._width_counts: list[Counter[int]] = [Counter() for _ in WIDTH_KEYS]
        self._queued: set[str] = set()
        self._latest_eta: datetime | None = None
        self._eta_stale = False
        self._id_prefix: int | None = None  # the unique-prefix length, worked out when needed
        self._layout_key: tuple | None = None
        self._layout: list[tuple[Column, int]] = []
        self.show_tree = False  # dependents under the run they depend on (`runs --tree`)
        self._branches: dict[str, str] = {}  # in tree mode: the `│  └─ ` drawn before a run's name
        self._age_words = True  # the TIME cells read `queued 3m02s` (False: `3m02s`, no room)

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

    def apply(self, changed: Iterable[Run], deleted: Iterable[str] = (), *, full: bool = False,
              prepared: Prepared | None = None) -> None:
        """Merge a ChangeSet's runs; keeps the selected run selected and the scroll offset as is.

        A full load's per-run work is `prepare(changed)`: pass it as `prepared` when a worker thread
        has done it already.
        """
        if full:
            runs = list(changed)
            if prepared is None:
                prepared = prepare(runs, self.sort_key)
            self._runs = {run.id: run for run in runs}
            self._cells = prepared.cells
            self._widths = prepared.widths
            self._width_counts = prepared.counts
            self._queued = {run.id for run in runs if run.queue_position is not None}
            if prepared.sort_key == self.sort_key:
                self._sort_values = prepared.sort_values
            else:
                sort = SORT_KEYS[self.sort_key]
                self._sort_values = {run.id: (sort(run), run.id) for run in runs}
            self._haystack.clear()
            self._id_prefix = None
            self._eta_stale = True
            self._layout_key = None
            self._rebuild_order()
            return
        sort = SORT_KEYS[self.sort_key]
        runs, cells_of, widths_of = self._runs, self._cells, self._widths
        sort_values, hay, counts, queued = self._sort_values, self._haystack, self._width_counts, self._queued
        added = False
        for run in changed:
            if runs.get(run.id) == run:
                continue  # sent again unchanged (an engine reports the whole queue when it moves)
            cells, widths = cells_and_widths(run)
            old = widths_of.get(run.id)
            if old is None:
                added = True
                for count, w in zip(counts, widths):
                    if w:
                        count[w] += 1
            elif old != widths:
                for count, was, w in zip(counts, old, widths):
                    if was != w:
                        if was:
                            _uncount(count, was)
                        if w:
                            count[w] += 1
            cells_of[run.id] = cells
            widths_of[run.id] = widths
            if run.queue_position is not None or run.id in queued:
                self._note_eta(runs.get(run.id), run)
                if run.queue_position is not None:
                    queued.add(run.id)
                else:
                    queued.discard(run.id)
            runs[run.id] = run
            sort_values[run.id] = (sort(run), run.id)  # ties break on id: no flicker
            hay.pop(run.id, None)  # rebuilt when a filter needs it
        for run_id in deleted:
            old = widths_of.pop(run_id, None)
            if old is not None:
                for count, was in zip(counts, old):
                    if was:
                        _uncount(count, was)
                added = True  # the unique prefix may get shorter
            cells_of.pop(run_id, None)
            runs.pop(run_id, None)
            if run_id in queued:
                queued.discard(run_id)
                self._eta_stale = True
            sort_values.pop(run_id, None)
            hay.pop(run_id, None)
        if added:
            self._id_prefix = None
        self._layout_key = None
        self._rebuild_order()

    def _note_eta(self, old: Run | None, new: Run) -> None:
        """Keep the latest queue ETA (the QUEUE column's width) without a scan on every tick."""
        eta = new.eta if new.queue_position is not None else None
        latest = self._latest_eta
        if eta is not None and (latest is None or eta > latest):
            self._latest_eta = eta
        elif old is not None and old.eta is not None and old.eta == latest and eta != latest:
            self._eta_stale = True  # the latest one moved or left: worked out again when needed

    def _wanted_widths(self) -> dict[str, int]:
        """Each column's content width (empty columns left out): what plan_columns needs."""
        wanted = {k: max(c) for k, c in zip(WIDTH_KEYS, self._width_counts) if c}
        if self._queued:
            if self._eta_stale:
                etas = [e for e in (self._runs[i].eta for i in self._queued) if e is not None]
                self._latest_eta = max(etas, default=None)
                self._eta_stale = False
            if self._latest_eta is not None:  # `#12 ~3m`: the latest ETA is the widest, give or take
                wanted["queue"] += 1 + max(4, len(format_eta(self._latest_eta, self._now)))
        if self._branches:
            wanted["name"] = wanted.get("name", 0) + max(map(len, self._branches.values()))
        return wanted

    def columns(self) -> list[tuple[Column, int]]:
        """The columns shown now and their widths, from the content and the widget's width."""
        width = self.scrollable_content_region.width or self.size.width or 80
        key = (width, int(self._now.timestamp()) // 30 if self._queued else 0)
        if key != self._layout_key:
            if self._id_prefix is None:
                self._id_prefix = unique_prefix_length(self._runs)
            wanted = self._wanted_widths()
            self._layout = plan_columns(width, wanted, self._id_prefix)
            self._layout_key = key
            # TIME in words when the column got room for the widest, else the bare duration for all
            self._age_words = any(c.key == "age" and w >= wanted.get("age", 0) for c, w in self._layout)
        return self._layout

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
                format_params(run.params, round_floats=True),
                wait_reason(run),
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
        if self.sort_key == "age":  # a duration: (end or now) - start, worked out now
            now = self._now.timestamp()
            values = self._sort_values
            self._order = sorted(
                ids, key=lambda i: ((values[i][0][1] or now) - values[i][0][0], i), reverse=self.sort_reverse)
        else:
            self._order = sorted(ids, key=self._sort_values.__getitem__, reverse=self.sort_reverse)
        if self.show_tree:
            self._order, self._branches = tree_order(self._order, self._runs)
            self._layout_key = None
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
        visible_keys = [c.key for c, _ in self.columns()]
        i = visible_keys.index(self.sort_key) if self.sort_key in visible_keys else -1
        self.sort_key = visible_keys[(i + 1) % len(visible_keys)]

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse

    def action_toggle_tree(self) -> None:
        """Show each run under the run it depends on, or the flat table again."""
        self.show_tree = not self.show_tree
        self._branches = {}
        self._layout_key = None
        self._rebuild_order()
        if self._selected_id is not None:
            self._move_to(self.cursor)  # keep the selected run on screen where the tree moved it

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
    def _row_cells(self, run: Run) -> dict[str, str]:
        cells = dict(zip(STATIC_KEYS, self._cells[run.id]))
        cells["queue"] = format_queue(run, self._now)
        cells["age"] = (format_age if self._age_words else bare_age)(run, self._now)
        return cells

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        cols = self.columns()
        if y == 0:
            return self._header(cols, width)
        row = int(self.scroll_y) + y - 1
        if row >= len(self._order):
            if row == 0 and y == 1:
                return self._empty_line(width)
            return Strip.blank(width, base)
        run = self._runs[self._order[row]]
        cells = self._row_cells(run)
        cursor = row == self.cursor
        row_style = base + self.get_component_rich_style("run-table--cursor") if cursor else base
        state_style = row_style + self.get_component_rich_style(f"run-table--{run.state.value}")
        if cursor:
            state_style = row_style + Style(bold=True)
        segments: list[Segment] = []
        for i, (col, w) in enumerate(cols):
            if i:
                segments.append(Segment(" ", row_style))
            if col.key == "name":
                branch = self._branches.get(run.id, "")
                text = branch + fit_middle(cells["name"], w - len(branch)) if w - len(branch) >= 4 else \
                    fit(branch + cells["name"], w)
            else:
                text = fit(cells[col.key], w, col.align_right)
            segments.append(Segment(text, state_style if col.key == "state" else row_style))
        return Strip(segments).crop_extend(0, width, row_style)

    def _header(self, cols: list[tuple[Column, int]], width: int) -> Strip:
        style = self.rich_style + self.get_component_rich_style("run-table--header")
        parts = []
        for col, w in cols:
            title = col.title
            if col.key == "name" and self.show_tree:
                title = "NAME (tree)"
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
