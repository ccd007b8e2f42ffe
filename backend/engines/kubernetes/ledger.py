"""Where the Kubernetes engine records what it sees: every transition of every run, and the latest view.

Kubernetes keeps only the latest conditions and deletes finished Jobs, so the history lives here. The
local agent keeps a ledger of its own (SQLite); `Ledger` is the small protocol it implements for this
engine, and `MemoryLedger` is the in-process one (tests, and a CLI without an agent).

Also here, until backend/cost.py lands in main: billed intervals and cost from a run's events
(DESIGN.md: per second over PENDING..end of STORING intervals, a minimum per run, integer micro-dollars).
"""
from __future__ import annotations

import threading
from datetime import datetime
from typing import Protocol

from backend.runs import BILLED_STATES, Run, RunEvent, RunState

DEFAULT_PRICES = {"K80": 0.90, "T4": 0.53, "V100": 3.06, "A100": 4.10, "H100": 6.88, "cpu": 0.05}


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


def billed_intervals(events: list[RunEvent], now: datetime | None = None) -> list[tuple[datetime, datetime]]:
    """Spans spent in billed states; an open span ends at `now` (or is dropped without one)."""
    spans: list[tuple[datetime, datetime]] = []
    start: datetime | None = None
    for ev in events:
        if ev.state is None:
            continue
        if ev.state in BILLED_STATES:
            if start is None:
                start = ev.at
        elif start is not None:
            spans.append((start, ev.at))
            start = None
    if start is not None and now is not None:
        spans.append((start, now))
    return spans


def run_cost_micro(events: list[RunEvent], gpus: int, gpu_type: str | None, prices: dict[str, float],
                   *, minimum_seconds: int = 60, now: datetime | None = None) -> int | None:
    """Integer micro-dollars, or None when the GPU type has no price (shown as "unpriced", never $0)."""
    spans = billed_intervals(events, now)
    if not spans:
        return 0
    table = {**DEFAULT_PRICES, **prices}
    kind = gpu_type if gpus else "cpu"
    price = table.get(kind or "", table.get("default"))
    if price is None:
        return None
    seconds = max(sum((b - a).total_seconds() for a, b in spans), minimum_seconds)
    return int(round(seconds * max(gpus, 1) * price * 1_000_000 / 3600))
