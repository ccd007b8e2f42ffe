"""Cost before you spend: a submission's estimate and the profile's budget, for every engine.

The estimate is runs × devices × price × duration, the duration being `max_duration`, else the mean
billed time of earlier COMPLETED runs of the same manifest name, with the per-run billing minimum.
A run that asks for no GPU is billed one cpu slot, as the meter does. Spend comes from the engine's
runs (today and this month, UTC), so the check is the same on the local engine and on a cluster.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from .experiments import BudgetStatus, CostEstimate, estimate_cost, spend
from .runs import RunState, utcnow


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
    est = estimate_cost(runs, manifest.gpus * manifest.learners, None if rate is None else rate / 1e6,
                        manifest.max_duration_seconds, history)
    minimum = backend.config.billing.minimum_seconds
    if est.seconds_per_run is not None and est.seconds_per_run < minimum:
        est = replace(est, seconds_per_run=float(minimum))
    return est


def budget_status(backend, *, engine: Any = None, now: datetime | None = None) -> BudgetStatus | None:
    """Spend against the profile's budget; None when the profile sets no budget."""
    budget = backend.profile.budget
    if budget.daily_usd is None and budget.monthly_usd is None:
        return None
    engine = engine or backend.engine
    today, month = spend(engine.list_runs(), now or utcnow())
    return BudgetStatus(budget.daily_usd, budget.monthly_usd, today, month)


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
    """One line: what is left of the budget, and whether this estimate fits."""
    if status is None:
        return "budget: none set for this profile"
    parts = []
    for label, limit, spent in (("today", status.daily_limit, status.spent_today),
                                ("this month", status.monthly_limit, status.spent_month)):
        if limit is not None:
            parts.append(f"${max(0.0, limit - spent):,.2f} of ${limit:,.2f} left {label}")
    line = "budget: " + ", ".join(parts)
    if estimate_usd is not None:
        try:
            status.check_total(estimate_usd)
        except Exception as exc:  # BadInput: say why it would be refused
            return f"{line} — would be REFUSED: {exc}"
    return line
