"""The one wall clock of the backend and the app.

Every timestamp that reaches a ledger, a bill, a budget or the screen is read here, so a test (or the
CI guard that runs the time-sensitive suites far in the future and the past) can move "now" for the
whole program at once:

- `use(clock)` swaps the clock of this process (a test's `FrozenClock`, say) and gives the old one back;
- `DLAAS_CLOCK_SHIFT` (seconds, or a number with `s`/`m`/`h`/`d`: `400d`, `-400d`) shifts the wall
  clock of this process and of every process it starts (the agent, the executors), so they agree.

Waiting (deadlines, poll intervals) uses `time.monotonic()` directly: it measures durations, not
dates, and a shift must not stretch a timeout.
"""
from __future__ import annotations

import os
import time as _time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

SHIFT_ENV = "DLAAS_CLOCK_SHIFT"
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~2.5 ms) on the CLI's path
if TYPE_CHECKING:
    from typing import Protocol

    class Clock(Protocol):
        def time(self) -> float:
            """Seconds since the epoch."""
            ...


def parse_shift(text: str | None) -> float:
    """`400d` → 34,560,000 s; a bare number is seconds; empty is 0. A bad value is refused loudly:
    a guard that silently ran unshifted would prove nothing."""
    text = (text or "").strip()
    if not text:
        return 0.0
    unit = _UNITS.get(text[-1].lower())
    number = text[:-1] if unit else text
    try:
        return float(number) * (unit or 1.0)
    except ValueError:
        raise ValueError(f"{SHIFT_ENV}={text!r}: expected seconds or a number with s/m/h/d, e.g. 400d") from None


class SystemClock:
    """The machine's clock, shifted by `shift_s` seconds."""

    def __init__(self, shift_s: float = 0.0) -> None:
        self.shift_s = shift_s

    def time(self) -> float:
        return _time.time() + self.shift_s


class FrozenClock:
    """A clock that moves only when told to: `advance(seconds)` or `set(datetime)`."""

    def __init__(self, at: datetime | float) -> None:
        self._t = at.timestamp() if isinstance(at, datetime) else float(at)

    def time(self) -> float:
        return self._t

    def advance(self, seconds: float) -> None:
        self._t += seconds

    def set(self, at: datetime) -> None:
        self._t = at.timestamp()


_clock: Clock = SystemClock(parse_shift(os.environ.get(SHIFT_ENV)))


def time() -> float:
    """Now, as seconds since the epoch."""
    return _clock.time()


def now() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.fromtimestamp(_clock.time(), timezone.utc)


def machine_time() -> float:
    """The machine's own clock, never shifted: only for comparing with what the kernel stamps (file
    mtimes), which a shift does not move."""
    return _time.time()


def machine_time_ns() -> int:
    return _time.time_ns()


def shift() -> timedelta:
    """How far this process's clock is from the machine's (0 unless shifted)."""
    return timedelta(seconds=_clock.time() - _time.time())


def current() -> Clock:
    return _clock


def set_clock(clock: Clock) -> Clock:
    """Make `clock` this process's clock; returns the one it replaces."""
    global _clock
    previous, _clock = _clock, clock
    return previous


@contextmanager
def use(clock: Clock) -> Iterator[Clock]:
    previous = set_clock(clock)
    try:
        yield clock
    finally:
        set_clock(previous)
