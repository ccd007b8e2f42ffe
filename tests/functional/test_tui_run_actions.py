"""Pilot tests: the runs table and the run detail offer only the actions that apply to the selected run
(footer, command palette, keys), say why when a key does not apply, and change a queued run's priority."""
from __future__ import annotations

from textual.command import CommandList, CommandPalette
from textual.widgets import Input

from backend.engines.fake.engine import FakeEngine
from backend.facade import RunState
from dlaas_tui.keymap import describe
from dlaas_tui.screens.confirm import ConfirmScreen
from dlaas_tui.screens.prompts import InputPrompt
from dlaas_tui.screens.run_detail import RunDetailScreen
from dlaas_tui.screens.runs import RunsScreen
from dlaas_tui.widgets.header import HeaderStats, StatusHeader
from dlaas_tui.widgets.run_table import RunTable

from .screens_harness import screen_text, settle
from .tui_fixtures import SAMPLE_MANIFEST, FakeClock, feed_rounds, make_app, wait_for, widget_text


def notes(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


def offered(screen) -> set[str]:
    """The actions the footer shows now (Textual leaves out what `check_action` refuses)."""
    return {b.binding.action for b in screen.active_bindings.values() if b.enabled and b.binding.show}


def palette(app) -> list[str]:
    return [c.title for c in app.get_system_commands(app.screen)]


async def loaded(pilot) -> RunTable:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(RunTable).row_count)
    await wait_for(pilot, lambda: app.header_stats is not None)
    return app.screen.query_one(RunTable)


async def select(pilot, table: RunTable, run_id: str) -> None:
    """Move the cursor onto `run_id` with the keys a user would press."""
    await pilot.press("g", *["j"] * table._order.index(run_id))
    assert table.selected_run.id == run_id


def one_of_each():
    """On one device: a run that runs, two queued behind it, one halted, one completed."""
    clock = FakeClock()
    engine = FakeEngine(clock, devices=1, gpu_type="H100")
    done = engine.submit_manifest(SAMPLE_MANIFEST, name="done", duration=5)
    clock.advance(120)
    halted = engine.submit_manifest(SAMPLE_MANIFEST, name="halted", duration=3600)
    clock.advance(10)
    engine.halt(halted.id)
    running = engine.submit_manifest(SAMPLE_MANIFEST, name="running", duration=3600)
    first = engine.submit_manifest(SAMPLE_MANIFEST, name="first", duration=60)
    second = engine.submit_manifest(SAMPLE_MANIFEST, name="second", duration=60)
    clock.advance(10)
    runs = {name: engine.get_run(r.id) for name, r in
            (("done", done), ("halted", halted), ("running", running), ("first", first), ("second", second))}
    assert runs["done"].state is RunState.COMPLETED and runs["halted"].state is RunState.HALTED
    assert not runs["running"].state.terminal and runs["running"].state is not RunState.QUEUED
    assert [runs[n].queue_position for n in ("first", "second")] == [1, 2]
    return clock, engine, runs


async def test_the_footer_and_palette_offer_only_what_applies_to_the_selected_run():
    _clock, engine, runs = one_of_each()
    app, _clock, _engine = make_app(engine=engine, poll_interval=0.2)
    async with app.run_test(size=(120, 30)) as pilot:
        table = await loaded(pilot)
        screen = app.screen
        expected = {
            "running": ({"halt"}, {"resume", "priority"}),
            "first": ({"halt", "priority"}, {"resume"}),
            "halted": ({"resume"}, {"halt", "priority"}),
            "done": (set(), {"halt", "resume", "priority"}),
        }
        for name, (shown, hidden) in expected.items():
            run = runs[name]
            await select(pilot, table, run.id)
            await wait_for(pilot, lambda shown=shown, hidden=hidden: shown <= offered(screen) and not hidden & offered(screen),
                           what=f"the footer of a {run.state.value} run")
            titles = palette(app)
            for action, title in (("halt", "Halt"), ("resume", "Resume"), ("priority", "Priority of")):
                assert (f"{title} {run.id}" in titles) == (action in shown), (name, titles)
            assert f"Delete {run.id}" in titles
        # Help lists every run key whatever the selected run (the README's table, in force now).
        assert {"runs.halt", "runs.resume", "runs.priority"} <= {k.binding_id for k in describe(screen)}

        # The selected run's state changes elsewhere: the footer follows without a key pressed.
        await select(pilot, table, runs["running"].id)
        engine.halt(runs["running"].id)
        await wait_for(pilot, lambda: "resume" in offered(screen) and "halt" not in offered(screen),
                       what="the footer of the run halted elsewhere")
        await pilot.pause()
        footer = screen_text(app).splitlines()[-1]
        assert "^e Resume" in footer and "Halt" not in footer


