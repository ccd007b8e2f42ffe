"""Pilot tests: every key path of the runs screen, on a seeded fake engine."""
from __future__ import annotations

import collections
import json

import pytest

from backend.facade import EngineError, RunState
from dlaas_tui.screens.confirm import ConfirmScreen
from dlaas_tui.screens.help import HelpScreen
from dlaas_tui.screens.run_detail import RunDetailScreen
from dlaas_tui.screens.runs import RunsScreen
from dlaas_tui.screens.command import CommandScreen
from dlaas_tui.widgets.header import StatusHeader
from dlaas_tui.widgets.run_table import RunTable

from .tui_fixtures import SAMPLE_MANIFEST, feed_rounds, make_app, wait_for, widget_text


async def suggested(pilot, bar) -> None:
    """Until the command bar's suggester has answered for what is typed (it runs in a worker)."""
    await wait_for(pilot, lambda: bar._suggestion.startswith(bar.value) and bar._suggestion != bar.value,
                   what=f"a completion of {bar.value!r}")


async def loaded(pilot) -> RunTable:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(RunTable).row_count)
    return app.screen.query_one(RunTable)


def notes(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def test_table_shows_every_run_and_header_counts():
    app, _clock, engine = make_app(40)
    async with app.run_test(size=(120, 30)) as pilot:
        table = await loaded(pilot)
        assert table.row_count == 40
        queued = sum(1 for r in engine.list_runs() if r.state is RunState.QUEUED)
        await wait_for(pilot, lambda: app.screen.query_one(StatusHeader).stats.queued == queued)
        header = app.screen.query_one(StatusHeader).render().plain
        assert f"queued {queued}" in header and "profile fake" in header and "GPUs" in header
        text = widget_text(table)
        assert "ID" in text.splitlines()[0] and "STATE" in text.splitlines()[0]
        first = engine.get_run(table._order[0])
        shown = text.splitlines()[1].split()[0].rstrip("…")  # the ID, or a unique prefix of it
        assert first.id.startswith(shown) and len(shown) >= table._id_prefix


async def test_cursor_keys_move_and_wrap_to_ends():
    app, _clock, _engine = make_app(80)
    async with app.run_test(size=(100, 24)) as pilot:
        table = await loaded(pilot)
        await pilot.press("j", "j", "down")
        assert table.cursor == 3
        await pilot.press("k", "up")
        assert table.cursor == 1
        await pilot.press("G")
        assert table.cursor == 79
        assert table.scroll_y > 0
        await pilot.press("g")
        assert table.cursor == 0 and table.scroll_y == 0
        await pilot.press("pagedown")
        assert table.cursor > 10


@pytest.mark.slow
async def test_filter_by_substring_and_regex_then_escape_clears():
    app, _clock, engine = make_app(60)
    async with app.run_test(size=(120, 30)) as pilot:
        table = await loaded(pilot)
        await pilot.press("slash", *"queued")
        queued = [r for r in engine.list_runs() if r.state is RunState.QUEUED]
        assert table.row_count == len(queued) > 0
        await pilot.press("enter")
        assert table.has_focus and table.row_count == len(queued)
        await pilot.press("slash", "ctrl+u", *"^training-[a-c]")
        expected = [r for r in engine.list_runs() if r.id[len("training-")] in "abc"]
        assert table.row_count == len(expected)
        await pilot.press("escape")
        assert table.row_count == 60
        # A broken regex filters on the text as typed rather than failing.
        await pilot.press("slash", *"seed-(", "enter")
        assert table.row_count == 0
        assert "No run matches" in widget_text(table)
        await pilot.press("escape")
        assert table.row_count == 60


async def test_sort_cycles_columns_and_reverses():
    app, _clock, _engine = make_app(30)
    async with app.run_test(size=(160, 30)) as pilot:
        table = await loaded(pilot)
        assert table.sort_key == "state"
        await pilot.press("s")
        assert table.sort_key == "queue"
        await pilot.press("s")
        assert table.sort_key == "wait"  # why queued runs wait: reasons of a kind together
        await pilot.press("s", "s", "s", "s")
        assert table.sort_key == "cost"
        ids = list(table._order)
        await pilot.press("S")
        assert table._order != ids
        assert "COST▼" in widget_text(table).splitlines()[0]
        for _ in range(10):
            await pilot.press("s")
        assert table.sort_key in {c.key for c, _ in table.columns()}


@pytest.mark.slow
async def test_updates_keep_selection_and_scroll():
    app, clock, engine = make_app(100, devices=8)
    async with app.run_test(size=(120, 24)) as pilot:
        table = await loaded(pilot)
        await pilot.press(*["j"] * 40)
        selected = table.selected_run.id
        scroll = table.scroll_y
        assert scroll > 0
        for _ in range(5):
            clock.advance(7)
            app.screen.poke()
            await feed_rounds(pilot)  # the feed read the runs after the clock moved, and they are shown
        assert table.selected_run.id == selected
        assert table.scroll_y == scroll


async def test_enter_opens_detail_and_escape_comes_back():
    app, _clock, _engine = make_app(20)
    async with app.run_test(size=(120, 30)) as pilot:
        table = await loaded(pilot)
        run_id = table.selected_run.id
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        assert app.screen.run_id == run_id
        assert app.screen.query_one("TabbedContent").active == "events"
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        assert app.screen.query_one("TabbedContent").active == "logs"


async def test_halt_asks_first_and_halts_on_yes():
    app, _clock, engine = make_app(0)
    run = engine.submit_manifest(SAMPLE_MANIFEST)
    async with app.run_test(size=(120, 30)) as pilot:
        await loaded(pilot)
        await pilot.press("ctrl+k")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert isinstance(app.screen, RunsScreen)
        assert not engine.get_run(run.id).state.terminal
        await pilot.press("ctrl+k")
        await pilot.press("y")
        await wait_for(pilot, lambda: engine.get_run(run.id).state is RunState.HALTED)
        table = app.screen.query_one(RunTable)
        await wait_for(pilot, lambda: table.selected_run.state is RunState.HALTED)


async def test_delete_asks_first_and_removes_the_row():
    app, _clock, engine = make_app(5)
    async with app.run_test(size=(120, 30)) as pilot:
        table = await loaded(pilot)
        victim = table.selected_run.id
        await pilot.press("ctrl+d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        assert table.row_count == 5
        await pilot.press("ctrl+d", "y")
        await wait_for(pilot, lambda: table.row_count == 4)
        assert victim not in table._order
        assert all(r.id != victim for r in engine.list_runs())


async def test_read_only_hides_and_refuses_halt_delete_and_new():
    app, _clock, engine = make_app(0, read_only=True)
    run = engine.submit_manifest(SAMPLE_MANIFEST)
    async with app.run_test(size=(120, 30)) as pilot:
        await loaded(pilot)
        screen = app.screen
        assert screen.check_action("halt", ()) is False
        assert screen.check_action("delete", ()) is False
        assert screen.check_action("new", ()) is False
        await pilot.press("ctrl+k", "ctrl+d", "n")
        assert app.screen is screen
        assert not engine.get_run(run.id).state.terminal
        header = app.screen.query_one(StatusHeader).render().plain
        assert "READ-ONLY" in header
        await pilot.press("question_mark")
        help_ids = {item.binding_id for item in __import__("dlaas_tui.keymap").keymap.describe(screen)}
        assert "runs.halt" not in help_ids and "runs.delete" not in help_ids


async def test_new_and_lazy_screens_notify_when_missing(monkeypatch):
    import dlaas_tui.app as app_module

    monkeypatch.setitem(app_module.LAZY_SCREENS, "buckets", ("dlaas_tui.screens.no_such", "X", "d"))
    monkeypatch.setitem(app_module.LAZY_SCREENS, "new", ("dlaas_tui.screens.no_such", "Y", "d"))
    app, _clock, _engine = make_app(3)
    async with app.run_test(size=(120, 30)) as pilot:
        await loaded(pilot)
        await pilot.press("n")
        await pilot.press("colon", *"buckets", "enter")
        await wait_for(pilot, lambda: len(notes(app)) >= 2, what="both notifications")
        assert isinstance(app.screen, RunsScreen)
        text = " ".join(notes(app))
        assert "new screen is not in this build" in text and "buckets screen is not in this build" in text


async def test_command_bar_theme_completion_and_history(dlaas_home):
    app, _clock, _engine = make_app(3)
    async with app.run_test(size=(120, 30)) as pilot:
        await loaded(pilot)
        await pilot.press("colon", *"the")
        assert isinstance(app.screen, CommandScreen)
        bar = app.screen.query_one("CommandBar")
        await suggested(pilot, bar)
        await pilot.press("tab")  # completes the command name
        assert bar.value == "theme"
        await pilot.press("space", "l")
        await suggested(pilot, bar)
        await pilot.press("tab", "enter")
        assert app.theme == "light"
        state = json.loads(app.backend.paths.ui_state_file.read_text())
        assert state["theme"] == "light"
        assert state["command_history"][-1] == "theme light"
        await pilot.press("colon", "up")
        assert app.screen.query_one("CommandBar").value == "theme light"
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_theme_is_restored_and_ctrl_t_cycles():
    from backend.facade import get_paths
    from dlaas_tui.ui_state import UiState

    UiState(get_paths().ui_state_file).set_theme("high-contrast")
    app, _clock, _engine = make_app(1)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        assert app.theme == "high-contrast"
        seen = set()
        for _ in range(3):
            await pilot.press("ctrl+t")
            seen.add(app.theme)
        assert {"dark", "light", "high-contrast"} <= seen


@pytest.mark.slow
async def test_unknown_command_and_bad_profile_are_notifications():
    app, _clock, _engine = make_app(2)
    async with app.run_test(size=(120, 30)) as pilot:
        await loaded(pilot)
        await pilot.press("colon", *"thme dark", "enter")
        await pilot.press("colon", *"profile nosuch", "enter")
        await wait_for(pilot, lambda: any("nosuch" in n for n in notes(app)))
        assert any("did you mean :theme" in n for n in notes(app))
        assert isinstance(app.screen, RunsScreen) and app.is_running
        assert app.backend.profile.name == "fake"


@pytest.mark.slow
async def test_profile_switch_reloads_the_table(dlaas_home):
    (dlaas_home / "config.toml").write_text('[profiles.demo]\nscheduler = "fake"\n')
    app, _clock, _engine = make_app(7)
    async with app.run_test(size=(120, 30)) as pilot:
        table = await loaded(pilot)
        assert table.row_count == 7
        await pilot.press("colon", *"profile demo", "enter")
        await wait_for(pilot, lambda: app.backend.profile.name == "demo")
        await wait_for(pilot, lambda: app.screen.query_one(RunTable).row_count == 0)
        header = app.screen.query_one(StatusHeader)
        await wait_for(pilot, lambda: header.stats.profile == "demo")


async def test_help_lists_every_key_of_the_screen_from_bindings():
    app, _clock, _engine = make_app(2)
    app_keys = {"q": "quit"}
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        from dlaas_tui.keymap import describe

        ids = {item.binding_id for item in describe(app.screen_stack[-2])}
        for wanted in ("runs.filter", "runs.logs", "runs.halt", "runs.delete", "runs.new", "table.sort",
                       "table.select", "table.down", "app.quit", "app.command", "app.theme", "app.help"):
            assert wanted in ids
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        assert app_keys


async def test_config_keys_remap_bindings(dlaas_home):
    from backend.config import Config

    app, _clock, engine = make_app(0, config=Config(keys={"runs.halt": "x"}))
    run = engine.submit_manifest(SAMPLE_MANIFEST)
    async with app.run_test(size=(120, 30)) as pilot:
        await loaded(pilot)
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: engine.get_run(run.id).state is RunState.HALTED)


async def test_command_palette_opens():
    from textual.command import CommandList, CommandPalette

    from .screens_harness import settle

    app, _clock, _engine = make_app(2)
    async with app.run_test(size=(120, 30)) as pilot:
        await loaded(pilot)
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"light")
        await settle(pilot)  # the palette's search workers
        hits = app.screen.query_one(CommandList)
        await wait_for(pilot, lambda: hits.option_count > 0, what="the palette's hits")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.theme == "light")


