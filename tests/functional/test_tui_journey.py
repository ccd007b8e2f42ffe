"""A new user's journey (issue 22): the filter in view, `q` and esc, help in reach, live headers.

Every test runs at 80×24 and 120×40 and reads what the screen shows, as a user would.
"""
from __future__ import annotations

import re

import pytest

from backend.facade import RunState
from dlaas_tui.screens.confirm import ConfirmScreen
from dlaas_tui.screens.help import HelpScreen
from dlaas_tui.screens.run_detail import RunDetailScreen
from dlaas_tui.screens.runs import RunsScreen
from dlaas_tui.screens.command import CommandScreen
from dlaas_tui.widgets.run_table import RunTable

from .screens_harness import screen_text
from .tui_fixtures import SAMPLE_MANIFEST, make_app, wait_for

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


async def loaded(pilot) -> RunTable:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(RunTable).row_count)
    await wait_for(pilot, lambda: app.header_stats is not None)
    return app.screen.query_one(RunTable)


def lines(app) -> list[str]:
    return screen_text(app).splitlines()


def footer(app) -> str:
    shown = lines(app)
    return shown[-1] if shown else ""  # nothing drawn yet on a screen just pushed


# -- item 2: the filter shows what it filters on, and how many rows it leaves ---------------------
@pytest.mark.parametrize("size", SIZES)
async def test_filter_text_and_counts_show_while_typing_and_after_enter(size):
    app, _clock, _engine = make_app(60, poll_interval=60)
    async with app.run_test(size=size) as pilot:
        table = await loaded(pilot)
        assert "of 60 runs" not in screen_text(app)
        await pilot.press("slash", *"seed-0005")
        await pilot.pause()
        shown = lines(app)
        # the filter bar's line (a queued row's "behind N runs" also holds both words)
        typing = next(line for line in shown if "seed-0005" in line and " of 60 runs" in line)
        assert re.search(r"/ ?seed-0005", typing) and "10 of 60 runs" in typing
        assert footer(app) not in typing  # above the footer, not under it
        assert table.row_count == 10

        await pilot.press("enter")
        await pilot.pause()
        kept = next(line for line in lines(app) if "10 of 60 runs" in line)
        assert "seed-0005" in kept and "esc clears" in kept
        assert table.row_count == 10 and app.focused is table

        await pilot.press("escape")
        await pilot.pause()
        assert "of 60 runs" not in screen_text(app) and "esc clears" not in screen_text(app)
        assert table.row_count == 60 and table.filter_text == ""


@pytest.mark.parametrize("size", SIZES)
async def test_filter_counts_follow_new_runs_and_esc_in_the_bar_clears(size):
    app, clock, engine = make_app(20, poll_interval=0.1)
    async with app.run_test(size=size) as pilot:
        table = await loaded(pilot)
        await pilot.press("slash", *"filtered-", "enter")
        await pilot.pause()
        assert "0 of 20 runs" in screen_text(app)
        engine.submit_manifest({**SAMPLE_MANIFEST, "name": "filtered-one"})
        await wait_for(pilot, lambda: "1 of 21 runs" in screen_text(app))
        assert table.row_count == 1

        await pilot.press("slash")  # edit again: the bar opens on the filter in force
        await pilot.pause()
        assert app.screen.query_one("#filter-bar").value == "filtered-"
        await pilot.press("escape")
        await pilot.pause()
        assert table.row_count == 21 and "of 21 runs" not in screen_text(app)


# -- item 3: `q` leaves a sub-screen, quits from home; help is always in the footer ---------------
@pytest.mark.parametrize("size", SIZES)
async def test_q_goes_back_from_sub_screens_and_quits_only_from_home(size):
    app, _clock, engine = make_app(30, poll_interval=60)
    async with app.run_test(size=size) as pilot:
        await loaded(pilot)
        await wait_for(pilot, lambda: "? Help" in footer(app) and ": Command" in footer(app), 30)

        await pilot.press("l")  # a run's Logs tab, where `less` habit presses q
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        await wait_for(pilot, lambda: "? Help" in footer(app) and ": Command" in footer(app) and "q Back" in footer(app), 30)
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        assert app.is_running

        await pilot.press("enter")  # the Events tab, left with esc the same way
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))

        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert re.search(r"\bq +Quit\b", screen_text(app))
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        await pilot.press("question_mark")  # help on a sub-screen says what q does there
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        from dlaas_tui.keymap import describe

        [q_help] = [k for k in describe(app.screen_stack[-2]) if k.binding_id == "app.quit"]
        assert q_help.description == "Back (quits from the runs table)"  # what the help table lists
        await pilot.press("escape", "q")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))

        running = next(r for r in engine.list_runs() if r.state is RunState.PROCESSING)
        app.open_run(running.id)
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        await pilot.press("ctrl+k")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("q")  # a dialog: q says no
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        assert engine.get_run(running.id).state is RunState.PROCESSING
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        assert app.is_running

        await pilot.press("q")  # home: one key quits
        await wait_for(pilot, lambda: not app.is_running)


