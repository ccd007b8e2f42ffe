"""Experiments: leaderboards, the median early-stopping rule, and one line per experiment.

Pure functions over runs and metric series, shared by every engine and by the UI, so the local agent
and the Kubernetes agent stop, rank and estimate in exactly the same way.
"""
from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .cost import MICRO
from .runs import Run


def better(a: float, b: float, goal: str) -> bool:
    """True when `a` is strictly better than `b` for this goal."""
    return a < b if goal == "minimize" else a > b


@dataclass
class LeaderboardRow:
    rank: int | None  # None for runs that reported no value of the metric
    run: Run
    value: float | None
    best: bool = False


@dataclass
class Leaderboard:
    experiment: str
    metric: str | None
    goal: str
    rows: list[LeaderboardRow]
    counts: dict[str, int]
    cost_micro_usd: int | None  # None when any run is unpriced
    parameters: list[str] = field(default_factory=list)

    @property
    def best(self) -> LeaderboardRow | None:
        return next((r for r in self.rows if r.best), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.experiment,
            "metric": self.metric,
            "goal": self.goal,
            "counts": self.counts,
            "runs_total": sum(self.counts.values()),
            "cost_usd": None if self.cost_micro_usd is None else self.cost_micro_usd / MICRO,
            "parameters": self.parameters,
            "best": self.best.run.id if self.best else None,
            "runs": [
                {
                    "rank": r.rank,
                    "best": r.best,
                    "value": r.value,
                    **r.run.to_json(),
                }
                for r in self.rows
            ],
        }


def leaderboard(
    experiment: str,
    runs: Sequence[Run],
    metric: str | None = None,
    goal: str = "minimize",
) -> Leaderboard:
    """Rank runs by their last value of `metric` (default: the runs' primary metric)."""
    if metric is None:
        names = Counter(r.primary_metric for r in runs if r.primary_metric)
        metric = names.most_common(1)[0][0] if names else None
    scored = [(r, r.metrics.get(metric)) for r in runs] if metric else [(r, None) for r in runs]
    with_value = [(r, v) for r, v in scored if v is not None and v == v]  # drop NaN
    without = [(r, v) for r, v in scored if v is None or v != v]
    with_value.sort(key=lambda rv: rv[1] if goal == "minimize" else -rv[1])
    rows = [LeaderboardRow(rank=i + 1, run=r, value=v) for i, (r, v) in enumerate(with_value)]
    rows += [LeaderboardRow(rank=None, run=r, value=None) for r, _ in without]
    if rows and rows[0].rank == 1:
        rows[0].best = True
    counts = dict(Counter(r.state.value for r in runs))
    costs = [r.cost_micro_usd for r in runs]
    total = None if any(c is None for c in costs) else sum(c or 0 for c in costs)
    params: list[str] = []
    for r in runs:
        for name in r.params:
            if name not in params:
                params.append(name)
    return Leaderboard(experiment, metric, goal, rows, counts, total, params)


def best_so_far(series: Iterable[tuple[float, float]], upto_step: float, goal: str) -> float | None:
    """The best value a run reported at or before `upto_step`; series is (step, value) pairs."""
    best: float | None = None
    for step, value in series:
        if step > upto_step or value != value:
            continue
        if best is None or better(value, best, goal):
            best = value
    return best


def median_stop(
    current: Sequence[tuple[float, float]],
    earlier: Sequence[Sequence[tuple[float, float]]],
    *,
    goal: str = "minimize",
    min_runs: int = 3,
    start_step: float = 0,
) -> tuple[bool, str]:
    """The median stopping rule: stop a run whose best value so far is worse than the median of
    earlier runs' best values up to the same step. Needs `min_runs` earlier runs that reached it."""
    if not current:
        return False, ""
    step = max(s for s, _ in current)
    if step < start_step:
        return False, ""
    mine = best_so_far(current, step, goal)
    if mine is None:
        return False, ""
    peers = []
    for series in earlier:
        if not series or max(s for s, _ in series) < step:
            continue  # this run never reached the step: it says nothing about it
        value = best_so_far(series, step, goal)
        if value is not None:
            peers.append(value)
    if len(peers) < min_runs:
        return False, ""
    median = statistics.median(peers)
    if better(median, mine, goal):
        return True, (
            f"early stop: best {mine:.6g} at step {step:g} is worse than the median "
            f"{median:.6g} of {len(peers)} earlier runs"
        )
    return False, ""


def experiment_summaries(runs: Iterable[Run]) -> list[dict[str, Any]]:
    """One line per experiment: counts by state, best value of the primary metric, cost."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        if r.experiment:
            groups.setdefault(r.experiment, []).append(r)
    out = []
    for name, members in groups.items():
        board = leaderboard(name, members, goal=members[0].metric_goal)
        best = board.best
        out.append(
            {
                "id": name,
                "runs": len(members),
                "counts": board.counts,
                "active": sum(1 for r in members if not r.state.terminal),
                "metric": board.metric,
                "best_value": best.value if best else None,
                "best_run": best.run.id if best else None,
                "cost_usd": None if board.cost_micro_usd is None else board.cost_micro_usd / MICRO,
                "submitted_at": min(r.submitted_at for r in members),
            }
        )
    out.sort(key=lambda e: e["submitted_at"], reverse=True)
    return out


def halt_candidates(runs: Iterable[Run], keep: str | None) -> list[str]:
    """Runs of an experiment still going, except `keep` ("halt the rest")."""
    return [r.id for r in runs if not r.state.terminal and r.id != keep]


__all__ = [
    "Leaderboard",
    "LeaderboardRow",
    "best_so_far",
    "experiment_summaries",
    "halt_candidates",
    "leaderboard",
    "median_stop",
]
