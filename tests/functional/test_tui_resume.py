"""Pilot tests: resuming a halted or failed run from the runs table and from its detail screen."""
from __future__ import annotations

from backend.facade import RunState, attempt_of
from dlaas_tui.keymap import describe
from dlaas_tui.screens.confirm import ConfirmScreen
from dlaas_tui.screens.run_detail import RunDetailScreen
from dlaas_tui.screens.runs import RunsScreen
from dlaas_tui.widgets.run_table import RunTable

from .tui_fixtures import SAMPLE_MANIFEST, make_app, wait_for


def notes(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def _table(pilot) -> RunTable:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(RunTable).row_count)
    return app.screen.query_one(RunTable)


async def test_resume_from_the_table_asks_then_queues_the_next_attempt():
    app, _clock, engine = make_app(0)
    run = engine.submit_manifest(SAMPLE_MANIFEST)
    async with app.run_test(size=(120, 30)) as pilot:
        table = await _table(pilot)
        await pilot.press("ctrl+e")  # still running: nothing to resume
        await wait_for(pilot, lambda: any("only a halted or failed run" in n for n in notes(app)))
        assert isinstance(app.screen, RunsScreen)
        engine.halt(run.id)
        await wait_for(pilot, lambda: table.selected_run.state is RunState.HALTED)
        await pilot.press("ctrl+e")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert engine.get_run(run.id).state is RunState.HALTED
        await pilot.press("ctrl+e", "y")
        await wait_for(pilot, lambda: not engine.get_run(run.id).state.terminal)
        assert attempt_of(engine.events(run.id)) == 2
        await wait_for(pilot, lambda: not table.selected_run.state.terminal)
        assert "runs.resume" in {k.binding_id for k in describe(app.screen)}


async def test_resume_from_the_detail_screen_follows_the_run_again():
    app, _clock, engine = make_app(0)
    run = engine.submit_manifest(SAMPLE_MANIFEST)
    engine.halt(run.id)
    async with app.run_test(size=(120, 30)) as pilot:
        await _table(pilot)
        app.open_run(run.id, tab="events")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.run is not None)
        assert "detail.resume" in {k.binding_id for k in describe(app.screen)}
        await pilot.press("ctrl+e", "y")
        await wait_for(pilot, lambda: app.screen.run is not None and not app.screen.run.state.terminal)
        assert any(f"Resumed {run.id}" in n for n in notes(app))


async def test_read_only_refuses_resume():
    app, _clock, engine = make_app(0, read_only=True)
    run = engine.submit_manifest(SAMPLE_MANIFEST)
    engine.halt(run.id)
    async with app.run_test(size=(120, 30)) as pilot:
        await _table(pilot)
        assert app.screen.check_action("resume", ()) is False
        await pilot.press("ctrl+e")
        assert isinstance(app.screen, RunsScreen)
        assert engine.get_run(run.id).state is RunState.HALTED
        assert "runs.resume" not in {k.binding_id for k in describe(app.screen)}
