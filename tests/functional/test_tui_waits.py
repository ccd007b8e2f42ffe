"""Why a queued run waits and what it depends on, in the runs table and the run detail.

The fake engine says it with backend/waits.py's words (the local engine's), so these tests check
the real rules: a run behind others, GPUs busy, a tier limit, a prerequisite not yet complete.
"""
from __future__ import annotations

import pytest

from backend.facade import RunState
from dlaas_tui.screens.run_detail import RunDetailScreen
from dlaas_tui.screens.runs import RunsScreen
from dlaas_tui.widgets.run_table import RunTable

from .tui_fixtures import SAMPLE_MANIFEST, FakeClock, drawn, make_app, wait_for, widget_text

SIZES = [(80, 24), (120, 40)]


def pipeline_engine():
    """Two H100s: `prep` runs, `train` and then `eval` wait for it, `big` waits for two free GPUs,
    `small` waits behind them; one run ended before."""
    from backend.engines.fake.engine import FakeEngine

    clock = FakeClock()
    engine = FakeEngine(clock, devices=2, gpu_type="H100")
    done = engine.submit_manifest(SAMPLE_MANIFEST, name="warmup", duration=5)
    clock.advance(200)
    assert engine.get_run(done.id).state is RunState.COMPLETED
    ids = {"warmup": done.id}
    ids["prep"] = engine.submit_manifest(SAMPLE_MANIFEST, name="prep", duration=600).id
    clock.advance(1)
    ids["big"] = engine.submit_manifest(dict(SAMPLE_MANIFEST, gpus=2), name="big").id
    clock.advance(1)
    ids["train"] = engine.submit_manifest(SAMPLE_MANIFEST, name="train", after=[ids["prep"]]).id
    clock.advance(1)
    ids["eval"] = engine.submit_manifest(SAMPLE_MANIFEST, name="eval", after=[ids["train"]]).id
    clock.advance(1)
    ids["small"] = engine.submit_manifest(SAMPLE_MANIFEST, name="small").id
    clock.advance(30)
    return engine, clock, ids


async def loaded(pilot) -> RunTable:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(RunTable).row_count)
    return app.screen.query_one(RunTable)


def row_of(table: RunTable, run_id: str) -> str:
    return widget_text(table).splitlines()[1 + table._order.index(run_id)]


async def test_queued_runs_say_why_they_wait_and_the_column_goes_when_nothing_waits():
    engine, clock, ids = pipeline_engine()
    app, _clock, _ = make_app(engine=engine, poll_interval=0.1)
    async with app.run_test(size=(160, 30)) as pilot:
        table = await loaded(pilot)
        header = widget_text(table).splitlines()[0]
        assert "WAITING FOR" in header
        assert "GPUs busy: needs 2, 1 free (1 held by runs here)" in row_of(table, ids["big"])
        assert f"waiting for {ids['prep']} (PROCESSING)" in row_of(table, ids["train"])
        assert f"waiting for {ids['train']} (QUEUED)" in row_of(table, ids["eval"])
        assert "behind 3 runs" in row_of(table, ids["small"])
        # Only queued runs have a reason: the running and finished ones leave the cell empty.
        assert "waiting" not in row_of(table, ids["prep"]) and "busy" not in row_of(table, ids["warmup"])
        # The filter finds runs by their reason too.
        await pilot.press("slash", *"GPUs busy", "enter")
        assert table._order == [ids["big"]]
        await pilot.press("escape")
        # When the queue drains, the column collapses and gives its room back.
        clock.advance(5000)
        await wait_for(pilot, lambda: not any(r.state is RunState.QUEUED for r in table.runs()), timeout=10)
        await wait_for(pilot, lambda: "WAITING FOR" not in widget_text(table).splitlines()[0])
        assert all(engine.get_run(i).state is RunState.COMPLETED for i in ids.values())


async def test_a_halted_prerequisite_ends_its_dependents_and_the_reasons_move_on():
    engine, clock, ids = pipeline_engine()
    app, _clock, _ = make_app(engine=engine, poll_interval=0.1)
    async with app.run_test(size=(160, 30)) as pilot:
        table = await loaded(pilot)
        engine.halt(ids["prep"])  # its dependents can never start: they end FAILED with C206
        await wait_for(pilot, lambda: table._runs[ids["train"]].state is RunState.FAILED)
        await wait_for(pilot, lambda: table._runs[ids["eval"]].state is RunState.FAILED)
        assert "waiting for" not in row_of(table, ids["train"])  # no wait reason once it is not queued
        # With `prep` halted `big` has both GPUs, and `small`, now at the head, waits for one.
        await wait_for(pilot, lambda: table._runs[ids["big"]].state is not RunState.QUEUED)
        await wait_for(pilot, lambda: table._runs[ids["small"]].message == "GPUs busy: needs 1, 0 free (2 held by runs here)")
        assert "GPUs busy: needs 1" in row_of(table, ids["small"])
        assert f"not started: {ids['prep']}, which it depends on, ended HALTED" in engine.get_run(ids["train"]).message


