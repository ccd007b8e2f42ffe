"""Runs as plain typed data: states, events, metrics, devices, and what a submission asks for.

The Engine protocol that every scheduler implements over these is backend/engine_protocol.py.

The same state names are used on every engine (FfDL's lifecycle):

    QUEUED -> PENDING -> DOWNLOADING -> PROCESSING -> STORING -> COMPLETED | FAILED | HALTED

PENDING means the run has received its devices (billing starts); billing ends when STORING ends.
A preempted run goes back to QUEUED and a new billed interval starts when it is admitted again.
"""
from __future__ import annotations

import enum
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RUN_ID_ALPHABET = string.ascii_lowercase + string.digits  # ids are DNS labels: Job names on Kubernetes


def new_run_id(randbelow=None) -> str:
    """`training-` and 8 characters, every engine's run id. One draw of 36**8 rather than eight choices:
    the same uniform ids, 10,000 of them in ~10 ms. (`secrets` is imported here, not with the module:
    every `runs` listing imports this module and never draws an id.)"""
    if randbelow is None:
        import secrets

        randbelow = secrets.randbelow
    n = randbelow(36 ** 8)
    chars = []
    for _ in range(8):
        n, d = divmod(n, 36)
        chars.append(RUN_ID_ALPHABET[d])
    return "training-" + "".join(chars)


class RunState(enum.StrEnum):
    QUEUED = "QUEUED"
    PENDING = "PENDING"
    DOWNLOADING = "DOWNLOADING"
    PROCESSING = "PROCESSING"
    STORING = "STORING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    HALTED = "HALTED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def billed(self) -> bool:
        """True while the run holds devices and is charged for them."""
        return self in BILLED_STATES


TERMINAL_STATES = frozenset({RunState.COMPLETED, RunState.FAILED, RunState.HALTED})
BILLED_STATES = frozenset(
    {RunState.PENDING, RunState.DOWNLOADING, RunState.PROCESSING, RunState.STORING}
)
ACTIVE_STATES = frozenset(set(RunState) - TERMINAL_STATES)
# The billed states as an SQL list, `state IN {BILLED_SQL}` (here, not in backend/cost.py: the listing
# reads it without loading the cost rules).
BILLED_SQL = "(" + ", ".join(f"'{s.value}'" for s in RunState if s in BILLED_STATES) + ")"
# A run that ended this way may be resumed: it goes back to QUEUED as a new attempt of the same run,
# its CHECKPOINT_DIR restored (`Engine.resume`). This is the one way out of a terminal state.
RESUMABLE_STATES = frozenset({RunState.FAILED, RunState.HALTED})
RESUME_NOTE = "resume requested"  # how a resume's QUEUED event begins, on every engine


def resume_message(attempt: int) -> str:
    return f"{RESUME_NOTE}: attempt {attempt} will continue from its checkpoints"


RETRY_NOTE = "retry"  # how an automatic retry's QUEUED event begins (`max_retries`): a new attempt too


def retry_message(attempt: int, retries: int, code: str | None, why: str) -> str:
    return (f"{RETRY_NOTE}: attempt {attempt} of at most {retries + 1}, after attempt {attempt - 1} "
            f"failed ({code}: {why[:300]})")


def attempt_started_message(attempt: int) -> str:
    return f"devices assigned; attempt {attempt} started"


def attempt_of(events: Sequence[RunEvent]) -> int:
    """A run's current attempt: 1, plus one for every resume in its ledger."""
    return 1 + sum(1 for e in events if e.state == RunState.QUEUED
                   and e.message.startswith((RESUME_NOTE, RETRY_NOTE + ":")))

# The transitions an engine may record. Anything may fail or be halted; a billed run may be
# preempted back to QUEUED; a run cut off in STORING may be stored again.
ALLOWED_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset({RunState.PENDING, RunState.FAILED, RunState.HALTED}),
    RunState.PENDING: frozenset({RunState.DOWNLOADING, RunState.QUEUED, RunState.FAILED, RunState.HALTED}),
    RunState.DOWNLOADING: frozenset({RunState.PROCESSING, RunState.QUEUED, RunState.FAILED, RunState.HALTED}),
    RunState.PROCESSING: frozenset({RunState.STORING, RunState.QUEUED, RunState.FAILED, RunState.HALTED}),
    RunState.STORING: frozenset({RunState.COMPLETED, RunState.FAILED, RunState.HALTED}),
    RunState.COMPLETED: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.HALTED: frozenset(),
}


