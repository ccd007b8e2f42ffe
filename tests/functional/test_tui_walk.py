"""What a walk through every screen at 80×24 and 120×40 found, kept fixed.

- a footer key that does not fit whole is left out (it read `^k H`, or a lone `^d` behind a modal);
- the GPUs, experiments and editor screens carry the status header the runs screen has;
- `esc Back` and `q Back` were both in the GPUs and experiments footers;
- the command palette said `Gpus` and `New`;
- on the experiments list, STATES (the widest column) pushed BEST and COST out of an 80-column view;
- on a read-only profile, a write key (halt, delete, new) did nothing and said nothing, and at 80
  columns the header's `RO` (last on the line) was cut off, as was the committed figure.
"""
from __future__ import annotations

import pytest
from textual.widgets._footer import FooterKey

from dlaas_tui.screens.help import HelpScreen
from dlaas_tui.screens.runs import RunsScreen
from dlaas_tui.widgets.footer import KeysFooter
from dlaas_tui.widgets.header import StatusHeader
from dlaas_tui.widgets.run_table import RunTable

from .tui_fixtures import SAMPLE_MANIFEST, drawn, make_app, wait_for


async def loaded(pilot) -> RunTable:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(RunTable).row_count)
    return app.screen.query_one(RunTable)


def footer_keys(screen) -> list[FooterKey]:
    return [k for k in screen.query_one(KeysFooter).query(FooterKey) if k.display]


def footer_fits(screen) -> bool:
    """Every key shown lies whole on the line, clear of the pinned `? Help  : Command` group."""
    footer = screen.query_one(KeysFooter)
    pinned = footer.query_one(".pinned-keys")
    shown = [k for k in footer_keys(screen) if k.parent is not pinned]
    return bool(shown) and all(k.region.width and k.region.right <= pinned.region.x for k in shown)


async def test_footer_shows_whole_keys_only_and_gives_them_back_when_wider():
    app, _clock, _engine = make_app(20, poll_interval=60)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        screen = app.screen
        await wait_for(pilot, lambda: footer_fits(screen))
        at_80 = [k.key_display for k in footer_keys(screen)]
        # At 80 the view's keys give way to the run's actions and the way out (test_tui_footer.py).
        assert "^k" in at_80 and "^d" in at_80 and "q" in at_80 and "s" not in at_80
        # Behind a modal screen the footer is rebuilt too, and still shows no cut key.
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help screen")
        await drawn(pilot)  # the footer below is rebuilt after the modal's refresh
        await wait_for(pilot, lambda: footer_fits(screen))
        await pilot.press("escape")
        await pilot.resize_terminal(160, 30)
        await wait_for(pilot, lambda: "s" in [k.key_display for k in footer_keys(screen)])
        await wait_for(pilot, lambda: footer_fits(screen))
        assert [k.key_display for k in footer_keys(screen)][-3:] == ["q", "?", ":"]  # all of them now


@pytest.mark.parametrize("command, where", [("gpus", "gpus"), ("experiments", "experiments"), ("new", "new run")])
async def test_every_screen_has_the_status_header(command, where):
    app, _clock, engine = make_app(20, poll_interval=60)
    queued = sum(1 for r in engine.list_runs() if r.state.value == "QUEUED")
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await wait_for(pilot, lambda: app.header_stats is not None)
        runs_screen = app.screen
        app.run_command(command)
        await wait_for(pilot, lambda: app.screen is not runs_screen and app.screen.query(StatusHeader))
        text = app.screen.query_one(StatusHeader).render().plain
        assert f"  {where} " in text and f"queued {queued}" in text and "profile fake" in text
        # q and esc are not both listed as Back.
        if command != "new":
            await wait_for(pilot, lambda: any(k.key_display == "q" for k in footer_keys(app.screen)))
            backs = [k.key_display for k in footer_keys(app.screen) if k.description == "Back"]
            assert backs == ["q"]


async def test_experiments_keep_best_and_cost_in_view_at_80_columns():
    from backend.engines.fake.engine import FakeEngine

    from .tui_fixtures import FakeClock

    clock = FakeClock()
    engine = FakeEngine(clock, devices=4, gpu_type="H100")
    engine.seed(60, experiment_size=6)
    app, _c, _e = make_app(engine=engine, poll_interval=60)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        app.run_command("experiments")
        await wait_for(pilot, lambda: app.screen.query("#experiments")
                       and app.screen.query_one("#experiments").row_count > 0)
        table = app.screen.query_one("#experiments")
        labels = [str(c.label) for c in table.columns.values()]
        assert labels == ["EXPERIMENT", "RUNS", "BEST", "COST", "STATES"]
        offsets, x = {}, 0
        for column in table.columns.values():
            offsets[str(column.label)] = (x, x + column.get_render_width(table))
            x += column.get_render_width(table)
        assert offsets["COST"][1] <= table.size.width  # BEST and COST whole on screen
        assert table.styles.overflow_x == "hidden"  # no scroll bar eating a row: STATES is cut instead


async def test_a_write_key_on_a_read_only_profile_says_why_nothing_happens():
    app, _clock, engine = make_app(0, read_only=True)
    run = engine.submit_manifest(SAMPLE_MANIFEST)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        # At 80 columns the header still says so: RO comes first, where the line is never cut.
        await wait_for(pilot, lambda: app.header_stats is not None)
        assert app.screen.query_one(StatusHeader).render().plain.startswith("dlaas-tui RO ")
        await pilot.press("ctrl+k", "n", "j")
        notes = [str(n.message) for n in app._notifications]
        assert notes == ["Read-only: halt is not allowed (read_only profile or --read-only)",
                         "Read-only: new run is not allowed (read_only profile or --read-only)"]
        assert not engine.get_run(run.id).state.terminal and isinstance(app.screen, RunsScreen)
        # The same on the other screens that write.
        app.run_command("buckets")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "BucketsScreen")
        await pilot.press("u")
        assert [str(n.message) for n in app._notifications][-1].startswith("Read-only: upload is not allowed")
    # A writable profile says nothing of the kind.
    app, _clock, engine = make_app(0)
    engine.submit_manifest(SAMPLE_MANIFEST)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.press("j")
        assert not any("Read-only" in str(n.message) for n in app._notifications)


async def test_palette_names_screens_as_the_rest_of_the_app_does():
    app, _clock, _engine = make_app(2)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "GPUs" in titles and "New run" in titles and "Gpus" not in titles
    app, _clock, _engine = make_app(2, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        assert "New run" not in [c.title for c in app.get_system_commands(app.screen)]
