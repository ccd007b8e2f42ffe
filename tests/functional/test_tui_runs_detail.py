"""Pilot tests: the run detail screen's tabs and keys, on the fake engine."""
from __future__ import annotations

from textual.widgets import Static, TabbedContent

from backend.facade import RunState
from dlaas_tui.screens.confirm import ConfirmScreen
from dlaas_tui.screens.run_detail import RunDetailScreen

from .tui_fixtures import SAMPLE_MANIFEST, make_app, wait_for, widget_text


def static_text(widget: Static) -> str:
    from rich.console import Console

    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(getattr(widget, "content", None) or widget.renderable)
    return console.export_text()


async def open_detail(pilot, run_id: str, tab: str) -> RunDetailScreen:
    pilot.app.open_run(run_id, tab=tab)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen))
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.log_view.is_mounted and screen.events_table.is_mounted)
    return screen


async def test_logs_follow_a_running_run():
    app, clock, engine = make_app(0)
    run = engine.submit_manifest(SAMPLE_MANIFEST, duration=100)
    clock.advance(10)  # admitted, downloading, processing
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_detail(pilot, run.id, "logs")
        view = screen.log_view
        await wait_for(pilot, lambda: view.has_focus)
        await wait_for(pilot, lambda: "running:" in widget_text(view))
        clock.advance(200)
        await wait_for(pilot, lambda: "COMPLETED" in widget_text(view))
        status = static_text(screen.log_status)
        assert "follow on" in status
        await pilot.press("s")
        assert not view.follow
        await pilot.press("w", "t")
        assert view.wrap and view.timestamps


async def test_every_tab_shows_its_data():
    app, clock, engine = make_app(0)
    run = engine.submit_manifest(SAMPLE_MANIFEST, duration=30)
    clock.advance(400)
    assert engine.get_run(run.id).state is RunState.COMPLETED
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_detail(pilot, run.id, "events")
        table = screen.events_table
        await wait_for(pilot, lambda: table.row_count == len(engine.events(run.id)))
        states = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
        assert states[0] == "QUEUED" and states[-1] == "COMPLETED"
        await pilot.press("3")
        assert screen.query_one(TabbedContent).active == "manifest"
        assert "python train.py" in static_text(screen.manifest_view)
        await pilot.press("5")
        cost = static_text(screen.cost_view)
        assert "device-hour" in cost and "Billed intervals" in cost
        await pilot.press("2")
        from textual_plotext import PlotextPlot

        await wait_for(pilot, lambda: len(screen.query(PlotextPlot)) >= 1)
        assert set(screen._metric_plots) == {p.name for p in engine.metrics(run.id)}
        summary = static_text(screen.summary)
        assert "COMPLETED" in summary and "sample" in summary
        await pilot.press("1")
        await wait_for(pilot, lambda: screen.log_view.has_focus)


async def test_search_in_logs_highlights_and_jumps():
    app, clock, engine = make_app(0)
    run = engine.submit_manifest(SAMPLE_MANIFEST, duration=30)
    clock.advance(400)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_detail(pilot, run.id, "logs")
        view = screen.log_view
        await wait_for(pilot, lambda: view.line_count > 5)
        await pilot.press("slash", *"loss", "enter")
        await wait_for(pilot, lambda: view.current_match is not None)
        first = view.current_match  # from the followed tail: the latest match
        assert view.has_focus and not view.follow
        await pilot.press("N")
        await wait_for(pilot, lambda: view.current_match is not None and view.current_match < first)
        await pilot.press("n")
        await wait_for(pilot, lambda: view.current_match == first)
        assert "search /loss" in static_text(screen.log_status)


async def test_halt_from_detail_and_read_only_refusal():
    app, clock, engine = make_app(0)
    run = engine.submit_manifest(SAMPLE_MANIFEST, duration=1000)
    clock.advance(10)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_detail(pilot, run.id, "events")
        await pilot.press("ctrl+k")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: engine.get_run(run.id).state is RunState.HALTED)

    app, clock, engine = make_app(0, read_only=True)
    run = engine.submit_manifest(SAMPLE_MANIFEST, duration=1000)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_detail(pilot, run.id, "events")
        assert screen.check_action("halt", ()) is False
        await pilot.press("ctrl+k")
        assert app.screen is screen
        assert not engine.get_run(run.id).state.terminal


def footer_actions(screen) -> set[str]:
    """The actions the footer offers now (Textual leaves out what `check_action` refuses)."""
    return {b.binding.action for b in screen.active_bindings.values() if b.enabled and b.binding.show}


def screen_footer(app) -> str:
    from textual.widgets import Footer

    footer = app.screen.query_one(Footer)
    return " ".join(str(key.render()) for key in footer.children)