class ErrorCode(enum.StrEnum):
    BAD_MANIFEST = "C101"
    BAD_MODEL_ARCHIVE = "C102"
    BAD_CREDENTIALS = "C103"
    NEVER_FITS = "C104"
    COMMAND_FAILED = "C201"
    OUT_OF_MEMORY = "C202"
    MAX_DURATION = "C203"
    EARLY_STOP = "C204"
    SWEEP_MAX_FAILED = "C205"  # not started: its experiment reached the sweep's max_failed
    DEPENDENCY_FAILED = "C206"  # not started: a run it depends on failed, was halted or is gone
    GPU_MEMORY_CAP = "C207"  # stopped: a learner used more GPU memory than its gpu_memory cap
    LOAD_FAILED = "S301"
    START_FAILED = "S302"  # the cluster could not start it: image pull, container config, pod creation
    STORE_FAILED = "S303"
    RUN_LOST = "S401"


ERROR_DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.BAD_MANIFEST: "the manifest is invalid",
    ErrorCode.BAD_MODEL_ARCHIVE: "the model archive is unsafe or too big",
    ErrorCode.BAD_CREDENTIALS: "the object-store credentials were refused",
    ErrorCode.NEVER_FITS: "the request can never fit this tier or machine",
    ErrorCode.COMMAND_FAILED: "the training command exited non-zero",
    ErrorCode.OUT_OF_MEMORY: "the training command ran out of memory",
    ErrorCode.MAX_DURATION: "the run exceeded its max_duration",
    ErrorCode.EARLY_STOP: "halted by the sweep's early-stopping rule",
    ErrorCode.SWEEP_MAX_FAILED: "not started: the sweep reached its max_failed",
    ErrorCode.DEPENDENCY_FAILED: "not started: a run it depends on failed, was halted or is gone",
    ErrorCode.GPU_MEMORY_CAP: "stopped: it used more GPU memory than its gpu_memory cap",
    ErrorCode.LOAD_FAILED: "loading the model or data failed",
    ErrorCode.START_FAILED: "the cluster could not start the run (image, container config, pod creation)",
    ErrorCode.STORE_FAILED: "storing results failed (a local copy is kept)",
    ErrorCode.RUN_LOST: "the run's process vanished",
}


def utcnow() -> datetime:
    """Now, from the one clock (backend.clock)."""
    from backend import clock

    return clock.now()


def parse_begin(text: str) -> float:
    """`22:00` (the next 22:00, local time), `2026-12-24T08:00[+01:00]`, or `+90m`: epoch seconds."""
    from datetime import datetime, timedelta

    from backend import clock

    from .errors import BadInput

    text = text.strip()
    now = clock.now().astimezone()
    if text.startswith("+"):
        from .units import parse_duration

        try:
            return now.timestamp() + parse_duration(text[1:])
        except ValueError as exc:
            raise BadInput(f"--begin {text}: {exc}") from None
    try:
        hh, mm = text.split(":")
        at = now.replace(hour=int(hh), minute=int(mm), second=0, microsecond=0)
        return (at if at > now else at + timedelta(days=1)).timestamp()
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--begin {text!r}: expected HH:MM, an ISO date-time or +DURATION") from None
    return (at if at.tzinfo else at.replace(tzinfo=now.tzinfo)).timestamp()


def resolve_priority(priorities: dict[str, int], text: str) -> tuple[str, int]:
    """(name, value) of a priority given by name (from [priorities]) or as a whole number; a
    number that a name stands for takes that name."""
    from .errors import BadInput

    text = str(text).strip()
    if text in priorities:
        return text, priorities[text]
    try:
        value = int(text)
    except ValueError:
        raise BadInput(f"priority {text!r} is neither a number nor one of "
                       f"{', '.join(f'{k} ({v})' for k, v in priorities.items())}") from None
    named = [k for k, v in priorities.items() if v == value]
    return (named[0] if named else str(value)), value


def iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class RunEvent:
    """One transition (or an informational note) in a run's ledger."""

    run_id: str
    at: datetime
    state: RunState | None  # None for a note that changes no state (progress, reasons to wait)
    message: str = ""
    error_code: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "at": iso(self.at),
            "state": self.state.value if self.state else None,
            "message": self.message,
            "error_code": self.error_code,
        }


@dataclass(frozen=True)
class MetricPoint:
    name: str
    value: float
    step: float | None = None
    at: datetime | None = None
    learner: int = 0


