"""Clocks for the fake engine: one a test drives by hand, one that follows real time (demos)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Protocol, runtime_checkable

EPOCH = datetime(2026, 1, 5, 9, 0, 0, tzinfo=timezone.utc)


@runtime_checkable
class DrivenClock(Protocol):
    """A clock that moves when told, telling its listeners (FakeClock); a WallClock is not one."""

    def now(self) -> datetime: ...

    def advance(self, seconds: float) -> datetime: ...

    def subscribe(self, listener: Callable[[], None]) -> None: ...

    def unsubscribe(self, listener: Callable[[], None]) -> None: ...


class FakeClock:
    """Time that moves only when `advance` is called; listeners (engines) catch up on each move."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or EPOCH
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            now = self._now
        for listener in list(self._listeners):
            listener()
        return now

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)


class WallClock:
    """Real UTC time: the fake profile in the TUI moves on its own."""

    def now(self) -> datetime:
        from backend import clock

        return clock.now()