async def test_halt_is_offered_only_while_the_run_lives():
    app, clock, engine = make_app(0, poll_interval=0.2)
    live = engine.submit_manifest(SAMPLE_MANIFEST, duration=1000)
    clock.advance(10)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_detail(pilot, live.id, "events")
        await wait_for(pilot, lambda: screen.run is not None)
        assert "halt" in footer_actions(screen)
        await pilot.pause()
        assert "^k Halt" in screen_footer(app)
        engine.halt(live.id)  # ended elsewhere (the CLI, another window): the footer follows
        await wait_for(pilot, lambda: screen.run.state is RunState.HALTED, timeout=15)
        await pilot.pause()
        assert "halt" not in footer_actions(screen)
        assert "Halt" not in screen_footer(app)
        assert "^e Resume" in screen_footer(app)  # what a halted run offers instead
        await pilot.press("ctrl+k")  # not offered now: no dialog, one short notice that says why
        await pilot.pause()
        assert app.screen is screen
        said = [str(n.message) for n in app._notifications if "has already finished" in str(n.message)]
        assert said == [f"{live.id} has already finished (HALTED): nothing to halt"]

    app, clock, engine = make_app(0)
    done = engine.submit_manifest(SAMPLE_MANIFEST, duration=5)
    clock.advance(60)
    assert engine.get_run(done.id).state.terminal
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_detail(pilot, done.id, "events")
        await wait_for(pilot, lambda: screen.run is not None)
        await pilot.pause()
        assert screen.check_action("halt", ()) is False
        assert "Halt" not in screen_footer(app)


async def test_unknown_run_is_a_notification():
    app, _clock, _engine = make_app(0)
    async with app.run_test(size=(120, 30)) as pilot:
        await open_detail(pilot, "training-nosuchxx", "logs")
        await wait_for(pilot, lambda: any("training-nosuchxx" in str(n.message) for n in app._notifications))
        assert app.is_running
        await pilot.press("escape")
        assert not isinstance(app.screen, RunDetailScreen)


async def test_shift_l_switches_learner_on_a_multi_learner_run():
    app, clock, engine = make_app(0, devices=4)
    run = engine.submit_manifest({**SAMPLE_MANIFEST, "learners": 2}, duration=30)
    clock.advance(400)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_detail(pilot, run.id, "logs")
        await wait_for(pilot, lambda: screen.run is not None)
        assert screen.check_action("next_learner", ()) is True
        await wait_for(pilot, lambda: screen.log_view.line_count > 3)
        await pilot.press("L")
        assert screen.learner == 1
        await wait_for(pilot, lambda: "learner-1" in str(screen.log_view.log_file.path))
        assert "learner 2 of 2" in static_text(screen.summary)
        await pilot.press("L")
        assert screen.learner == 0

    app, clock, engine = make_app(0)
    single = engine.submit_manifest(SAMPLE_MANIFEST, duration=30)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_detail(pilot, single.id, "logs")
        await wait_for(pilot, lambda: screen.run is not None)
        assert screen.check_action("next_learner", ()) is False
        await pilot.press("L")
        assert screen.learner == 0


def log_status(screen: RunDetailScreen) -> str:
    """The Logs tab's status line as shown ("" before the view has posted one)."""
    return static_text(screen.log_status) if screen.log_status.content else ""


def no_log_until_it_starts(engine) -> None:
    """As on the local engine, a run's log is empty until its command writes (the fake engine's own
    logs start with a "[dlaas] submitted" line)."""
    engine.logs = lambda run_id, learner=0, tail=None, follow=False: iter(())


async def test_a_queued_run_with_no_log_says_it_has_not_started_then_that_it_runs():
    app, clock, engine = make_app(0, devices=1)
    engine.submit_manifest(SAMPLE_MANIFEST, duration=100)  # holds the one device
    queued = engine.submit_manifest(SAMPLE_MANIFEST, duration=100)
    no_log_until_it_starts(engine)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_detail(pilot, queued.id, "logs")
        await wait_for(pilot, lambda: screen.run is not None and screen.log_view.log_file is not None)
        assert screen.run.state is RunState.QUEUED
        await wait_for(pilot, lambda: log_status(screen).startswith(
            "no log yet: the run has not started  ·  follow on"), what="the queued run's log status")
        assert "of 0" not in log_status(screen)
        clock.advance(150)  # the first run ends, this one is admitted and processing
        await wait_for(pilot, lambda: screen.run.state is RunState.PROCESSING, timeout=60, what="a refresh")
        await wait_for(pilot, lambda: log_status(screen).startswith("empty log so far"))


async def test_a_finished_run_with_an_empty_log_says_empty_log_and_one_halted_in_the_queue_never_started():
    app, clock, engine = make_app(0, devices=1)
    done = engine.submit_manifest(SAMPLE_MANIFEST, duration=30)
    never = engine.submit_manifest(SAMPLE_MANIFEST, duration=30)
    engine.halt(never.id)  # halted while it waited: never admitted
    clock.advance(400)
    assert engine.get_run(done.id).state is RunState.COMPLETED
    no_log_until_it_starts(engine)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_detail(pilot, done.id, "logs")
        await wait_for(pilot, lambda: log_status(screen).startswith("empty log  ·  follow on"),
                       what="the finished run's log status")
        await pilot.press("escape")
        screen = await open_detail(pilot, never.id, "logs")
        await wait_for(pilot, lambda: log_status(screen).startswith("no log: the run never started"),
                       what="the halted run's log status")
