"""Runs as plain typed data: states, events, metrics, devices, and what a submission asks for.

The Engine protocol that every scheduler implements over these is backend/engine_protocol.py.

The same state names are used on every engine (FfDL's lifecycle):

    QUEUED -> PENDING -> DOWNLOADING -> PROCESSING -> STORING -> COMPLETED | FAILED | HALTED

PENDING means the run has received its devices (billing starts); billing ends when STORING ends.
A preempted run goes back to QUEUED and a new billed interval starts when it is admitted again.
"""
from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime, timezone

from .records import FrozenRecord, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~2.5 ms) on the CLI's path
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

RUN_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"  # ids are DNS labels: Job names on Kubernetes


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


STATES: dict[str, RunState] = {s.value: s for s in RunState}  # by value, without Enum's call (per listed row)
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


class RunEvent(FrozenRecord):
    """One transition (or an informational note) in a run's ledger."""

    run_id: str
    at: datetime
    state: RunState | None  # None for a note that changes no state (progress, reasons to wait)
    message: str
    error_code: str | None
    _fields = ("run_id", "at", "state", "message", "error_code")

    def __init__(self, run_id: str, at: datetime, state: RunState | None, message: str = "",
                 error_code: str | None = None) -> None:
        self._set(run_id=run_id, at=at, state=state, message=message, error_code=error_code)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "at": iso(self.at),
            "state": self.state.value if self.state else None,
            "message": self.message,
            "error_code": self.error_code,
        }


class MetricPoint(FrozenRecord):
    name: str
    value: float
    step: float | None
    at: datetime | None
    learner: int
    _fields = ("name", "value", "step", "at", "learner")

    def __init__(self, name: str, value: float, step: float | None = None, at: datetime | None = None,
                 learner: int = 0) -> None:
        self._set(name=name, value=value, step=step, at=at, learner=learner)


class Run(Record):
    """A run as every engine reports it. `to_json` is the CLI's and API's contract (DESIGN.md)."""

    id: str
    name: str
    state: RunState
    submitted_at: datetime
    experiment: str | None
    queue_position: int | None
    queue_position_approximate: bool
    eta: datetime | None
    gpus: int
    gpu_type: str | None
    assigned: list[str]
    admitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    cost_micro_usd: int | None  # None = unpriced; integer micro-dollars, never floats
    error_code: str | None
    message: str
    metrics: dict[str, float]
    primary_metric: str | None
    metric_goal: str  # the sweep's goal for primary_metric: minimize | maximize
    # Beyond the JSON contract: what the UI and engines also need.
    learners: int
    priority: str
    params: dict[str, Any]
    results_bucket: str | None
    depends_on: list[str]  # runs that must complete before this one
    node: str | None
    updated_at: datetime | None
    manifest_name: str | None  # the manifest's own name (a sweep's trials are named NAME-N)
    max_duration_s: float | None  # the manifest's max_duration, when it set one
    eta_bound: bool  # True: `eta` is an upper bound (from max_duration), not a learned estimate
    _fields = (
        "id", "name", "state", "submitted_at", "experiment", "queue_position", "queue_position_approximate",
        "eta", "gpus", "gpu_type", "assigned", "admitted_at", "started_at", "finished_at", "cost_micro_usd",
        "error_code", "message", "metrics", "primary_metric", "metric_goal", "learners", "priority", "params",
        "results_bucket", "depends_on", "node", "updated_at", "manifest_name", "max_duration_s", "eta_bound",
    )

    def __init__(
        self,
        id: str,
        name: str,
        state: RunState,
        submitted_at: datetime,
        experiment: str | None = None,
        queue_position: int | None = None,
        queue_position_approximate: bool = False,
        eta: datetime | None = None,
        gpus: int = 0,
        gpu_type: str | None = None,
        assigned: list[str] | None = None,
        admitted_at: datetime | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        cost_micro_usd: int | None = 0,
        error_code: str | None = None,
        message: str = "",
        metrics: dict[str, float] | None = None,
        primary_metric: str | None = None,
        metric_goal: str = "minimize",
        learners: int = 1,
        priority: str = "normal",
        params: dict[str, Any] | None = None,
        results_bucket: str | None = None,
        depends_on: list[str] | None = None,
        node: str | None = None,
        updated_at: datetime | None = None,
        manifest_name: str | None = None,
        max_duration_s: float | None = None,
        eta_bound: bool = False,
    ) -> None:
        self.id = id
        self.name = name
        self.state = state
        self.submitted_at = submitted_at
        self.experiment = experiment
        self.queue_position = queue_position
        self.queue_position_approximate = queue_position_approximate
        self.eta = eta
        self.gpus = gpus
        self.gpu_type = gpu_type
        self.assigned = [] if assigned is None else assigned
        self.admitted_at = admitted_at
        self.started_at = started_at
        self.finished_at = finished_at
        self.cost_micro_usd = cost_micro_usd
        self.error_code = error_code
        self.message = message
        self.metrics = {} if metrics is None else metrics
        self.primary_metric = primary_metric
        self.metric_goal = metric_goal
        self.learners = learners
        self.priority = priority
        self.params = {} if params is None else params
        self.results_bucket = results_bucket
        self.depends_on = [] if depends_on is None else depends_on
        self.node = node
        self.updated_at = updated_at
        self.manifest_name = manifest_name
        self.max_duration_s = max_duration_s
        self.eta_bound = eta_bound

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


