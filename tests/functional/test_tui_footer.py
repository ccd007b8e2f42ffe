"""The way out of a screen is always in its footer, at 80 columns as at 120.

At 80 columns a queued run's Logs tab had no room for `q Back`, and the runs table never showed
`^d Delete` or `q Quit` for a live run. One rule on every screen now decides what a short footer
shows: the way out, `? Help` and `: Command` stay; the other keys give way by rank (view tweaks
first, the screen's own actions last), and a key left out is still listed by `?`.
"""
from __future__ import annotations

import pytest
from textual.widgets._footer import FooterKey

from backend.engines.fake.clock import FakeClock
from backend.engines.fake.engine import FakeEngine
from backend.facade import RunState
from dlaas_tui.keymap import describe
from dlaas_tui.screens.run_detail import TABS, RunDetailScreen
from dlaas_tui.screens.runs import RunsScreen
from dlaas_tui.widgets.footer import KeysFooter
from dlaas_tui.widgets.run_table import RunTable

from .screens_harness import screen_text
from .tui_fixtures import SAMPLE_MANIFEST, make_app, wait_for

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def one_queued_running_finished():
    """On one device: a finished run, one running, one queued behind it."""
    clock = FakeClock()
    engine = FakeEngine(clock, devices=1, gpu_type="H100")
    done = engine.submit_manifest(SAMPLE_MANIFEST, name="done", duration=5)
    clock.advance(120)
    running = engine.submit_manifest(SAMPLE_MANIFEST, name="running", duration=3600)
    queued = engine.submit_manifest(SAMPLE_MANIFEST, name="queued", duration=60)
    clock.advance(10)
    runs = {name: engine.get_run(r.id) for name, r in (("finished", done), ("running", running), ("queued", queued))}
    assert runs["finished"].state is RunState.COMPLETED and runs["queued"].state is RunState.QUEUED
    assert not runs["running"].state.terminal and runs["running"].state is not RunState.QUEUED
    return engine, runs


def footer_line(app) -> str:
    """The footer as drawn: the screen's last line."""
    shown = screen_text(app).splitlines()
    return shown[-1] if shown else ""


def settled(screen) -> bool:
    """The footer is laid out and every key it shows lies whole on the line, clear of the pinned group."""
    footer = screen.query_one(KeysFooter)
    pinned = footer.query(".pinned-keys")
    if not pinned:
        return False
    group = pinned.first()
    keys = [k for k in footer.query(FooterKey) if k.display]
    if not keys or not all(k.region.width for k in keys):
        return False
    return all(k.region.right <= group.region.x for k in keys if k.parent is not group) and \
        group.region.right <= footer.region.right


# A key of the run's own that shows the detail's footer was built for it (the run's keys rank above
# the view's, so it is there at both sizes).
RUN_KEY = {"queued": "p Priority", "running": "^k Halt", "finished": None}


@pytest.mark.parametrize("size", SIZES)
async def test_the_exit_key_is_in_every_footer_for_every_kind_of_run(size):
    engine, runs = one_queued_running_finished()
    app, _clock, _engine = make_app(engine=engine, poll_interval=60)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(RunTable).row_count)
        table = app.screen.query_one(RunTable)
        for kind, run in runs.items():
            await pilot.press("g", *["j"] * table._order.index(run.id))
            assert table.selected_run.id == run.id
            own = {"queued": "p Priority", "running": "^k Halt", "finished": "^d Delete"}[kind]

            def table_footer(own=own, kind=kind) -> bool:
                line = footer_line(app)
                return settled(app.screen) and own in line and ("Halt" in line) == (kind != "finished")

            await wait_for(pilot, table_footer, 30, what=f"the runs table's footer for the {kind} run")
            line = footer_line(app)
            assert "q Quit" in line and "? Help" in line and ": Command" in line, (kind, line)
            assert "^d Delete" in line, (kind, line)  # a run action outranks a view tweak

        for kind, run in runs.items():
            app.open_run(run.id)
            await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.run is not None)
            screen = app.screen
            for number, tab in enumerate(TABS, start=1):
                await pilot.press(str(number))

                def detail_footer(kind=kind, tab=tab, screen=screen) -> bool:
                    line = footer_line(app)
                    if not settled(screen) or screen.query_one("TabbedContent").active != tab:
                        return False
                    if kind == "finished":
                        return "Halt" not in line and "Priority" not in line
                    return RUN_KEY[kind] in line

                await wait_for(pilot, detail_footer, 30, what=f"the {tab} tab's footer of the {kind} run")
                line = footer_line(app)
                assert "q Back" in line and "? Help" in line and ": Command" in line, (kind, tab, line)
                assert "Quit" not in line, (kind, tab, line)
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="back on the runs table")


async def test_keys_left_out_at_80_columns_give_way_by_rank_and_stay_in_help():
    engine, runs = one_queued_running_finished()
    app, _clock, _engine = make_app(engine=engine, poll_interval=60)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(RunTable).row_count)
        table = app.screen.query_one(RunTable)
        await pilot.press("g", *["j"] * table._order.index(runs["queued"].id))
        await wait_for(pilot, lambda: settled(app.screen) and "p Priority" in footer_line(app), 30)
        line = footer_line(app)
        # The view's keys went, the queued run's actions stayed, in their order.
        assert "s Sort" not in line and "w Wrap" not in line
        order = ["⏎ Detail", "l Logs", "^k Halt", "p Priority", "^d Delete", "q Quit", "? Help", ": Command"]
        assert [line.index(k) for k in order] == sorted(line.index(k) for k in order), line
        # What the footer left out is still listed by `?`, and still answers.
        listed = {k.binding_id for k in describe(app.screen)}
        assert {"table.sort", "runs.filter", "runs.new"} <= listed
        sort_before = table.sort_key
        await pilot.press("s")
        await wait_for(pilot, lambda: table.sort_key != sort_before, what="s sorts though not in the footer")

        # Wider: every key comes back.
        await pilot.resize_terminal(160, 30)
        await wait_for(pilot, lambda: settled(app.screen) and "s Sort" in footer_line(app), 30)
        assert all(k in footer_line(app) for k in ("/ Filter", "n New run", "q Quit"))


@pytest.mark.parametrize("command", ["gpus", "experiments", "buckets"])
async def test_sub_screens_show_q_back_at_80_columns(command):
    app, _clock, _engine = make_app(10, poll_interval=60)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(RunTable).row_count)
        runs_screen = app.screen
        app.run_command(command)
        await wait_for(pilot, lambda: app.screen is not runs_screen and app.screen.query(KeysFooter))
        await wait_for(pilot, lambda: settled(app.screen) and "q Back" in footer_line(app), 30,
                       what=f"q Back in the {command} footer")
        assert "? Help" in footer_line(app) and ": Command" in footer_line(app)
