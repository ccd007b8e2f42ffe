"""Why a queued run waits, in the words every engine uses (`runs`, `--json`, the TUI).

A queued run's `message` holds its reason; each engine builds it from these functions, so the
words are the same wherever a run waits. Several gates at once are joined with `; `.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

HELD = "held (release it to let it start)"
WAITING_FOR = "waiting for "  # how a dependency's reason begins


def behind(position: int | None) -> str:
    """A run the scheduler gave no reason of its own waits for the runs ahead of it ('' at the head)."""
    if position and position > 1:
        return f"behind {position - 1} run{'s' if position > 2 else ''}"
    return ""


def tier_limit(profile: str, room: int, need: int) -> str:
    return f"tier limit: profile {profile} may take {max(0, room)} more GPU(s), this run needs {need}"


def busy(kind: str, need: int, free: int, note: str = "") -> str:
    """`GPUs busy: needs 2, 0 free (held by …)`; kind: `GPUs`, `H100 GPUs`, `cpu slots`."""
    return f"{kind} busy: needs {need}, {free} free" + (f" ({note})" if note else "")


def held_here(count: int) -> str:
    """Part of a busy note: how many of the busy GPUs this engine's own runs hold."""
    return f"{count} held by runs here"


def held_by_agent(label: str, who: str | None, pid: int | None) -> str:
    return f"{label} held by {who or 'another user'}'s agent" + (f" (pid {pid})" if pid else "")


def not_ours(label: str) -> str:
    """Part of a busy note: a GPU some process this engine did not start is using."""
    return f"{label} used by a process we did not start"


def waiting_for(pending: Sequence[tuple[str, str]]) -> str:
    """The prerequisites not yet complete, as (run id, state): `waiting for ab12 (PROCESSING)`."""
    shown = ", ".join(f"{rid} ({state})" for rid, state in pending[:3])
    return WAITING_FOR + shown + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")


def dependency_gone(dep: str) -> str:
    return f"not started: {dep}, which it depends on, is gone"


def dependency_ended(dep: str, state: str, code: str | None) -> str:
    return f"not started: {dep}, which it depends on, ended {state}{f' ({code})' if code else ''}"


def begins_at(epoch: float) -> str:
    at = datetime.fromtimestamp(epoch, timezone.utc)
    return f"begins at {at.strftime('%Y-%m-%d %H:%M')} UTC"


def join(reasons: Iterable[str]) -> str:
    return "; ".join(r for r in reasons if r)
