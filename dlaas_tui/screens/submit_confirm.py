"""What a submission will run, shown before anything is submitted.

`plan_submission` asks the backend (in the editor's worker thread): the runs from the sweep
expansion, GPUs per run (`gpus × learners`), the cost estimate (runs × devices × price × duration,
the duration being `max_duration`, else the mean of earlier runs) and what is left of the budget.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..widgets.safe_text import visible
from .confirm import ConfirmScreen


@dataclass(frozen=True)
class SubmitPlan:
    name: str
    runs: int
    gpus_each: int
    gpu_type: str | None
    learners: int
    max_duration_s: int | None
    estimate: Any = None  # backend CostEstimate, None when it could not be made
    budget: str | None = None  # one line about the budget, None when the profile has none
    sweep_method: str | None = None

    @property
    def total_gpus(self) -> int:
        return self.runs * self.gpus_each

    @property
    def estimated_cost(self) -> float | None:
        return None if self.estimate is None else self.estimate.total_usd


def plan_submission(backend: Any, manifest: Any) -> SubmitPlan:
    """Runs in a worker thread: the estimate may read the engine's inventory and history."""
    import backend.facade as facade

    runs = len(facade.expand_sweep(manifest)) if manifest.sweep is not None else 1
    estimate = facade.estimate_manifest(backend, manifest)
    status = facade.budget_status(backend)
    budget = None if status is None else facade.describe_budget(status, estimate.total_usd)
    return SubmitPlan(
        name=manifest.name,
        runs=runs,
        gpus_each=manifest.gpus * manifest.learners,
        gpu_type=manifest.gpu_type,
        learners=manifest.learners,
        max_duration_s=manifest.max_duration_seconds,
        estimate=estimate,
        budget=budget,
        sweep_method=manifest.sweep.method if manifest.sweep is not None else None,
    )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    if hours:
        return f"{hours}h{rest // 60:02d}m"
    return f"{rest // 60}m" + (f"{rest % 60:02d}s" if rest % 60 else "")


def plan_table(plan: SubmitPlan) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row("name", Text(visible(plan.name)))
    runs = f"{plan.runs} ({plan.sweep_method} sweep)" if plan.sweep_method else str(plan.runs)
    table.add_row("runs", Text(runs))
    slots = max(1, plan.learners)  # a run that asks for no GPU holds (and pays for) a slot per learner
    gpu = (f"{plan.gpus_each} × {visible(plan.gpu_type or 'any GPU')}" if plan.gpus_each
           else f"none ({slots} CPU slot{'s' * (slots != 1)})")
    if plan.learners > 1:
        gpu += f" ({plan.learners} learners)"
    table.add_row("GPUs each", Text(gpu))
    if plan.runs > 1 and plan.gpus_each:
        table.add_row("GPUs in all", Text(str(plan.total_gpus)))
    if plan.max_duration_s is not None:
        table.add_row("max duration", Text(_duration(plan.max_duration_s) + " each"))
    est = plan.estimate
    if est is None:
        table.add_row("estimated cost", Text("could not be estimated", style="yellow"))
    elif est.total_usd is None:
        why = "unpriced GPU type" if est.rate_micro_per_hour is None else "no max_duration and no earlier runs"
        table.add_row("estimated cost", Text(f"unknown: {why}", style="yellow"))
    else:
        basis = "at most" if est.basis == "max_duration" else "about"
        rate = est.rate_micro_per_hour / 1_000_000
        hours = (est.seconds_per_run or 0) / 3600
        detail = f" ({est.runs} × {est.devices_per_run} × ${rate:.2f}/h × {hours:.2f} h)"
        table.add_row("estimated cost", Text(f"{basis} ${est.total_usd:,.2f}", style="bold") + Text(detail, style="dim"))
    if plan.budget:
        refused = "REFUSED" in plan.budget
        table.add_row("budget", Text(visible(plan.budget.removeprefix("budget: ")), style="bold red" if refused else ""))
    return table


class SubmitConfirm(ConfirmScreen):
    """The plan in the shared confirmation modal; `y`/`enter` submits, `n`/`esc` goes back."""

    def __init__(self, plan: SubmitPlan, where: str = "") -> None:
        details = Group(plan_table(plan), Text(""), Text(visible(where), style="dim")) if where else plan_table(plan)
        super().__init__("Submit this manifest?", details, confirm_label="Submit", default_confirm=True)
        self.plan = plan