class RunLine(Record):
    """A run as one line of the runs listing shows it (`dlaas-tui runs`): the fields of a Run that the
    line reads, named as Run names them, so what formats a Run's cells formats a RunLine's. An engine
    that can list these without building whole Runs (`list_lines`) saves `runs` most of its per-run
    work; `of` makes one from a Run (what any other engine lists)."""

    __slots__ = ("id", "name", "state", "submitted_at", "queue_position", "gpus", "admitted_at", "finished_at",
                 "cost_micro_usd", "message", "metrics", "primary_metric", "eta", "eta_bound")
    _fields = __slots__

    def __init__(self, id: str, name: str, state: RunState, submitted_at: datetime, queue_position: int | None,
                 gpus: int, admitted_at: datetime | None, finished_at: datetime | None,
                 cost_micro_usd: int | None, message: str,
                 metrics: dict[str, float], primary_metric: str | None, eta: datetime | None = None,
                 eta_bound: bool = False) -> None:
        self.id = id
        self.name = name
        self.state = state
        self.submitted_at = submitted_at
        self.queue_position = queue_position
        self.gpus = gpus
        self.admitted_at = admitted_at
        self.finished_at = finished_at
        self.cost_micro_usd = cost_micro_usd
        self.message = message
        self.metrics = metrics
        self.primary_metric = primary_metric
        self.eta = eta
        self.eta_bound = eta_bound

    cost_usd = Run.cost_usd

    @classmethod
    def of(cls, run: Run) -> RunLine:
        return cls(*(getattr(run, f) for f in cls._fields))


class ChangeSet(FrozenRecord):
    """What changed since a cursor: how the UI refreshes 10,000 runs without re-reading them all."""

    runs: list[Run]
    deleted: list[str]
    cursor: int
    full: bool  # True when the cursor was too old: `runs` is everything
    _fields = ("runs", "deleted", "cursor", "full")

    def __init__(self, runs: list[Run], deleted: list[str], cursor: int, full: bool = False) -> None:
        self._set(runs=runs, deleted=deleted, cursor=cursor, full=full)

    __hash__ = None  # type: ignore[assignment]  (it holds lists, as the dataclass did)


class SubmitRequest(Record):
    manifests: Sequence[Path]
    model: Path | None  # a folder or a zip; default: the manifest's `model/` or its folder
    name: str | None
    experiment: str | None
    dry_run: bool
    after: Sequence[str]  # run ids (or "@", the last submission) that must complete first
    hold: bool  # queued but not started until released
    begin_at: float | None  # epoch seconds: not started before
    # The CLI's random id for this submit, recorded in each run's spec (never shown): after a lost
    # answer from the agent's submission worker the CLI finds by it what the worker recorded.
    request_id: str | None
    _fields = ("manifests", "model", "name", "experiment", "dry_run", "after", "hold", "begin_at", "request_id")

    def __init__(self, manifests: Sequence[Path], model: Path | None = None, name: str | None = None,
                 experiment: str | None = None, dry_run: bool = False, after: Sequence[str] = (),
                 hold: bool = False, begin_at: float | None = None, request_id: str | None = None) -> None:
        self.manifests = manifests
        self.model = model
        self.name = name
        self.experiment = experiment
        self.dry_run = dry_run
        self.after = after
        self.hold = hold
        self.begin_at = begin_at
        self.request_id = request_id


def __getattr__(name: str) -> Any:
    """Device and Inventory live in backend/devices.py (still dataclasses): loaded when first asked for."""
    if name in ("Device", "Inventory"):
        from . import devices

        return getattr(devices, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
