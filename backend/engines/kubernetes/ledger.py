"""Where the Kubernetes engine records what it sees: every transition of every run, and the latest view.

Kubernetes keeps only the latest conditions and deletes finished Jobs, so the history lives here. The
local agent keeps a ledger of its own (SQLite); `Ledger` is the small protocol it implements for this
engine, and `MemoryLedger` is the in-process one (tests, and a CLI without an agent).

Cost comes from backend.cost over the ledger's events.
"""
from __future__ import annotations

import threading
from typing import Protocol

from backend.runs import Run, RunEvent, RunState


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


class MemoryLedger:
    def __init__(self) -> None:
        self._events: dict[str, list[RunEvent]] = {}
        self._runs: dict[str, Run] = {}
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
            self._runs[run.id] = run
            self.cursor += 1

    def get_run(self, run_id: str) -> Run | None:
        with self._lock:
            return self._runs.get(run_id)

    def runs(self) -> list[Run]:
        with self._lock:
            return list(self._runs.values())

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)
            self._events.pop(run_id, None)
            self.cursor += 1

    def mark(self, run_id: str, flag: str) -> bool:
        with self._lock:
            if (run_id, flag) in self._flags:
                return False
            self._flags.add((run_id, flag))
            return True


def last_state(events: list[RunEvent]) -> RunState | None:
    for ev in reversed(events):
        if ev.state is not None:
            return ev.state
    return None
