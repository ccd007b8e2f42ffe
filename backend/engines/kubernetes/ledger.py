"""Where the Kubernetes engine records what it sees: every transition of every run, and the latest view.

Kubernetes keeps only the latest conditions and deletes finished Jobs, so the history lives here. The
local agent keeps a ledger of its own (SQLite); `Ledger` is the small protocol it implements for this
engine, and `MemoryLedger` is the in-process one (tests, and a CLI without an agent). What only the
agent's ledger does (hold runs back for the agent to release, keep their manifests, be closed) is
`AgentLedger`: the engine asks `isinstance(ledger, AgentLedger)`, never for a single name.

Cost comes from backend.cost over the ledger's events.
"""
from __future__ import annotations

import threading
from typing import Any, Protocol, runtime_checkable

from backend.runs import RESUMABLE_STATES, Run, RunEvent, RunState

SYNCED = "agent-synced"  # a ledger flag (run id "") once an agent has listed the profile's cluster


class Ledger(Protocol):
    def record(self, event: RunEvent) -> None: ...

    def events(self, run_id: str) -> list[RunEvent]: ...

    def put_run(self, run: Run) -> None: ...

    def get_run(self, run_id: str) -> Run | None: ...

    def runs(self) -> list[Run]: ...

    def forget(self, run_id: str) -> None: ...

    def mark(self, run_id: str, flag: str) -> bool:
        """Set a one-time flag (e.g. "run.json written"); False if it was already set."""
        ...

    def reopen(self, run: Run, event: RunEvent, **held: object) -> bool:
        """Put an ended (HALTED or FAILED) run back to QUEUED with `event` (a resume), clearing its
        one-time flags; False when it is not resumable any more."""
        ...


@runtime_checkable
class AgentLedger(Ledger, Protocol):
    """The ledger the local agent keeps for a Kubernetes profile (SQLite, sqlite_ledger.py): it
    outlives the process, so runs are held in it until the agent creates their Jobs."""

    def hold(self, run: Run, *, manifest: dict[str, Any], group: str, parallel: int | None,
             max_failed: int | None = None, manifest_text: str = "") -> None:
        """Record an accepted run (QUEUED) that has no Job yet; the agent releases it."""
        ...

    def held_ids(self) -> set[str]:
        """Runs held and not released yet (no Job to look for)."""
        ...

    def releasable(self) -> list[dict[str, Any]]:
        """Held runs that may go to the cluster now, oldest first."""
        ...

    def released(self, run_id: str) -> None: ...

    def reprioritize_held(self, run_id: str, priority: str) -> bool:
        """A held run's manifest takes `priority` (its Job, once created, carries it); False when
        the run is not held any more."""
        ...

    def manifest_text(self, run_id: str) -> str | None:
        """The manifest as submitted (held runs), or None."""
        ...

    def has_mark(self, run_id: str, flag: str) -> bool: ...

    def close(self) -> None: ...


class MemoryLedger:
    """Runs are stored and returned as copies, as any persistent ledger would, so a caller holding
    a Run never sees it change under it. `cursor` counts changes; `changes_since` serves
    Engine.changes."""

    def __init__(self) -> None:
        self._events: dict[str, list[RunEvent]] = {}
        self._runs: dict[str, Run] = {}
        self._changed: dict[str, int] = {}
        self._deleted: dict[str, int] = {}
        self._flags: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.cursor = 0

    def record(self, event: RunEvent) -> None:
        with self._lock:
            self._events.setdefault(event.run_id, []).append(event)

    def events(self, run_id: str) -> list[RunEvent]:
        with self._lock:
            return list(self._events.get(run_id, []))

    def put_run(self, run: Run) -> None:
        with self._lock:
            self._runs[run.id] = _copy(run)
            self.cursor += 1
            self._changed[run.id] = self.cursor
            self._deleted.pop(run.id, None)

    def reopen(self, run: Run, event: RunEvent, **_held: object) -> bool:
        """A resume (see SqliteLedger.reopen); the caller creates the Job itself."""
        with self._lock:
            current = self._runs.get(run.id)
            if current is None or current.state not in RESUMABLE_STATES:
                return False
            self._events.setdefault(event.run_id, []).append(event)
            self._flags = {f for f in self._flags if f[0] != run.id}
        self.put_run(run)
        return True

    def get_run(self, run_id: str) -> Run | None:
        with self._lock:
            run = self._runs.get(run_id)
            return _copy(run) if run else None

    def runs(self) -> list[Run]:
        with self._lock:
            return [_copy(r) for r in self._runs.values()]

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)
            self._events.pop(run_id, None)
            self._changed.pop(run_id, None)
            self.cursor += 1
            self._deleted[run_id] = self.cursor

    def changes_since(self, cursor: int) -> tuple[list[Run], list[str]]:
        with self._lock:
            runs = [_copy(self._runs[r]) for r, c in self._changed.items() if c > cursor]
            deleted = [r for r, c in self._deleted.items() if c > cursor]
            return runs, deleted

    def mark(self, run_id: str, flag: str) -> bool:
        with self._lock:
            if (run_id, flag) in self._flags:
                return False
            self._flags.add((run_id, flag))
            return True


def _copy(run: Run) -> Run:
    return run.replace(assigned=list(run.assigned), metrics=dict(run.metrics), params=dict(run.params))


def last_state(events: list[RunEvent]) -> RunState | None:
    for ev in reversed(events):
        if ev.state is not None:
            return ev.state
    return None