class BrokenEngine:
    """An engine whose every call fails, as a cluster that went away does."""

    name = "broken"

    def __init__(self) -> None:
        self.asked: collections.Counter[str] = collections.Counter()  # calls, by method

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            self.asked[name] += 1
            raise EngineError("the cluster is unreachable: connection refused")

        return fail


async def test_backend_errors_are_notifications_not_crashes():
    engine = BrokenEngine()
    app, _clock, _engine = make_app(engine=engine)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: any("unreachable" in n for n in notes(app)))
        await pilot.press("j", "enter", "l", "ctrl+k", "slash", "x", "escape")
        assert app.is_running and isinstance(app.screen, RunsScreen)
        # The same error repeating is reported once, not once a tick: let the feed fail 3 more rounds
        # (a round's report has been handled once the next round asks the engine again).
        asked = engine.asked["changes"]
        await wait_for(pilot, lambda: engine.asked["changes"] >= asked + 3, what="3 more rounds of the feed")
        await pilot.pause()
        assert sum("unreachable" in n for n in notes(app)) == 1


async def test_markup_and_escapes_in_run_names_are_shown_literally():
    app, _clock, engine = make_app(0)
    name = "[bold red]boom[/] \x1b[31mred\x1b]8;;http://x\x07"
    engine.submit_manifest(SAMPLE_MANIFEST, name=name)
    async with app.run_test(size=(160, 30)) as pilot:
        table = await loaded(pilot)
        text = widget_text(table)
        assert "[bold red]boom[/]" in text
        assert "\x1b" not in text and "\x07" not in text
        assert "[bold red]boom[/] ␛" in text
        await pilot.press("slash", *"boom", "enter")
        assert table.row_count == 1


