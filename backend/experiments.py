"""Experiments: leaderboards, the median early-stopping rule, cost estimates and budgets.

Pure functions over runs and metric series, shared by every engine and by the UI, so the local agent
and the Kubernetes agent stop, rank and estimate in exactly the same way.
"""
from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import BadInput
from .eta import format_eta  # noqa: F401  (the one ETA model lives in backend/eta.py)
from .runs import Run, RunState

MICRO = 1_000_000


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


@dataclass(frozen=True)
class CostEstimate:
    runs: int
    devices_per_run: int
    seconds_per_run: float | None  # None: no max_duration and no history
    rate_micro_per_hour: int | None  # None: unpriced
    basis: str  # "max_duration", "history" or "unknown"

    @property
    def total_micro_usd(self) -> int | None:
        if self.seconds_per_run is None or self.rate_micro_per_hour is None:
            return None
        per_run = self.rate_micro_per_hour * self.devices_per_run * self.seconds_per_run / 3600
        return int(round(per_run * self.runs))

    @property
    def total_usd(self) -> float | None:
        total = self.total_micro_usd
        return None if total is None else total / MICRO

    def describe(self) -> str:
        total = self.total_usd
        if total is None:
            why = "unpriced" if self.rate_micro_per_hour is None else "no max_duration or history"
            return f"{self.runs} run(s) × {self.devices_per_run} device(s): cost unknown ({why})"
        hours = (self.seconds_per_run or 0) / 3600
        basis = "max_duration" if self.basis == "max_duration" else "mean of earlier runs"
        return (
            f"{self.runs} run(s) × {self.devices_per_run} device(s) × "
            f"${self.rate_micro_per_hour / MICRO:.2f}/h × {hours:.2f} h ({basis}) ≈ ${total:,.2f}"
        )


def estimate_cost(
    runs: int,
    devices_per_run: int,
    rate_usd_per_hour: float | None,
    max_duration_s: float | None,
    history_s: Sequence[float] = (),
) -> CostEstimate:
    """runs × devices × price × duration, with max_duration, else the mean of earlier durations."""
    if max_duration_s:
        seconds, basis = float(max_duration_s), "max_duration"
    elif history_s:
        seconds, basis = statistics.fmean(history_s), "history"
    else:
        seconds, basis = None, "unknown"
    rate = None if rate_usd_per_hour is None else int(round(rate_usd_per_hour * MICRO))
    return CostEstimate(runs, max(1, devices_per_run), seconds, rate, basis)


@dataclass(frozen=True)
class BudgetStatus:
    """A profile's budgets and what counts against them: spent (the runs' cost so far, today and this
    month, UTC) plus committed (what every queued and running run is estimated to cost still: its
    estimate less what it has already spent). A submission is refused when spent + committed + its
    own estimate would exceed a budget."""

    daily_limit: float | None
    monthly_limit: float | None
    spent_today: float
    spent_month: float
    committed: float = 0.0
    unestimated: int = 0  # active runs whose cost cannot be estimated (unpriced, or no duration known)

    def fraction_used(self) -> float:
        fractions = [
            (spent + self.committed) / limit
            for spent, limit in ((self.spent_today, self.daily_limit), (self.spent_month, self.monthly_limit))
            if limit
        ]
        return max(fractions, default=0.0)

    @property
    def warning(self) -> str | None:
        """Said in the TUI header at 80 % of a budget (spent and committed together)."""
        used = self.fraction_used()
        if used >= 0.8:
            return (f"budget {used:.0%} used (today ${self.spent_today:,.2f}, month ${self.spent_month:,.2f}, "
                    f"committed ${self.committed:,.2f})")
        return None

    def windows(self) -> list[tuple[str, float, float]]:
        """(label, limit, spent) for each budget set."""
        return [(label, limit, spent) for label, limit, spent in (
            ("daily", self.daily_limit, self.spent_today), ("monthly", self.monthly_limit, self.spent_month))
            if limit is not None]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"committed_usd": self.committed, "unestimated_runs": self.unestimated}
        for label, limit, spent in (("daily", self.daily_limit, self.spent_today),
                                    ("monthly", self.monthly_limit, self.spent_month)):
            out[label] = None if limit is None else {
                "budget_usd": limit, "spent_usd": spent, "committed_usd": self.committed,
                "left_usd": max(0.0, limit - spent - self.committed)}
        return out

    def check(self, estimate: CostEstimate) -> None:
        """Refuse a submission whose estimate exceeds what is left, with the figures."""
        total = estimate.total_usd
        if total is None:
            return
        self.check_total(total, estimate.describe())

    def check_total(self, total: float, detail: str = "") -> None:
        """As `check`, for the sum of several estimates (`detail` says how it was reached)."""
        for label, limit, spent in self.windows():
            if spent + self.committed + total > limit + 1e-9:
                raise BadInput(
                    f"over the {label} budget: spent ${spent:,.2f} + committed ${self.committed:,.2f} "
                    f"+ this submission ${total:,.2f} = ${spent + self.committed + total:,.2f}, "
                    f"but the {label} budget is ${limit:,.2f}; nothing was queued"
                    + (f" [{detail}]" if detail else "")
                )


def spend(runs: Iterable[Run], now: datetime) -> tuple[float, float]:
    """USD spent today and this month (UTC) by runs submitted then."""
    day = month = 0
    for r in runs:
        micro = r.cost_micro_usd or 0
        ts = r.admitted_at or r.submitted_at
        if (ts.year, ts.month) == (now.year, now.month):
            month += micro
            if ts.date() == now.date():
                day += micro
    return day / MICRO, month / MICRO


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


def format_params(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


__all__ = [
    "BudgetStatus",
    "CostEstimate",
    "Leaderboard",
    "LeaderboardRow",
    "RunState",
    "best_so_far",
    "estimate_cost",
    "experiment_summaries",
    "format_eta",
    "format_params",
    "halt_candidates",
    "leaderboard",
    "median_stop",
    "spend",
]