@dataclass
class Run:
    """A run as every engine reports it. `to_json` is the CLI's and API's contract (DESIGN.md)."""

    id: str
    name: str
    state: RunState
    submitted_at: datetime
    experiment: str | None = None
    queue_position: int | None = None
    queue_position_approximate: bool = False
    eta: datetime | None = None
    gpus: int = 0
    gpu_type: str | None = None
    assigned: list[str] = field(default_factory=list)
    admitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cost_micro_usd: int | None = 0  # None = unpriced; integer micro-dollars, never floats
    error_code: str | None = None
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    primary_metric: str | None = None
    metric_goal: str = "minimize"  # the sweep's goal for primary_metric: minimize | maximize
    # Beyond the JSON contract: what the UI and engines also need.
    learners: int = 1
    priority: str = "normal"
    params: dict[str, Any] = field(default_factory=dict)
    results_bucket: str | None = None
    depends_on: list[str] = field(default_factory=list)  # runs that must complete before this one
    node: str | None = None
    updated_at: datetime | None = None
    manifest_name: str | None = None  # the manifest's own name (a sweep's trials are named NAME-N)
    max_duration_s: float | None = None  # the manifest's max_duration, when it set one
    eta_bound: bool = False  # True: `eta` is an upper bound (from max_duration), not a learned estimate

    @property
    def cost_usd(self) -> float | None:
        return None if self.cost_micro_usd is None else self.cost_micro_usd / 1_000_000

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "experiment": self.experiment,
            "state": self.state.value,
            "queue_position": self.queue_position,
            "queue_position_approximate": self.queue_position_approximate,
            "eta": iso(self.eta),
            "eta_upper_bound": self.eta_bound,  # eta is max_duration's bound, not a learned estimate
            "gpus": self.gpus,
            "gpu_type": self.gpu_type,
            "assigned": list(self.assigned),
            "submitted_at": iso(self.submitted_at),
            "admitted_at": iso(self.admitted_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "cost_usd": self.cost_usd,
            "error_code": self.error_code,
            "message": self.message,
            "metrics": dict(self.metrics),
            "primary_metric": self.primary_metric,
            "metric_goal": self.metric_goal,
            "learners": self.learners,
            "priority": self.priority,
            "params": dict(self.params),
            "depends_on": list(self.depends_on),
        }


@dataclass(frozen=True)
class Device:
    """One schedulable device: a GPU (or MIG slice) from NVML, or a `cpu:N` stand-in slot."""

    index: int
    uuid: str
    name: str
    gpu_type: str | None  # canonical type (H100, A100, ...), "cpu" for a stand-in slot
    memory_total: int | None = None  # bytes; None = not supported
    memory_used: int | None = None
    utilization: int | None = None  # percent; None = not supported
    temperature: int | None = None
    power_watts: float | None = None
    processes: tuple[int, ...] = ()  # pids using the device
    held_by: str | None = None  # run id of the run holding it
    busy_foreign: bool = False  # used by a process this agent did not start
    is_mig: bool = False
    parent_uuid: str | None = None

    @property
    def is_cpu_slot(self) -> bool:
        return self.gpu_type == "cpu"

    @property
    def label(self) -> str:
        return self.uuid if self.is_cpu_slot else f"{self.uuid} {self.name}"


@dataclass(frozen=True)
class Inventory:
    devices: tuple[Device, ...]
    nvml_available: bool
    message: str = ""  # said plainly in the TUI and JSON when NVML is absent or found no GPU
    node: str | None = None
    tier_gpus: int = 0  # what the profile's tier allows at once; 0 = everything

    @property
    def gpu_count(self) -> int:
        return len(self.devices)

    @property
    def in_use(self) -> int:
        return sum(1 for d in self.devices if d.held_by)


@dataclass(frozen=True)
class ChangeSet:
    """What changed since a cursor: how the UI refreshes 10,000 runs without re-reading them all."""

    runs: list[Run]
    deleted: list[str]
    cursor: int
    full: bool = False  # True when the cursor was too old: `runs` is everything


@dataclass
class SubmitRequest:
    manifests: Sequence[Path]
    model: Path | None = None  # a folder or a zip; default: the manifest's `model/` or its folder
    name: str | None = None
    experiment: str | None = None
    dry_run: bool = False
    after: Sequence[str] = ()  # run ids (or "@", the last submission) that must complete first
    hold: bool = False  # queued but not started until released
    begin_at: float | None = None  # epoch seconds: not started before