@pytest.mark.parametrize("size", SIZES)
async def test_help_and_command_keys_are_in_every_footer(size):
    app, _clock, engine = make_app(10, poll_interval=60)
    async with app.run_test(size=size) as pilot:
        await loaded(pilot)
        for command, name in (("gpus", "GpusScreen"), ("experiments", "ExperimentsScreen")):
            app.run_command(command)
            await wait_for(pilot, lambda name=name: type(app.screen).__name__ == name)
            await wait_for(pilot, lambda: "? Help" in footer(app) and "q Back" in footer(app))
            assert ": Command" in footer(app) and "Quit" not in footer(app), (command, footer(app))
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))


# -- item 10: live header, dialogs without ␊, the full `:` hint ----------------------------------
def header_running(app) -> int:
    match = re.search(r"\brun(?:ning)? (\d+)", lines(app)[0])
    assert match, lines(app)[0]
    return int(match.group(1))


@pytest.mark.parametrize("size", SIZES)
async def test_run_detail_header_follows_a_halt(size):
    app, clock, engine = make_app(0, poll_interval=0.2)
    first = engine.submit_manifest(SAMPLE_MANIFEST, duration=1000)
    engine.submit_manifest(SAMPLE_MANIFEST, duration=1000)
    clock.advance(30)
    async with app.run_test(size=size) as pilot:
        await loaded(pilot)
        await wait_for(pilot, lambda: header_running(app) == 2)
        app.open_run(first.id)
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.run is not None)
        assert header_running(app) == 2
        await pilot.press("ctrl+k")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "␊" not in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: engine.get_run(first.id).state is RunState.HALTED)
        # Still on the detail screen: its header and its summary catch up without leaving it.
        await wait_for(pilot, lambda: header_running(app) == 1)
        await wait_for(pilot, lambda: "HALTED" in lines(app)[1])
        assert isinstance(app.screen, RunDetailScreen)


@pytest.mark.parametrize("size", SIZES)
async def test_halt_and_delete_dialogs_break_lines_and_show_names_as_data(size):
    app, clock, engine = make_app(0, poll_interval=0.2)
    engine.submit_manifest({**SAMPLE_MANIFEST, "name": "pytorch-sweep-10"}, duration=1000)
    clock.advance(30)
    async with app.run_test(size=size) as pilot:
        await loaded(pilot)
        for key in ("ctrl+k", "ctrl+d"):
            await pilot.press(key)
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            shown = screen_text(app)
            assert "␊" not in shown
            name_line = next(line for line in lines(app) if "pytorch-sweep-10" in line)
            assert "state" not in name_line and "record" not in name_line  # the details start below
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))


@pytest.mark.parametrize("size", SIZES)
async def test_command_hint_names_every_command(size):
    app, _clock, _engine = make_app(5, poll_interval=60)
    async with app.run_test(size=size) as pilot:
        await loaded(pilot)
        await pilot.press("colon")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandScreen))
        await pilot.pause()
        hint = next(line for line in lines(app) if "command:" in line)
        for command in ("runs", "buckets", "gpus", "new", "experiments", "profile", "theme", "help", "quit"):
            assert re.search(rf"\b{command}\b", hint), (command, hint)


# -- item 9: a search pauses follow, jumps, says search, and keeps the query as typed -------------
class Appender:
    """Writes `epoch=N` lines to a log, as a training run does, until stopped."""

    def __init__(self, path, first: int) -> None:
        import threading

        self.path = path
        self.n = first
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.02):
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(f"epoch={self.n} loss=0.{self.n}\n")
            self.n += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.mark.parametrize("size", SIZES)
