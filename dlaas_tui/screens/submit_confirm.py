"""What a submission will run, shown before anything is submitted.

`plan_submission` is pure (no I/O beyond the price lookup): runs from the sweep expansion, GPUs per
run (`gpus × learners`), and, when `max_duration` is set, the worst-case cost
runs × GPUs × price × hours.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from ..cli.output import safe_text


@dataclass(frozen=True)
class SubmitPlan:
    name: str
    runs: int | None  # None: the sweep could not be expanded here
    gpus_each: int
    gpu_type: str | None
    learners: int
    max_duration_s: int | None
    price_per_gpu_hour: float | None
    sweep_method: str | None = None
    estimate_text: str | None = None  # the backend's estimate (max_duration, else earlier runs' mean)
    budget_text: str | None = None  # what is left of the budget, and whether this would be refused

    @property
    def total_gpus(self) -> int | None:
        return None if self.runs is None else self.runs * self.gpus_each

    @property
    def estimated_cost(self) -> float | None:
        """Worst case: every run uses all of max_duration. None when it cannot be said."""
        if self.max_duration_s is None or self.runs is None:
            return None
        if self.gpus_each == 0:
            return 0.0
        if self.price_per_gpu_hour is None:
            return None
        return self.runs * self.gpus_each * self.price_per_gpu_hour * self.max_duration_s / 3600


def _price(backend: Any, gpu_type: str | None) -> float | None:
    from backend import facade

    try:
        return facade.price_per_gpu_hour(backend.config, gpu_type)
    except (ImportError, AttributeError):
        # Without the price table, only prices the config states are known.
        prices = backend.config.prices
        return prices.get(gpu_type or "", prices.get("default"))


def plan_submission(backend: Any, manifest: Any) -> SubmitPlan:
    from backend import facade

    sweep = getattr(manifest, "sweep", None)
    runs: int | None = 1
    if sweep is not None:
        try:
            runs = len(facade.expand_sweep(manifest))
        except (ImportError, AttributeError):
            runs = sweep.max_runs
    gpu_type = manifest.gpu_type
    return SubmitPlan(
        name=manifest.name,
        runs=runs,
        gpus_each=manifest.gpus * manifest.learners,
        gpu_type=gpu_type,
        learners=manifest.learners,
        max_duration_s=manifest.max_duration_seconds,
        price_per_gpu_hour=_price(backend, gpu_type) if manifest.gpus else None,
        sweep_method=sweep.method if sweep is not None else None,
        **_estimate(backend, manifest),
    )


def _estimate(backend: Any, manifest: Any) -> dict[str, str | None]:
    """The same estimate and budget check `submit` applies (history when there is no max_duration)."""
    from backend import facade

    try:
        est = facade.estimate_manifest(backend, manifest)
        status = facade.budget_status(backend)
        return {"estimate_text": est.describe(),
                "budget_text": facade.describe_budget(status, est.total_usd) if status else None}
    except Exception:  # an engine that cannot answer now: the plan still shows max_duration's figure
        return {}


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def plan_table(plan: SubmitPlan) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row("name", Text(safe_text(plan.name)))
    if plan.sweep_method:
        runs = "?" if plan.runs is None else str(plan.runs)
        table.add_row("runs", Text(f"{runs} ({plan.sweep_method} sweep)"))
    else:
        table.add_row("runs", Text("1"))
    gpu = f"{plan.gpus_each} × {plan.gpu_type or 'any GPU'}" if plan.gpus_each else "none (CPU)"
    if plan.learners > 1:
        gpu += f" ({plan.learners} learners)"
    table.add_row("GPUs each", Text(gpu))
    if plan.total_gpus is not None and plan.runs and plan.runs > 1 and plan.gpus_each:
        table.add_row("GPUs in all", Text(str(plan.total_gpus)))
    if plan.max_duration_s is None:
        table.add_row("max duration", Text("not set: no cost estimate", style="dim"))
    else:
        table.add_row("max duration", Text(_duration(plan.max_duration_s) + " each"))
        cost = plan.estimated_cost
        if cost is None:
            table.add_row("estimated cost", Text("unpriced GPU type", style="yellow"))
        else:
            rate = (
                f" ({plan.runs} × {plan.gpus_each} GPU × ${plan.price_per_gpu_hour:.2f}/h × "
                f"{plan.max_duration_s / 3600:.2f} h)"
                if plan.gpus_each and plan.price_per_gpu_hour is not None
                else ""
            )
            table.add_row("estimated cost", Text(f"at most ${cost:,.2f}", style="bold") + Text(rate, style="dim"))
    if plan.estimate_text:
        table.add_row("estimate", Text(safe_text(plan.estimate_text)))
    if plan.budget_text:
        refused = "REFUSED" in plan.budget_text
        table.add_row("budget", Text(safe_text(plan.budget_text), style="bold red" if refused else ""))
    return table


class SubmitConfirm(ModalScreen[bool]):
    """Shows the plan; `enter`/`y` submits, `esc`/`n` goes back to editing."""

    DEFAULT_CSS = """
    SubmitConfirm { align: center middle; }
    #submit-box { width: 76; max-width: 100%; height: auto; max-height: 100%;
                  padding: 1 2; background: $panel; border: round $accent; }
    #submit-title { text-style: bold; margin-bottom: 1; }
    #submit-where { color: $text-muted; margin-top: 1; }
    #submit-buttons { height: auto; margin-top: 1; align-horizontal: right; }
    #submit-buttons Button { margin-left: 2; }
    """
    BINDINGS = [
        Binding("escape,n", "answer(False)", "Cancel", id="submit.cancel"),
        Binding("y", "answer(True)", "Submit", id="submit.confirm"),
    ]

    def __init__(self, plan: SubmitPlan, where: str = "") -> None:
        super().__init__()
        self.plan = plan
        self.where = where

    def compose(self) -> ComposeResult:
        with Vertical(id="submit-box"):
            yield Label("Submit this manifest?", id="submit-title")
            yield Static(plan_table(self.plan), id="submit-plan")
            if self.where:
                yield Static(self.where, id="submit-where", markup=False)
            with Horizontal(id="submit-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Submit", id="submit", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#submit", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "submit")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
