"""The Engine protocol every scheduler implements, and the optional features some of them add.

An engine is the local agent, a Kubernetes cluster, or the in-memory fake (backend/engines/). What
every engine does is `Engine`; what only some do is one small protocol each below, so a caller asks
`isinstance(engine, Reruns)` (a stated feature, with its signature) rather than probing for a name.
Which engine offers which feature is checked by tests/contract/test_engine_features.py.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .runs import ChangeSet, MetricPoint, Run, RunEvent, RunLine, RunState, SubmitRequest

if TYPE_CHECKING:
    from pathlib import Path

    from .cost import CostBreakdown
    from .devices import Inventory
    from .manifest.model import Manifest


@runtime_checkable
class Engine(Protocol):
    """A scheduler: the local agent, a Kubernetes cluster, or the in-memory fake.

    Calls are synchronous but cheap; anything slow happens in the engine's own agent or cluster.
    `changes` and `logs(follow=True)` are the streaming parts, shaped for both a local process and a
    remote watch. Errors are `backend.errors` types naming the run id.
    """

    name: str

    def submit(self, request: SubmitRequest) -> list[Run]: ...

    def list_runs(
        self,
        *,
        states: Sequence[RunState] | None = None,
        experiment: str | None = None,
        limit: int | None = None,
    ) -> list[Run]: ...

    def get_run(self, run_id: str) -> Run: ...

    def changes(self, cursor: int | None = None) -> ChangeSet: ...

    def events(self, run_id: str) -> list[RunEvent]: ...

    def metrics(self, run_id: str) -> list[MetricPoint]: ...

    def manifest_text(self, run_id: str) -> str: ...

    def logs(
        self,
        run_id: str,
        *,
        learner: int = 0,
        tail: int | None = None,
        follow: bool = False,
    ) -> Iterator[str]: ...

    def halt(self, run_id: str) -> Run: ...

    def resume(self, run_id: str) -> Run:
        """Start a HALTED or FAILED run again as a new attempt of the same run id, its checkpoints
        restored; every attempt's billed intervals count. BadInput when the run is not resumable."""
        ...

    def delete(self, run_id: str) -> None: ...

    def inventory(self) -> Inventory: ...

    def close(self) -> None: ...


# -- optional features ---------------------------------------------------------------------------
@runtime_checkable
class FitCheck(Protocol):
    """Refuses, before anything is queued, a manifest the engine could never run (C104)."""

    def check_fits(self, manifest: Manifest) -> None:
        """BadInput (code C104) when the tier or the machine could never hold the request."""
        ...


@runtime_checkable
class CostBreakdowns(Protocol):
    """Bills its runs itself; otherwise the backend meters a run's events (backend/cost.py)."""

    def cost(self, run_id: str) -> CostBreakdown: ...


@runtime_checkable
class QueueHead(Protocol):
    """Reads the head of its queue cheaply (a screenful without building every queued run)."""

    def queue_head(self, limit: int) -> list[Run]:
        """The first `limit` queued runs, in the order they will be admitted."""
        ...


@runtime_checkable
class EncodedListing(Protocol):
    """Lists runs as encoded JSON objects (`list_runs` order): `runs --json` over 10,000 runs."""

    def list_runs_json(
        self,
        *,
        states: Sequence[RunState] | None = None,
        experiment: str | None = None,
        limit: int | None = None,
    ) -> list[str]: ...


@runtime_checkable
class LineListing(Protocol):
    """Lists runs as the runs listing shows them (RunLine, `list_runs` order and filters), without
    building whole Runs: `dlaas-tui runs` over hundreds of runs."""

    def list_lines(
        self,
        *,
        states: Sequence[RunState] | None = None,
        experiment: str | None = None,
        limit: int | None = None,
    ) -> list[RunLine]: ...


@runtime_checkable
class Reruns(Protocol):
    """Submits a run's manifest again as new runs (a sweep: every trial)."""

    def rerun(self, run_id: str) -> list[Run]: ...


@runtime_checkable
class ResultsDownload(Protocol):
    """Copies a run's results itself; otherwise the backend reads them from the object store."""

    def download_results(self, run_id: str, dest: Path) -> int:
        """Copy `<results-bucket>/<run-id>/` into `dest`; returns the number of files."""
        ...


@runtime_checkable
class LogFiles(Protocol):
    """Keeps each run's log as a file on this machine, which the TUI can tail directly."""

    def log_path(self, run_id: str, *, learner: int = 0) -> Path | None: ...


@runtime_checkable
class Holds(Protocol):
    """Keeps queued runs from starting until they are released."""

    def hold(self, run_id: str) -> Run: ...

    def release(self, run_id: str) -> Run: ...


@runtime_checkable
class Priorities(Protocol):
    """Changes a queued run's priority (a name from `[priorities]` or a whole number): its place in
    the queue and every queue position follow at once. Any other state is refused with the run's id."""

    def set_priority(self, run_id: str, priority: str) -> Run: ...


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime: ...


@runtime_checkable
class OwnClock(Protocol):
    """Runs on a clock of its own (the fake's driven clock), which ages and costs shown beside its
    runs must follow rather than the wall clock."""

    clock: Clock


OPTIONAL_FEATURES: tuple[type, ...] = (
    FitCheck, CostBreakdowns, QueueHead, EncodedListing, LineListing, Reruns, ResultsDownload, LogFiles, Holds,
    Priorities,
)