async def test_header_counts_cpu_slots_and_spend_under_a_cent():
    from backend.engines.fake.engine import FakeEngine

    from .tui_fixtures import FakeClock

    clock = FakeClock()
    engine = FakeEngine(clock, devices=2, gpu_type="cpu", prices={"cpu": 0.05}, minimum_seconds=60)
    engine.submit_manifest(SAMPLE_MANIFEST, name="on-a-slot", duration=3600)
    done = engine.submit_manifest(SAMPLE_MANIFEST, name="short", duration=1)
    clock.advance(120)
    assert engine.get_run(done.id).state.terminal
    app, _clock, _engine = make_app(engine=engine)
    async with app.run_test(size=(120, 30)) as pilot:
        await loaded(pilot)
        header = app.screen.query_one("StatusHeader")
        await wait_for(pilot, lambda: header.stats.gpus_total is not None)
        text = header.render().plain
        assert "CPU slots 1/2" in text
        assert "GPUs" not in text
        spent = header.stats.spend_today_usd
        assert 0 < spent < 0.01
        assert f"today ${spent:.4f}" in text


async def test_queue_reads_in_order_and_age_sorts_by_value():
    app, clock, engine = make_app(0, devices=1)
    # Priorities make queue positions differ from submit order.
    for i in range(8):
        manifest = dict(SAMPLE_MANIFEST, priority="high" if i in (3, 6) else "normal")
        engine.submit_manifest(manifest, name=f"q-{i}", duration=3600)
        clock.advance(7 * (i + 1))
    async with app.run_test(size=(120, 30)) as pilot:
        table = await loaded(pilot)
        queued = [table._runs[i] for i in table._order if table._runs[i].state.value == "QUEUED"]
        assert [r.queue_position for r in queued] == list(range(1, len(queued) + 1))
        lines = widget_text(table).splitlines()
        shown = [line.split()[3] for line in lines[1:] if " QUEUED " in line]
        assert shown == [f"#{n}" for n in range(1, len(queued) + 1)]
        # AGE: by the duration shown, numerically (not `42s` before `8s`).
        table.sort_key = "age"
        await pilot.pause()
        from dlaas_tui.widgets.run_table import run_duration

        durations = [run_duration(table._runs[i], table._now) for i in table._order]
        assert durations == sorted(durations, reverse=table.sort_reverse)
        table.sort_reverse = not table.sort_reverse
        await pilot.pause()
        durations = [run_duration(table._runs[i], table._now) for i in table._order]
        assert durations == sorted(durations, reverse=table.sort_reverse)