async def test_a_key_that_does_not_apply_says_why_once_and_does_nothing():
    _clock, engine, runs = one_of_each()
    app, _clock, _engine = make_app(engine=engine, poll_interval=60)
    async with app.run_test(size=(120, 30)) as pilot:
        table = await loaded(pilot)
        await select(pilot, table, runs["done"].id)
        await pilot.press("ctrl+k", "ctrl+e", "p")
        assert isinstance(app.screen, RunsScreen)  # no dialog, no prompt
        done = runs["done"].id
        assert notes(app) == [
            f"{done} has already finished (COMPLETED): nothing to halt",
            f"{done} is COMPLETED: only a halted or failed run can be resumed",
            f"{done} is COMPLETED: only a queued run's priority can be changed",
        ]
        await select(pilot, table, runs["running"].id)
        await pilot.press("p")
        assert notes(app)[-1].startswith(f"{runs['running'].id} is ") and "only a queued run" in notes(app)[-1]
        # A key that applies says nothing of the kind.
        await pilot.press("ctrl+k")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert len(notes(app)) == 4
        # Typing in the filter is text, never a refused key.
        await pilot.press("slash", *"pp", "enter")
        assert len(notes(app)) == 4


async def test_priority_from_the_table_moves_a_queued_run_and_says_where():
    _clock, engine, runs = one_of_each()
    app, _clock, _engine = make_app(engine=engine, poll_interval=0.2)
    first, second = runs["first"].id, runs["second"].id
    async with app.run_test(size=(80, 24)) as pilot:
        table = await loaded(pilot)
        await select(pilot, table, second)
        await pilot.press("p")
        assert isinstance(app.screen, InputPrompt)
        text = screen_text(app)
        assert f"Priority of {second}" in text and "now normal" in text
        assert "high (1000), normal (0), low (-100), or a whole number" in app.screen.hint
        assert "Higher starts first" in text and "esc cancels" in text  # all of it on screen at 80×24
        await pilot.press("escape")  # cancelled: nothing changes
        assert isinstance(app.screen, RunsScreen) and engine.get_run(second).priority == "normal"

        await pilot.press("p", "h")
        field = app.screen.query_one(Input)
        await wait_for(pilot, lambda: field._suggestion == "high", what="the completion of h")
        await pilot.press("tab", "enter")
        await wait_for(pilot, lambda: any(n.startswith(f"{second}: priority high") for n in notes(app)))
        assert f"{second}: priority high, queue position #1" in notes(app)
        assert engine.get_run(second).queue_position == 1 and engine.get_run(first).queue_position == 2
        await wait_for(pilot, lambda: table._runs[second].queue_position == 1, what="the table caught up")
        row = next(line for line in widget_text(table).splitlines() if "second" in line)
        assert " #1 " in row
        assert "priority changed from normal (0) to high (1000)" in engine.events(second)[-1].message

        # A number works too; a word that is neither is refused, naming the run.
        await select(pilot, table, first)
        await pilot.press("p", *"2000", "enter")
        await wait_for(pilot, lambda: f"{first}: priority 2000, queue position #1" in notes(app))
        await pilot.press("p", *"urgent", "enter")
        await wait_for(pilot, lambda: any("urgent" in n for n in notes(app)))
        refused = notes(app)[-1]
        assert refused.startswith(f"Priority of {first}: priority 'urgent' is neither a number nor one of")
        assert engine.get_run(first).priority == "2000"

        # The command palette offers the same for the selected queued run.
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"priority of")
        await settle(pilot)  # the palette's search workers
        hits = app.screen.query_one(CommandList)
        await wait_for(pilot, lambda: hits.option_count > 0, what="the palette's hits")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, InputPrompt), what="the prompt from the palette")
        assert f"Priority of {first}" in screen_text(app)
        await pilot.press(*"low", "enter")
        await wait_for(pilot, lambda: engine.get_run(first).priority == "low")


async def test_a_run_that_left_the_queue_while_the_prompt_was_open_is_named():
    _clock, engine, runs = one_of_each()
    app, _clock, _engine = make_app(engine=engine, poll_interval=60)
    first = runs["first"].id
    async with app.run_test(size=(120, 30)) as pilot:
        table = await loaded(pilot)
        await select(pilot, table, first)
        await pilot.press("p", *"low")
        engine.halt(first)  # from the CLI, say, while the prompt is open
        await pilot.press("enter")
        await wait_for(pilot, lambda: any(first in n and "HALTED" in n for n in notes(app)))
        assert notes(app)[-1] == f"{first}: run is HALTED; only a queued run's priority can be changed"
        assert engine.get_run(first).priority == "normal"


