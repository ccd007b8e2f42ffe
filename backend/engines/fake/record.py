"""What the fake engine keeps for one run (its record), the failures it can be told to stage, and the
synthetic numbers its runs report: the data the engine's parts (lifecycle, reading, controls,
seeding) share, below all of them."""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

from ...runs import ERROR_DESCRIPTIONS, ErrorCode, MetricPoint, Run, RunEvent, RunState


@dataclass
class PlantedFailure:
    """A failure the fake will stage: in `state`, `after` seconds in (None: when the state ends)."""

    code: str = ErrorCode.COMMAND_FAILED.value
    state: RunState = RunState.PROCESSING
    after: float | None = None
    message: str = ""


@dataclass
class RunRecord:
    """One run as the fake engine holds it: the run itself and everything that drives it on."""

    run: Run
    manifest_text: str
    durations: dict[RunState, float]
    steps: int
    command: str
    need: int
    key: tuple
    failure: PlantedFailure | None = None
    events: list[RunEvent] = field(default_factory=list)
    metric_points: list[MetricPoint] | None = field(default_factory=list)  # None: seeded, made on read
    logs: list[list[str]] | None = None  # per learner; None: generated on first read (seeded runs)
    devices: list[int] = field(default_factory=list)
    gen: int = 0
    seq: int = 0
    step: int = 0
    sweep_metric: str | None = None
    cost_micro: int | None = 0
    cost_key: int = -1  # len(events) when cost_micro was computed


def synthetic_metrics(run_id: str, step: int, steps: int) -> tuple[float, float]:
    """A falling loss and rising accuracy, the same for the same run and step."""
    h = zlib.crc32(run_id.encode())
    base = 1.5 + (h % 1000) / 1000
    noise = ((zlib.crc32(f"{run_id}:{step}".encode()) % 1000) / 1000 - 0.5) * 0.02
    frac = step / max(1, steps)
    loss = base * math.exp(-2.5 * frac) + 0.05 + noise
    accuracy = min(0.999, max(0.0, 1.0 - loss / (base + 0.1)))
    return round(loss, 6), round(accuracy, 6)


def failure_message(code: ErrorCode) -> str:
    """What a failure with this code says when nobody gave it a message."""
    return ERROR_DESCRIPTIONS.get(code, code.value)