async def test_a_run_asking_for_no_gpu_holds_a_cpu_slot_everywhere():
    """One story: the slot a `gpus: 0` run is billed for is its assignment, busy in `:gpus`, counted in
    the header; with every slot taken the next such run waits in the queue."""
    from backend.engines.fake.engine import FakeEngine
    from dlaas_tui.screens.gpus import GpusScreen

    from .screens_harness import screen_text, settle
    from .tui_fixtures import FakeClock

    clock = FakeClock()
    engine = FakeEngine(clock, devices=2, gpu_type="cpu")
    cpu_manifest = dict(SAMPLE_MANIFEST, gpus=0)
    first = engine.submit_manifest(cpu_manifest, name="cpu-one", duration=3600)
    second = engine.submit_manifest(cpu_manifest, name="cpu-two", duration=3600)
    third = engine.submit_manifest(cpu_manifest, name="cpu-three", duration=3600)
    clock.advance(60)
    assert engine.get_run(first.id).state is RunState.PROCESSING
    assert engine.get_run(third.id).state is RunState.QUEUED
    app, _clock, _engine = make_app(engine=engine)
    async with app.run_test(size=(120, 30)) as pilot:
        table = await loaded(pilot)
        header = app.screen.query_one(StatusHeader)
        await wait_for(pilot, lambda: header.stats.gpus_total is not None)
        assert "CPU slots 2/2" in header.render().plain
        assert "running 2" in header.render().plain
        rows = {line.split()[1]: line for line in widget_text(table).splitlines()[1:] if line.strip()}
        assert "cpu:0" in rows["cpu-one"] and "cpu:1" in rows["cpu-two"]
        assert "QUEUED" in rows["cpu-three"] and "#1" in rows["cpu-three"]
        app.open_lazy("gpus")
        await wait_for(pilot, lambda: isinstance(app.screen, GpusScreen))
        await settle(pilot)
        shown = screen_text(app)
        assert first.id in shown and second.id in shown
        assert "idle" not in shown


async def test_the_first_screenful_reads_the_same_as_the_full_table():
    """10,000 runs are read after a first page (running, the queue's head, the newest finished):
    the rows shown first are the rows the full table has on top."""
    app, _clock, _engine = make_app(400, devices=8, poll_interval=60)
    seen: list[list[str]] = []
    original = RunsScreen._apply_page

    def spy(self, runs, prepared):
        original(self, runs, prepared)
        seen.append(list(self.query_one(RunTable)._order))

    RunsScreen._apply_page = spy
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            table = await loaded(pilot)
            await wait_for(pilot, lambda: table.total_count == 400)
            assert seen, "no first page was shown"
            first = seen[0]
            assert 0 < len(first) < 400
            top = min(len(first), 60)
            assert first[:top] == table._order[:top]
    finally:
        RunsScreen._apply_page = original
