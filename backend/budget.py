"""Cost before you spend: a submission's estimate (`CostEstimate`) and the profile's budget
(`BudgetStatus`), for every engine.

The estimate is runs × units × price × duration, the duration being `max_duration`, else the mean
billed time of earlier COMPLETED runs of the same manifest name, with the per-run billing minimum;
units and the cpu price for a run that asks for no GPU follow the meter (backend/cost.py).

A budget counts spent + committed + the new submission's estimate. Spent is the engine's runs' cost
(today and this month, UTC). Committed is, for every QUEUED and running run, its estimate (by the
same rule) less what it has already spent: money a run already taken will still cost, so two
sweeps submitted back to back cannot both fit a budget only one of them fits. The check is the same
on the local engine and on a cluster.
"""
from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from .cost import MICRO
from .errors import BadInput
from .eta import manifest_key
from .runs import Run, RunState, utcnow


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


def _gpu_type(manifest, engine) -> str | None:
    if manifest.gpus == 0:
        return "cpu"
    if manifest.gpu_type:
        return manifest.gpu_type
    if engine is not None:  # no type asked for: what this engine's devices are, if all alike
        try:
            types = {d.gpu_type for d in engine.inventory().devices}
        except Exception:
            types = set()
        if len(types) == 1:
            return types.pop()
    return None


def _history(engine, name: str) -> list[float]:
    """Billed seconds of earlier COMPLETED runs of this manifest (a sweep's trials are NAME-N)."""
    if engine is None:
        return []
    same = re.compile(re.escape(name) + r"(-\d+)?")
    out = []
    for r in engine.list_runs(states=[RunState.COMPLETED]):
        if same.fullmatch(r.name) and r.admitted_at and r.finished_at:
            out.append((r.finished_at - r.admitted_at).total_seconds())
    return out


def estimate_manifest(backend, manifest, runs: int | None = None, *, engine: Any = None) -> CostEstimate:
    """What submitting `manifest` (`runs` runs; default: its sweep's size) is expected to cost."""
    from .cost import PriceTable

    if runs is None:
        from .manifest.sweep import expand

        runs = len(expand(manifest)) if manifest.sweep is not None else 1
    rate = PriceTable.from_config(backend.config).rate(_gpu_type(manifest, engine))
    history = [] if manifest.max_duration_seconds else _history(engine, manifest.name)
    from .cost import billable_units

    units = billable_units(manifest.gpus * manifest.learners, manifest.learners)
    est = estimate_cost(runs, units, None if rate is None else rate / 1e6, manifest.max_duration_seconds, history)
    minimum = backend.config.billing.minimum_seconds
    if est.seconds_per_run is not None and est.seconds_per_run < minimum:
        est = replace(est, seconds_per_run=float(minimum))
    return est


def completed_durations(runs: Iterable[Run]) -> dict[str, list[float]]:
    """Billed-span seconds (admitted to finished) of COMPLETED runs, per manifest."""
    out: dict[str, list[float]] = {}
    for r in runs:
        if r.state == RunState.COMPLETED and r.admitted_at and r.finished_at:
            out.setdefault(manifest_key(r), []).append((r.finished_at - r.admitted_at).total_seconds())
    return out


