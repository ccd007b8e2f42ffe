"""Snapshots of the runs screen (80×24, 120×40, 200×50) and run detail (80×24, 160×50), on frozen data.

The sweep journey is what a new user met: ten trials of one sweep that differ only in their tail
(`pytorch-sweep-1` … `-10`) and parameters, a long run name, runs on cpu slots.
"""
from __future__ import annotations

import pytest

from dlaas_tui.screens.run_detail import RunDetailScreen
from dlaas_tui.screens.runs import RunsScreen
from dlaas_tui.widgets.run_table import RunTable

from .tui_fixtures import drawn, full_log_shown, make_app, wait_for

SIZES = [(80, 24), (160, 50)]
TABLE_SIZES = [(80, 24), (120, 40), (200, 50)]


def seeded_app():
    # poll_interval is long: one load, then nothing moves while the picture is taken.
    app, _clock, engine = make_app(120, devices=8, poll_interval=60)
    return app, engine


def sweep_app():
    """A 10-trial sweep on one cpu slot, two done, one running, the rest queued; and single runs."""
    from backend.engines.fake.engine import FakeEngine

    from .tui_fixtures import SAMPLE_MANIFEST, FakeClock

    clock = FakeClock()
    engine = FakeEngine(clock, devices=1, gpu_type="cpu", prices={"cpu": 0.05})
    cpu = dict(SAMPLE_MANIFEST, gpus=0)
    for i in range(1, 11):
        params = {"lr": (0.001, 0.01, 0.1)[i % 3], "hidden": (32, 64)[i % 2]}
        engine.submit_manifest(cpu, name=f"pytorch-sweep-{i}", experiment="pytorch-sweep", params=params,
                               duration=40)
        clock.advance(1)
    engine.submit_manifest(cpu, name="digits-long-run-with-a-very-long-name-3", duration=40)
    engine.submit_manifest(cpu, name="bars-tui-run", duration=40)
    clock.advance(150)
    app, _clock, _engine = make_app(engine=engine, poll_interval=60)
    return app, engine


async def runs_loaded(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(RunTable).row_count)
    await wait_for(pilot, lambda: app.header_stats is not None)
    await wait_for(pilot, lambda: app.screen.query_one(RunTable).has_focus, what="the table focused")
    await drawn(pilot)


@pytest.mark.parametrize("size", TABLE_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs_screen(snap_compare, size):
    app, _engine = seeded_app()

    async def before(pilot):
        await runs_loaded(pilot)
        await pilot.press("j", "j", "j")

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", TABLE_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs_screen_sweep(snap_compare, size):
    """Trials tell apart at every size (name tail, PARAMS); NAME, STATE, QUEUE, GPUS, COST, METRIC at 80."""
    app, _engine = sweep_app()
    assert snap_compare(app, terminal_size=size, run_before=runs_loaded)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_detail_logs(snap_compare, size):
    app, engine = seeded_app()
    finished = next(r for r in engine.list_runs() if r.state.value == "COMPLETED")

    async def before(pilot):
        await runs_loaded(pilot)
        pilot.app.open_run(finished.id, tab="logs")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen))
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.log_view.line_count > 5 and screen.run is not None)
        await wait_for(pilot, lambda: full_log_shown(screen) and screen.log_view.has_focus,
                       what="the whole log shown and focused")
        await drawn(pilot)

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_detail_events(snap_compare, size):
    app, engine = seeded_app()
    failed = next(r for r in engine.list_runs() if r.state.value == "FAILED")

    async def before(pilot):
        await runs_loaded(pilot)
        pilot.app.open_run(failed.id, tab="events")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen))
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.events_table.row_count > 1)
        await wait_for(pilot, lambda: screen.events_table.has_focus, what="the events focused")
        await drawn(pilot)

    assert snap_compare(app, terminal_size=size, run_before=before)