async def test_log_search_while_following_pauses_and_jumps_verbatim(size, tmp_path):
    app, clock, engine = make_app(0, poll_interval=0.5)
    run = engine.submit_manifest(SAMPLE_MANIFEST, duration=1000)
    clock.advance(30)
    log = tmp_path / "run.log"
    log.write_text("".join(f"epoch={i} loss=0.{i}\n" for i in range(3000)), encoding="utf-8")
    engine.log_path = lambda run_id, learner=0: log  # the engine's own log file, as the local engine has
    async with app.run_test(size=size) as pilot:
        await loaded(pilot)
        app.open_run(run.id)
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        screen = app.screen
        view = screen.log_view
        await wait_for(pilot, lambda: view.line_count >= 3000)
        with Appender(log, 3000):
            await wait_for(pilot, lambda: view.line_count > 3010)
            assert view.follow and "epoch=12 " not in screen_text(app)
            await pilot.press("slash")
            await pilot.pause()
            prompt = next(line for line in lines(app) if "enter jumps" in line)
            assert "search" in prompt and "filter" not in prompt
            await pilot.press(*"epoch=12 ", "enter")  # the trailing space is part of the query
            await wait_for(pilot, lambda: view.current_match is not None)
            assert not view.follow and view.current_match == 12
            await wait_for(pilot, lambda: "epoch=12 loss" in screen_text(app))
            before = view.line_count
            await wait_for(pilot, lambda: view.line_count > before + 5)  # the log keeps growing...
            grown = view.line_count
            await wait_for(pilot, lambda: view.line_count > grown)  # ...through one more tick after that
            await pilot.pause()
            assert "epoch=12 loss" in screen_text(app)  # ...and the view stays on the match
            assert "search /epoch=12 /" in screen_text(app)
            assert "epoch=120 " not in [line.strip()[:10] for line in lines(app)]
            assert not any("wrapped" in str(n.message).lower() for n in app._notifications)

            await pilot.press("n")  # the only match: found again from the top, said quietly
            await wait_for(pilot, lambda: "(wrapped)" in screen_text(app))
            assert view.current_match == 12
            await pilot.press("s")  # follow again
            await wait_for(pilot, lambda: f"epoch={view.line_count - 1} " in screen_text(app))


async def test_log_search_with_follow_off_jumps_down_from_the_view(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("".join(f"step {i} {'ERROR' if i % 100 == 7 else 'ok'}\n" for i in range(1000)), encoding="utf-8")
    from .test_log_view import LogApp
    from dlaas_tui.widgets.log_view import LogView

    app = LogApp(log)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: view.line_count == 1000)
        await pilot.press("g")
        for _ in range(300):
            view.action_line_down()
        view.set_search("ERROR")
        await wait_for(pilot, lambda: view.current_match == 307)
        assert not app._notifications


# -- item 7: buckets keep the header, say whose buckets, show whole hex rows, and the preview's keys
def buckets_app():
    from backend.config import Config, Profile
    from backend.engines.fake.clock import FakeClock
    from backend.engines.fake.engine import FakeEngine
    from backend.facade import Backend, get_paths
    from dlaas_tui.app import DlaasApp

    from .screens_harness import demo_store

    store = demo_store()
    store.add("datasets", "models/weights.bin", bytes(range(256)) * 8, 4)
    engine = FakeEngine(FakeClock(), devices=4, gpu_type="H100")
    engine.seed(10)
    backend = Backend(config=Config(), profile=Profile(name="local", scheduler="fake"), paths=get_paths(),
                      _engine=engine, _store=store)
    return DlaasApp(backend, poll_interval=60)


