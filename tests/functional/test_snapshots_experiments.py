"""Snapshots of the leaderboard (`:experiments`) at 80×24 and 120×40: a 10-trial sweep over lr and
hidden. Parameter columns readable, the chart clear of the table, the legend clear of the curves,
the same run names in the table and the legend."""
from __future__ import annotations

from datetime import timedelta

import pytest

from backend.facade import MetricPoint, Run, RunState
from dlaas_tui.screens.experiments import ExperimentsScreen

from .screens_harness import T0, HarnessApp, make_backend
from .test_experiments_screen import settle
from .tui_fixtures import drawn, wait_for

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


class TrialsEngine:
    """Ten trials of one sweep: seven completed with accuracy curves, one running, two queued."""

    name = "fake"

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.series: dict[str, list[MetricPoint]] = {}
        for i in range(1, 11):
            lr, hidden = (0.001, 0.01, 0.1)[i % 3], (32, 64)[i % 2]
            state = RunState.COMPLETED if i <= 7 else RunState.PROCESSING if i == 8 else RunState.QUEUED
            final = round(0.80 + 0.017 * ((i * 7) % 10), 4)
            rid = f"training-trial{i:03d}"
            self.runs.append(Run(
                id=rid, name=f"pytorch-sweep-{i}", state=state, experiment="pytorch-sweep",
                submitted_at=T0 + timedelta(seconds=i), params={"lr": lr, "hidden": hidden},
                metrics={"accuracy": final} if state is not RunState.QUEUED else {},
                primary_metric="accuracy", metric_goal="maximize", cost_micro_usd=800,
                queue_position=i - 8 if state is RunState.QUEUED else None))
            if state is not RunState.QUEUED:
                steps = 10 if state is RunState.COMPLETED else 5
                self.series[rid] = [MetricPoint("accuracy", round(final * (1 - 0.6 * 0.7 ** s), 4), float(s))
                                    for s in range(1, steps + 1)]

    def list_runs(self, *, states=None, experiment=None, limit=None):
        return [r for r in self.runs if experiment is None or r.experiment == experiment]

    def metrics(self, run_id: str):
        return self.series.get(run_id, [])

    def close(self) -> None:
        pass


def leaderboard_app():
    return HarnessApp(make_backend(engine=TrialsEngine()), ExperimentsScreen)


@pytest.mark.parametrize("size", SIZES)
def test_leaderboard_snapshot(snap_compare, size):
    async def loaded(pilot):
        await settle(pilot)
        await drawn(pilot)

    assert snap_compare(leaderboard_app(), terminal_size=size, run_before=loaded)


def test_leaderboard_chart_in_turn_at_80_columns(snap_compare):
    """At 80 columns `c` shows the chart (legend underneath) in the leaderboard's place."""
    async def curves(pilot):
        await settle(pilot)
        await pilot.press("c")
        await wait_for(pilot, lambda: pilot.app.screen.has_class("-swapped"), what="the chart swapped in")
        await drawn(pilot)

    assert snap_compare(leaderboard_app(), terminal_size=(80, 24), run_before=curves)


@pytest.mark.parametrize("size", SIZES)
async def test_leaderboard_columns_fit_and_nothing_overlaps(size):
    app = leaderboard_app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await drawn(pilot)
        board = app.screen.query_one("#leaderboard")
        assert board.virtual_size.width <= board.scrollable_content_region.width  # LR, HIDDEN whole
        box = app.screen.query_one("#curves-box")
        if size[0] < 100:
            assert not box.display
            await pilot.press("c")
            await wait_for(pilot, lambda: box.display and not board.display, what="the chart in the board's place")
            assert box.display and not board.display
        else:
            assert box.display
            assert not box.region.overlaps(board.region)
            legend = str(app.screen.query_one("#legend").render())
            names = [row.run.name for row in app.screen.snapshot.board.rows[:8]]
            assert all(name in legend for name in names)
