"""Figures as a person reads them, the same in the TUI and the CLI (standard library only)."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~2.5 ms) on the CLI's path
if TYPE_CHECKING:
    from typing import Any
    from backend.facade import Run


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def format_params(params: Mapping[str, Any], *, round_floats: bool = False) -> str:
    """`lr=0.001 hidden=64`: what tells one sweep trial from another. The CLI prints values as
    given; the runs table, short of room, rounds floats to four significant digits."""
    if round_floats:
        return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    return " ".join(f"{k}={v}" for k, v in params.items())


# How long a run has waited or run, in words: the runs table's TIME column and `dlaas-tui runs`.
AGE_WIDTH = 6  # human_duration: `59m59s`, `23h59m`, `12d03h`


def human_duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def run_duration(run: Run, now: datetime) -> float:
    """Seconds in the queue while never admitted (until now, or until it ended there); once
    admitted, seconds since admission (until now, or until it finished). What `age_verb` names."""
    start = run.admitted_at or run.submitted_at
    end = run.finished_at or now
    return (end - start).total_seconds()


def age_verb(run: Run) -> str:
    """What the TIME column measures for `run`: `queued` (never admitted) or `ran` (since admitted)."""
    return "queued" if run.admitted_at is None else "ran"


def format_age(run: Run, now: datetime) -> str:
    """The TIME cell: `queued 3m02s`, `ran 12m04s`."""
    return f"{age_verb(run)} {human_duration(run_duration(run, now))}"


def bare_age(run: Run, now: datetime) -> str:
    """The TIME cell where the width runs short (80 columns and a full table): `3m02s`."""
    return human_duration(run_duration(run, now))
