"""The runs table's TIME column: it says what it measures (queued for / ran for) and sorts by the
seconds, never by the text (`9m` below `10m`, `59s` below `2m`)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from textual.app import App, ComposeResult

from backend.facade import Run, RunState
from dlaas_tui.widgets.run_table import RunTable

from .tui_fixtures import wait_for, widget_text

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)  # the table's clock: fixed, read from here only


def queued(rid: str, seconds: int, position: int) -> Run:
    return Run(id=rid, name=rid, state=RunState.QUEUED, submitted_at=NOW - timedelta(seconds=seconds),
               queue_position=position)


def running(rid: str, seconds: int) -> Run:
    return Run(id=rid, name=rid, state=RunState.PROCESSING, submitted_at=NOW - timedelta(seconds=seconds + 30),
               admitted_at=NOW - timedelta(seconds=seconds), gpus=1, assigned=["gpu0"])


def finished(rid: str, seconds: int) -> Run:
    end = NOW - timedelta(hours=1)
    return Run(id=rid, name=rid, state=RunState.COMPLETED, submitted_at=end - timedelta(seconds=seconds + 5),
               admitted_at=end - timedelta(seconds=seconds), finished_at=end)


RUNS = [
    running("training-run10m00", 600), running("training-run09m00", 540),
    queued("training-que00059", 59, 1), queued("training-que00120", 120, 2),
    finished("training-fin00007", 7), finished("training-fin03600", 3600),
]
# By the seconds each cell measures, shortest first.
BY_SECONDS = ["training-fin00007", "training-que00059", "training-que00120", "training-run09m00",
              "training-run10m00", "training-fin03600"]


class TableApp(App):
    def compose(self) -> ComposeResult:
        yield RunTable(clock=lambda: NOW)

    def on_mount(self) -> None:
        self.query_one(RunTable).apply(RUNS, full=True)


def rows(table: RunTable) -> dict[str, str]:
    """Each shown row's text by run id (the id cut to its prefix is matched by that prefix)."""
    lines = widget_text(table).splitlines()[1: 1 + table.row_count]
    return {rid: line for rid, line in zip(table._order, lines)}


async def test_the_time_cell_says_queued_for_or_ran_for():
    async with TableApp().run_test(size=(120, 12)) as pilot:
        table = pilot.app.query_one(RunTable)
        await wait_for(pilot, lambda: table.row_count == len(RUNS))
        header = widget_text(table).splitlines()[0]
        assert " TIME" in header and "AGE" not in header
        shown = rows(table)
        assert "queued 59s" in shown["training-que00059"]
        assert "queued 2m00s" in shown["training-que00120"]
        assert "ran 10m00s" in shown["training-run10m00"]
        assert "ran 9m00s" in shown["training-run09m00"]
        assert "ran 7s" in shown["training-fin00007"]  # admitted to finished, not until now
        assert "ran 1h00m" in shown["training-fin03600"]


async def test_sorting_by_time_follows_the_seconds_not_the_text():
    async with TableApp().run_test(size=(120, 12)) as pilot:
        table = pilot.app.query_one(RunTable)
        await wait_for(pilot, lambda: table.row_count == len(RUNS))
        table.sort_key = "age"
        table.sort_reverse = False
        await pilot.pause()
        assert table._order == BY_SECONDS
        # as text, `10m00s` < `1h00m` < `2m00s` < `59s` < `7s` < `9m00s`: none of that here
        assert table._order.index("training-run09m00") < table._order.index("training-run10m00")
        assert table._order.index("training-que00059") < table._order.index("training-que00120")
        header = widget_text(table).splitlines()[0]
        assert "TIME▲" in header
        table.sort_reverse = True
        await pilot.pause()
        assert table._order == BY_SECONDS[::-1]
        assert "TIME▼" in widget_text(table).splitlines()[0]


async def test_the_time_column_fits_80_columns_with_its_words():
    async with TableApp().run_test(size=(80, 12)) as pilot:
        table = pilot.app.query_one(RunTable)
        await wait_for(pilot, lambda: table.row_count == len(RUNS))
        widths = {c.key: w for c, w in table.columns()}
        assert widths.get("age") == len("queued 59m59s")  # a queued run is shown: room for its word
        assert all(len(line) <= 80 for line in widget_text(table).splitlines())
        assert "queued 59s" in rows(table)["training-que00059"]


async def test_where_the_width_runs_short_time_is_the_bare_duration_never_cut_words():
    import re

    words = re.compile(r"^(queued|ran) \d[\dsmhd]*$")
    bare = re.compile(r"^\d[\dsmhd]*$")
    seen = set()
    for width in range(56, 121, 4):
        async with TableApp().run_test(size=(width, 12)) as pilot:
            table = pilot.app.query_one(RunTable)
            await wait_for(pilot, lambda t=table: t.row_count == len(RUNS))
            cols = table.columns()
            if "age" not in [c.key for c, _ in cols]:
                continue
            start = sum(w + 1 for c, w in cols[: [c.key for c, _ in cols].index("age")])
            w = dict((c.key, w) for c, w in cols)["age"]
            cells = [line[start: start + w].strip() for line in widget_text(table).splitlines()[1: 1 + len(RUNS)]]
            kind = "words" if all(words.match(c) for c in cells) else "bare" if all(bare.match(c) for c in cells) else None
            assert kind, (width, cells)  # one form for the whole column, never `queued 2m…`
            assert w == (len("queued 59m59s") if kind == "words" else 6), (width, w)  # nothing between
            seen.add(kind)
    assert seen == {"words", "bare"}