async def test_tree_key_shows_dependents_under_their_prerequisite_and_back():
    engine, _clock, ids = pipeline_engine()
    app, _clock, _ = make_app(engine=engine, poll_interval=0.1)
    async with app.run_test(size=(120, 30)) as pilot:
        table = await loaded(pilot)
        flat = list(table._order)
        await pilot.press("j")
        selected = table.selected_run.id
        await pilot.press("t")
        assert table.show_tree and "NAME (tree)" in widget_text(table).splitlines()[0]
        order = table._order
        # train directly under prep, eval under train; everything else as it was, in the same order.
        assert order.index(ids["train"]) == order.index(ids["prep"]) + 1
        assert order.index(ids["eval"]) == order.index(ids["train"]) + 1
        assert [i for i in order if i not in (ids["train"], ids["eval"])] == \
            [i for i in flat if i not in (ids["train"], ids["eval"])]
        assert "└─ train" in row_of(table, ids["train"])
        assert "   └─ eval" in row_of(table, ids["eval"])
        assert table.selected_run.id == selected  # the selection stays on its run
        # The tree holds while runs change, and `t` gives the flat table back.
        await pilot.press("t")
        assert not table.show_tree and table._order == flat
        assert "└─" not in widget_text(table)
        assert table.selected_run.id == selected


async def test_detail_says_why_it_waits_and_what_it_depends_on():
    engine, _clock, ids = pipeline_engine()
    app, _clock, _ = make_app(engine=engine, poll_interval=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        app.open_run(ids["eval"], tab="events")
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.run is not None)
        summary = app.screen.summary.render().plain
        assert f"\nwaiting for {ids['train']} (QUEUED)\n" in summary
        assert f"depends on {ids['train']}" in summary


# ---------------------------------------------------------------- snapshots


async def _at_rest(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(RunTable).row_count)
    await wait_for(pilot, lambda: app.header_stats is not None)
    await wait_for(pilot, lambda: app.screen.query_one(RunTable).has_focus, what="the table focused")
    await drawn(pilot)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_wait_reasons(snap_compare, size):
    engine, _clock, _ids = pipeline_engine()
    app, _c, _e = make_app(engine=engine, poll_interval=60)
    assert snap_compare(app, terminal_size=size, run_before=_at_rest)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_dependency_tree(snap_compare, size):
    engine, _clock, _ids = pipeline_engine()
    app, _c, _e = make_app(engine=engine, poll_interval=60)

    async def before(pilot):
        await _at_rest(pilot)
        await pilot.press("t")
        table = pilot.app.screen.query_one(RunTable)
        await wait_for(pilot, lambda: table.show_tree, what="the dependency tree")
        await drawn(pilot)

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_detail_of_a_waiting_run(snap_compare, size):
    engine, _clock, ids = pipeline_engine()
    app, _c, _e = make_app(engine=engine, poll_interval=60)

    async def before(pilot):
        await _at_rest(pilot)
        pilot.app.open_run(ids["eval"], tab="events")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen))
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.run is not None and screen.events_table.row_count >= 1)
        await wait_for(pilot, lambda: screen.events_table.has_focus, what="the events focused")
        await drawn(pilot)

    assert snap_compare(app, terminal_size=size, run_before=before)


# ---------------------------------------------------------------- the tree's order, on its own


def test_tree_order_puts_each_run_under_its_first_prerequisite_shown():
    from types import SimpleNamespace

    from dlaas_tui.widgets.run_table import tree_order

    runs = {
        "a": SimpleNamespace(depends_on=[]),
        "b": SimpleNamespace(depends_on=["a"]),
        "c": SimpleNamespace(depends_on=["b", "a"]),  # under b only (a run is one row)
        "d": SimpleNamespace(depends_on=["a"]),
        "e": SimpleNamespace(depends_on=["gone"]),  # its prerequisite is filtered out: a root
        "f": SimpleNamespace(depends_on=[]),
    }
    order, branches = tree_order(["f", "d", "e", "c", "b", "a"], runs)
    assert order == ["f", "e", "a", "d", "b", "c"]
    assert branches == {"d": "├─ ", "b": "└─ ", "c": "   └─ "}
    # A circle (which no engine makes) still shows every run once.
    runs = {"x": SimpleNamespace(depends_on=["y"]), "y": SimpleNamespace(depends_on=["x"])}
    order, _ = tree_order(["x", "y"], runs)
    assert sorted(order) == ["x", "y"]
