from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from backend.errors import BadInput
from backend.budget import BudgetStatus, estimate_cost, spend
from backend.experiments import (
    experiment_summaries,
    halt_candidates,
    leaderboard,
    median_stop,
)
from backend.runs import Run, RunState

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def run(i: int, state=RunState.COMPLETED, loss=None, cost=1_000_000, exp="exp-1", **params) -> Run:
    return Run(
        id=f"training-{i:08d}",
        name="digits",
        state=state,
        submitted_at=T0 + timedelta(seconds=i),
        experiment=exp,
        cost_micro_usd=cost,
        metrics={} if loss is None else {"loss": loss, "accuracy": 1 - loss},
        primary_metric="loss" if loss is not None else None,
        params=params,
    )


def test_leaderboard_ranks_by_goal_and_marks_best():
    runs = [run(1, loss=0.5, lr=0.1), run(2, loss=0.2, lr=0.01), run(3, state=RunState.FAILED), run(4, loss=0.9)]
    board = leaderboard("exp-1", runs)
    assert board.metric == "loss"
    assert [r.run.id for r in board.rows] == [runs[1].id, runs[0].id, runs[3].id, runs[2].id]
    assert [r.rank for r in board.rows] == [1, 2, 3, None]
    assert board.best.run.id == runs[1].id
    assert board.counts == {"COMPLETED": 3, "FAILED": 1}
    assert board.cost_micro_usd == 4_000_000
    assert board.parameters == ["lr"]
    up = leaderboard("exp-1", runs, metric="accuracy", goal="maximize")
    assert up.best.run.id == runs[1].id
    js = board.to_json()
    assert js["best"] == runs[1].id and js["cost_usd"] == 4.0 and js["runs"][0]["rank"] == 1


def test_leaderboard_cost_unpriced_when_any_run_unpriced():
    assert leaderboard("e", [run(1, loss=1.0), run(2, loss=2.0, cost=None)]).cost_micro_usd is None


def test_median_stop_halts_a_run_worse_than_the_median():
    good = [[(s, 1.0 / (s + 1)) for s in range(10)] for _ in range(3)]
    bad = [(s, 5.0) for s in range(5)]
    stop, why = median_stop(bad, good, goal="minimize", min_runs=3)
    assert stop and "worse than the median" in why
    ok, _ = median_stop(good[0][:5], good, goal="minimize", min_runs=3)
    assert not ok


def test_median_stop_waits_for_min_runs_and_start_step():
    peers = [[(s, 0.1) for s in range(10)] for _ in range(2)]
    assert median_stop([(3, 9.0)], peers, min_runs=3) == (False, "")
    peers.append([(s, 0.1) for s in range(10)])
    assert median_stop([(3, 9.0)], peers, min_runs=3, start_step=5) == (False, "")
    # peers that never reached the step say nothing about it
    short = [[(0, 0.1)] for _ in range(5)]
    assert median_stop([(3, 9.0)], short, min_runs=3) == (False, "")


def test_median_stop_maximize():
    peers = [[(s, 0.9) for s in range(5)] for _ in range(3)]
    assert median_stop([(4, 0.5)], peers, goal="maximize", min_runs=3)[0]
    assert not median_stop([(4, 0.95)], peers, goal="maximize", min_runs=3)[0]


def test_estimate_from_max_duration_and_history():
    est = estimate_cost(12, 2, 6.88, 3600)
    assert est.total_micro_usd == 12 * 2 * 6_880_000
    assert "max_duration" in est.describe() and "$165.12" in est.describe()
    hist = estimate_cost(2, 1, 4.10, None, [1800, 5400])
    assert hist.basis == "history" and hist.total_micro_usd == 2 * 4_100_000
    assert estimate_cost(1, 1, 4.10, None).total_usd is None
    assert "unpriced" in estimate_cost(1, 1, None, 60).describe()


def test_budget_refuses_with_figures_and_warns_at_80_percent():
    status = BudgetStatus(daily_limit=50, monthly_limit=500, spent_today=45, spent_month=100)
    with pytest.raises(BadInput, match=r"over the daily budget: spent \$45.00 \+ committed \$0.00 "
                                      r"\+ this submission \$6.88 = \$51.88, but the daily budget is \$50.00"):
        status.check(estimate_cost(1, 1, 6.88, 3600))
    status.check(estimate_cost(1, 1, 4.10, 3600))
    assert "90%" in status.warning
    assert BudgetStatus(50, None, 10, 10).warning is None


def test_committed_money_counts_against_the_budget():
    status = BudgetStatus(daily_limit=10, monthly_limit=None, spent_today=1, spent_month=1, committed=5)
    with pytest.raises(BadInput, match=r"spent \$1.00 \+ committed \$5.00 \+ this submission \$6.00 = \$12.00"):
        status.check_total(6.0)
    status.check_total(4.0)  # exactly what is left fits
    assert status.to_json()["daily"] == {"budget_usd": 10, "spent_usd": 1, "committed_usd": 5, "left_usd": 4}
    assert status.to_json()["monthly"] is None
    assert BudgetStatus(10, None, 1, 1, committed=5).warning is None  # 60 % used
    assert "committed $7.00" in BudgetStatus(10, None, 1, 1, committed=7).warning


def test_spend_counts_today_and_month():
    runs = [run(1), run(2)]
    runs[1].submitted_at = T0 - timedelta(days=3)
    assert spend(runs, T0) == (1.0, 2.0)


def test_summaries_and_halt_the_rest():
    runs = [run(1, loss=0.3), run(2, state=RunState.PROCESSING, loss=0.5), run(3, exp="other", loss=0.1)]
    summ = {s["id"]: s for s in experiment_summaries(runs)}
    assert summ["exp-1"]["runs"] == 2 and summ["exp-1"]["best_run"] == runs[0].id
    assert summ["exp-1"]["active"] == 1
    assert halt_candidates(runs[:2], keep=runs[0].id) == [runs[1].id]