def run_estimate_micro(run: Run, meter, history: dict[str, list[float]],
                       default_type: str | None = None) -> int | None:
    """What a run is expected to cost in all, by the submission estimate's rule; None when unknown."""
    from .cost import US_PER_HOUR, billable_units, billed_type

    key = manifest_key(run)
    seconds = run.max_duration_s or (statistics.fmean(history[key]) if history.get(key) else None)
    if seconds is None:
        return None
    rate = meter.prices.rate(billed_type(run.gpus, run.gpu_type or default_type))
    if rate is None:
        return None
    charged_us = int(max(float(seconds), float(meter.minimum_seconds)) * 1_000_000)
    return (rate * billable_units(run.gpus, run.learners) * charged_us + US_PER_HOUR // 2) // US_PER_HOUR


def committed_micro(runs: Iterable[Run], meter, default_type: str | None = None) -> tuple[int, int]:
    """(micro-dollars the active runs will still cost, how many of them cannot be estimated)."""
    runs = list(runs)
    history = completed_durations(runs)
    total = unknown = 0
    for r in runs:
        if r.state.terminal:
            continue
        estimate = run_estimate_micro(r, meter, history, default_type)
        if estimate is None:
            unknown += 1
            continue
        total += max(0, estimate - (r.cost_micro_usd or 0))
    return total, unknown


def status_from_runs(backend, runs: Iterable[Run], now: datetime | None = None, *,
                     engine: Any = None) -> BudgetStatus | None:
    """The budget against these runs (the engine's, or the table's); None when no budget is set."""
    budget = backend.profile.budget
    if budget.daily_usd is None and budget.monthly_usd is None:
        return None
    return spending(backend, runs, now, engine=engine)


def spending(backend, runs: Iterable[Run], now: datetime | None = None, *, engine: Any = None) -> BudgetStatus:
    """Spent (today and this month) and committed by these runs, against the profile's budgets (a
    limit None where none is set): what the TUI's header shows even without a budget."""
    from .cost import Meter

    budget = backend.profile.budget
    runs = list(runs)
    today, month = spend(runs, now or utcnow())
    default_type = None
    if engine is not None and any(r.gpus and not r.gpu_type and not r.state.terminal for r in runs):
        default_type = _engine_type(engine)
    committed, unknown = committed_micro(runs, Meter.from_config(backend.config), default_type)
    return BudgetStatus(budget.daily_usd, budget.monthly_usd, today, month, committed / 1_000_000, unknown)


def _engine_type(engine) -> str | None:
    try:
        types = {d.gpu_type for d in engine.inventory().devices}
    except Exception:
        return None
    return types.pop() if len(types) == 1 else None


def budget_status(backend, *, engine: Any = None, now: datetime | None = None) -> BudgetStatus | None:
    """Spent and committed against the profile's budget; None when the profile sets no budget."""
    budget = backend.profile.budget
    if budget.daily_usd is None and budget.monthly_usd is None:
        return None
    engine = engine or backend.engine
    return status_from_runs(backend, engine.list_runs(), now, engine=engine)


def total(estimates: Sequence[CostEstimate]) -> float | None:
    """USD of several estimates together; None when any of them cannot be said."""
    values = [e.total_usd for e in estimates]
    return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]


def check_budget(backend, manifests: Sequence[tuple[Any, int]], *, engine: Any = None) -> BudgetStatus | None:
    """Refuse (BadInput, exit 2, with the figures) a submission whose estimate exceeds what is left
    of the daily or monthly budget. `manifests`: (manifest, number of runs). Free when no budget."""
    status = budget_status(backend, engine=engine)
    if status is None:
        return None
    estimates = [estimate_manifest(backend, m, n, engine=engine) for m, n in manifests]
    usd = total(estimates)
    if usd is not None:
        status.check_total(usd, "; ".join(e.describe() for e in estimates))
    return status


def estimate_paths(backend, paths: Sequence[Any]) -> tuple[list[tuple[str, CostEstimate]], BudgetStatus | None]:
    """For `submit --dry-run`: each manifest's estimate and the budget it would be checked against."""
    from pathlib import Path

    from .manifest import load_manifest

    engine = backend.engine
    out = []
    for p in paths:
        m = load_manifest(Path(p))
        out.append((m.name, estimate_manifest(backend, m, engine=engine)))
    return out, budget_status(backend, engine=engine)


def describe_budget(status: BudgetStatus | None, estimate_usd: float | None = None) -> str:
    """One line: spent, committed and what is left of each budget, and whether this estimate fits."""
    if status is None:
        return "budget: none set for this profile"
    parts = []
    for label, limit, spent in status.windows():
        left = max(0.0, limit - spent - status.committed)
        parts.append(f"{label} ${spent:,.2f} spent + ${status.committed:,.2f} committed of ${limit:,.2f}"
                     f" (${left:,.2f} left)")
    line = "budget: " + ", ".join(parts)
    if status.unestimated:
        line += f"; {status.unestimated} active run(s) not estimated"
    if estimate_usd is not None:
        try:
            status.check_total(estimate_usd)
        except Exception as exc:  # BadInput: say why it would be refused
            return f"{line} — would be REFUSED: {exc}"
    return line


def budget_lines(status: BudgetStatus | None) -> list[str]:
    """`dlaas-tui budget`: one line per budget with spent, committed and left."""
    if status is None:
        return ["no budget set for this profile (config: budget = { daily_usd = ..., monthly_usd = ... })"]
    out = []
    for label, limit, spent in status.windows():
        left = max(0.0, limit - spent - status.committed)
        out.append(f"{label:8} budget ${limit:,.2f}: spent ${spent:,.2f} + committed ${status.committed:,.2f}"
                   f" = ${spent + status.committed:,.2f}; ${left:,.2f} left")
    if status.unestimated:
        out.append(f"{status.unestimated} queued or running run(s) have no estimate (unpriced, or no "
                   "max_duration and no earlier run) and count as committed $0")
    return out