@pytest.mark.parametrize("size", SIZES)
async def test_buckets_header_crumbs_hex_rows_and_preview_keys(size):
    from dlaas_tui.screens.buckets import BucketsScreen
    from dlaas_tui.widgets.object_list import ObjectList
    from dlaas_tui.widgets.preview import Preview

    from .screens_harness import settle

    app = buckets_app()
    async with app.run_test(size=size) as pilot:
        await loaded(pilot)
        app.run_command("buckets")
        await wait_for(pilot, lambda: isinstance(app.screen, BucketsScreen))
        screen = app.screen
        await settle(pilot)
        shown = lines(app)
        assert shown[0].lstrip().startswith("dlaas-tui") and re.search(r"\brun(ning)? \d", shown[0])  # the header
        assert "buckets of the local store (profile local)" in shown[1] and "local:local" not in screen_text(app)

        table = screen.objects
        table.move_cursor(row=[e.name for e in table.entries].index("datasets"))
        await pilot.press("enter")
        await settle(pilot)
        table.move_cursor(row=[e.name for e in table.entries].index("models/"))
        await pilot.press("enter")
        await settle(pilot)
        assert "datasets › models" in lines(app)[1]
        table.move_cursor(row=[e.name for e in table.entries].index("weights.bin"))
        preview = screen.query_one(Preview)
        await wait_for(pilot, lambda: "first bytes" in screen_text(app))  # after the debounce and the read
        await settle(pilot)

        # Whole rows: every byte of a row and its ASCII column are on screen.
        rows = [line for line in str(preview.shown.renderables[1]).splitlines() if line]
        assert len(rows) >= 2
        text = screen_text(app)
        per_row = len(rows[0].split("|")[1])
        assert per_row in (8, 16) and per_row == len(rows[0].split("  ")[1].split())
        for row in rows[: preview.scrollable_content_region.height - 1]:
            assert row.rstrip() in text, row

        await pilot.press("enter")  # into the preview: said on screen, and j scrolls it
        await pilot.pause()
        assert app.focused is preview
        assert "j/k scroll · esc back to the list" in screen_text(app)
        assert preview.max_scroll_y > 0
        await pilot.press("j", "j", "down")
        await wait_for(pilot, lambda: preview.scroll_y == 3)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.focused, ObjectList) and "esc back to the list" not in screen_text(app)
        before = table.cursor_row
        await pilot.press("k")
        await pilot.pause()
        assert table.cursor_row == before - 1
        await pilot.press("q")  # up a level, as esc does
        await settle(pilot)
        assert "models" not in lines(app)[1] and isinstance(app.screen, BucketsScreen)


# -- item 8: the editor checks what the profile and the sweep would refuse, as you type ----------
EDITED = """\
name: digits-sweep
gpus: 1
priority: normal
data_stores:
  - id: ds
    type: local
    training_data: {container: datasets}
    training_results: {container: results}
framework:
  name: pytorch
  command: python train.py --lr ${lr} --hidden ${hidden}
sweep:
  parameters:
    lr: {values: [0.1, 0.01]}
    hidden: {values: [16, 32]}
"""


@pytest.mark.parametrize("size", SIZES)
async def test_editor_flags_what_cannot_run_with_line_and_column(size):
    from dlaas_tui.screens.editor import EditorScreen

    from .screens_harness import settle

    app, _clock, _engine = make_app(0, devices=1, poll_interval=60)  # a one-slot profile
    async with app.run_test(size=size) as pilot:
        await loaded_empty(pilot)
        app.run_command("new")
        await wait_for(pilot, lambda: isinstance(app.screen, EditorScreen) and bool(app.screen.query("#manifest")))
        screen = app.screen

        async def shows(text: str) -> str:
            screen.area.load_text(text)
            await pilot.pause()  # the Changed message restarts the debounce
            await wait_for(pilot, lambda: not screen.checking, what="the manifest check")
            await settle(pilot)
            await wait_for(pilot, lambda: "checking" not in screen_text(app))
            return screen_text(app)

        shown = await shows(EDITED)
        assert "✓ valid" in shown and not screen.validation.problems

        cases = [
            (EDITED.replace("gpus: 1", "gpus: 99"), "2:7", "never fits this profile"),
            (EDITED.replace("${hidden}", "${hiden}"), "11:48", "did you mean ${hidden}"),
            (EDITED.replace("--hidden ${hidden}", "--hidden ${hidden"), "11:48", "no closing"),
            (EDITED.replace("priority: normal", "priority: urgent"), "3:11", "unknown priority 'urgent'"),
        ]
        for text, where, message in cases:
            shown = await shows(text)
            assert "✓ valid" not in shown and "✗ 1 error" in shown, shown
            [problem] = screen.validation.errors
            assert f"{problem.line}:{problem.col}" == where and message in problem.message
            row = next((line for line in lines(app) if line.strip().startswith(where)), shown)
            assert problem.message[:20] in row, row  # the list row: where, then the message
            assert re.search(r"(\?|f1) Help", footer(app)), footer(app)  # even where ? is typed
            assert screen.area.marks.get(problem.line - 1) == "error"

        shown = await shows(EDITED)
        assert "✓ valid" in shown


async def loaded_empty(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.header_stats is not None)
