"""Start-up with many runs: the first screenful is shown, then every run arrives.

The app reads the first screenful (running runs, the head of the queue, the newest finished runs)
in the thread that opened the backend and shows it; the full read starts only once that screenful
has been drawn, and then fills the table. Sorting, the cursor and the filter work on every run.
"""
from __future__ import annotations

from backend.config import Config, Profile
from backend.engines.fake.clock import FakeClock
from backend.engines.fake.engine import FakeEngine
from backend.facade import Backend, get_paths
from dlaas_tui.app import DlaasApp
from dlaas_tui.screens.runs import FIRST_PAGE, RunsScreen
from dlaas_tui.widgets.run_table import RunTable

from .tui_fixtures import wait_for

N = 3 * FIRST_PAGE + 17


def _backend() -> tuple[Backend, FakeEngine]:
    engine = FakeEngine(FakeClock(), devices=2, gpu_type="H100")
    engine.seed(N)
    return Backend(config=Config(), profile=Profile(name="fake", scheduler="fake"), paths=get_paths(),
                   _engine=engine), engine


async def test_the_first_screenful_is_drawn_before_the_full_read_and_every_run_then_arrives(monkeypatch):
    backend, engine = _backend()
    every = {r.id for r in engine.list_runs()}
    app = DlaasApp(opener=lambda: backend, poll_interval=0.25)
    drawn: list[int] = []  # the rows the table held each time it drew a line with rows in it
    at_full_read: list[tuple[int, int]] = []  # (rows held, rows drawn) when the full read began
    render_line = RunTable.render_line

    def drawing(table, y):
        if table.row_count:
            drawn.append(table.row_count)
        return render_line(table, y)

    monkeypatch.setattr(RunTable, "render_line", drawing)
    read = engine.changes

    def changes(cursor=None):
        if cursor is None:
            at_full_read.append((app.screen.query_one(RunTable).row_count, max(drawn, default=0)))
        return read(cursor)

    engine.changes = changes
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one(RunTable)
        await wait_for(pilot, lambda: table.total_count == N, what="every run in the table")
        assert at_full_read, "the feed never read every run"
        held, shown = at_full_read[0]
        assert 0 < held < N  # the first screenful was in the table ...
        assert shown == held  # ... and on the screen before the full read began
        assert {r.id for r in table.runs()} == every and table.row_count == N

        # The cursor reaches the last of them; sorting and the filter work over all of them.
        await pilot.press("G")
        assert table.cursor == N - 1
        await pilot.press("s")
        await wait_for(pilot, lambda: table.row_count == N)
        one = sorted(every)[N // 2]
        screen._filter(one)
        await wait_for(pilot, lambda: table.row_count == 1)
        assert table.selected_run is not None and table.selected_run.id == one
        screen._filter("")
        await wait_for(pilot, lambda: table.row_count == N)


async def test_a_restart_before_the_first_screenful_is_drawn_starts_one_feed_only():
    backend, engine = _backend()
    app = DlaasApp(backend=backend, poll_interval=0.25)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        table = screen.query_one(RunTable)
        await wait_for(pilot, lambda: table.total_count == N)
        started: list[int] = []
        feed = screen._feed

        def counted(*args):
            started.append(1)
            return feed(*args)

        screen._feed = counted
        from dlaas_tui.screens.runs import read_first_page

        app.first_page = read_first_page(backend)
        screen.restart_feed()  # deferred until drawn ...
        app.first_page = read_first_page(backend)
        screen.restart_feed()  # ... and replaced by this one before it started
        await wait_for(pilot, lambda: bool(started))
        await pilot.pause(0.3)
        assert started == [1]
        await wait_for(pilot, lambda: table.total_count == N)