async def test_read_only_refuses_priority_like_the_other_write_keys():
    _clock, engine, runs = one_of_each()
    app, _clock, _engine = make_app(engine=engine, read_only=True, poll_interval=60)
    app.backend.profile = app.backend.profile.model_copy(update={"read_only": True})
    async with app.run_test(size=(120, 30)) as pilot:
        table = await loaded(pilot)
        await select(pilot, table, runs["first"].id)
        assert app.screen.check_action("priority", ()) is False
        await pilot.press("p")
        assert isinstance(app.screen, RunsScreen)
        assert notes(app) == ["Read-only: priority is not allowed (read_only profile or --read-only)"]
        assert "runs.priority" not in {k.binding_id for k in describe(app.screen)}
        assert not any(t.startswith("Priority of") for t in palette(app))


class NoPriorityEngine(FakeEngine):
    """An engine that cannot change a queued run's priority (no `set_priority`)."""

    set_priority = None


async def test_an_engine_that_cannot_change_priority_does_not_offer_it():
    clock = FakeClock()
    engine = NoPriorityEngine(clock, devices=1)
    engine.submit_manifest(SAMPLE_MANIFEST, name="running", duration=3600)
    queued = engine.submit_manifest(SAMPLE_MANIFEST, name="queued", duration=3600)
    app, _clock, _engine = make_app(engine=engine, poll_interval=60)
    async with app.run_test(size=(120, 30)) as pilot:
        table = await loaded(pilot)
        await select(pilot, table, queued.id)
        await pilot.pause()
        assert "priority" not in offered(app.screen)
        assert "runs.priority" not in {k.binding_id for k in describe(app.screen)}
        assert not any(t.startswith("Priority of") for t in palette(app))
        await pilot.press("p")
        assert isinstance(app.screen, RunsScreen)
        assert notes(app) == ["The fake engine cannot change a queued run's priority"]


async def test_the_run_detail_offers_priority_for_a_queued_run_and_shows_its_new_place():
    _clock, engine, runs = one_of_each()
    app, _clock, _engine = make_app(engine=engine, poll_interval=0.2)
    second = runs["second"].id
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        app.open_run(runs["running"].id, tab="events")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.run is not None)
        assert "priority" not in offered(app.screen) and "halt" in offered(app.screen)
        await pilot.press("escape")
        app.open_run(second, tab="events")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.run is not None)
        detail = app.screen
        assert {"halt", "priority"} <= offered(detail)
        assert f"Priority of {second}" in palette(app)
        await wait_for(pilot, lambda: "p Priority" in screen_text(app).splitlines()[-1], what="p in the footer")
        assert "queue #2" in screen_text(app)
        await pilot.press("p", *"high", "enter")
        await wait_for(pilot, lambda: f"{second}: priority high, queue position #1" in notes(app))
        await wait_for(pilot, lambda: detail.run.queue_position == 1, what="the summary caught up")
        await pilot.pause()
        assert "queue #1" in screen_text(app)
        await feed_rounds(pilot)
        assert app.screen is detail


async def test_the_80_column_header_labels_todays_spend():
    app, _clock, _engine = make_app(40, devices=4)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        header = app.screen.query_one(StatusHeader)
        await wait_for(pilot, lambda: header.stats.spend_today_usd is not None and header.stats.tier_gpus == 0)
        text = header.render().plain
        stats = header.stats
        assert len(text) <= 78
        assert f"today ${stats.spend_today_usd:,.2f}" in text
        assert f"GPU {stats.gpus_in_use}/{stats.gpus_total}" in text and f"queued {stats.queued}" in text
        assert "unlimited" not in text  # a tier that limits nothing says nothing in 80 columns
        # A busy profile: read-only, a limited tier, money committed, a budget. Every figure keeps its
        # label; the tier's label and then the title give way, and the whole line still fits.
        busy = HeaderStats(profile="gpu-box", engine="local", tier="standard", tier_gpus=8, gpus_in_use=3,
                           gpus_total=8, queued=14, running=3, spend_today_usd=12.34, read_only=True)
        header.update_stats(busy)
        assert header.render().plain == "dlaas-tui RO gpu-box tier standard GPU 3/8 run 3 queued 14 today $12.34"
        header.update_stats(HeaderStats(**{**busy.__dict__, "budget_daily_usd": 50.0, "committed_usd": 3.1}))
        text = header.render().plain
        assert text == "RO gpu-box standard GPU 3/8 run 3 queued 14 today $12.34/$50 committed $3.10"
        assert len(text) <= 78
