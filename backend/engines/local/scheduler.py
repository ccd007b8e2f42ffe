"""Admission: which QUEUED runs get devices now, in the one order that queue positions also show.

Order: priority (higher first), then submit time, then id (a total order, so positions are stable).
`fifo` (the default) admits from the head and stops at the first run that does not fit, so nothing
is ever passed; `best-effort` lets a run that fits pass one that does not. A pass reads the queue
lazily from an index in that order, so with free devices gone it stops after one row, not 10,000.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Read through the covering index `runs_queue` (db.SCHEMA), so SQLite never sorts.
QUEUE_SQL = (
    "SELECT id, gpus * learners, profile, gpu_type, learners FROM runs WHERE state = 'QUEUED' "
    "ORDER BY prio DESC, submitted_at, id"
)
# Best-effort may skip runs: those needing more devices than are free are skipped inside SQLite's
# index scan instead of one by one in Python.
FITTING_SQL = (
    "SELECT id, gpus * learners, profile, gpu_type, learners FROM runs WHERE state = 'QUEUED' "
    "AND gpus * learners <= ? ORDER BY prio DESC, submitted_at, id"
)


def queue_cursor(conn, *, best_effort: bool, free: int):
    if best_effort:
        return conn.execute(FITTING_SQL, (free,))
    return conn.execute(QUEUE_SQL)


@dataclass(frozen=True)
class FreeDevice:
    uuid: str
    gpu_type: str | None


@dataclass(frozen=True)
class Admission:
    run_id: str
    devices: tuple[str, ...]


def plan(
    queue: Iterable[tuple],
    free: list[FreeDevice],
    room: Mapping[str, int | None],
    *,
    best_effort: bool = False,
    match_type: bool = False,
    cpu_slots: bool = False,
) -> list[Admission]:
    """Admissions for one pass.

    queue: (run id, devices needed, profile, wanted gpu type[, learners]) in queue order.
    free: devices nobody holds. room: devices each profile may still take (None = no tier limit);
    a mapping that may compute missing profiles on demand.
    match_type: only hand a run devices of its `gpu_type` (real GPUs; cpu slots stand in for any).
    cpu_slots: the devices are cpu slots; a run that asks for no GPU then holds one slot per learner
    (what it is billed for), so it shows as assigned and busy; tiers count GPUs, not these slots.
    """
    free = list(free)
    spent: dict[str, int] = {}
    out: list[Admission] = []
    for item in queue:
        run_id, need, profile, want = item[:4]
        limit = room[profile]
        if limit is not None:
            limit -= spent.get(profile, 0)
        if need == 0:
            if not cpu_slots:
                out.append(Admission(run_id, ()))
                continue
            slots = max(1, item[4] if len(item) > 4 else 1)
            if slots <= len(free):
                taken, free = free[:slots], free[slots:]
                out.append(Admission(run_id, tuple(d.uuid for d in taken)))
                continue
            if not best_effort or not free:
                break
            continue
        if match_type and want:
            pool = [d for d in free if d.gpu_type == want]
        else:
            pool = free
        if need <= len(pool) and (limit is None or need <= limit):
            chosen = pool[:need]
            taken = {d.uuid for d in chosen}
            free = [d for d in free if d.uuid not in taken]
            spent[profile] = spent.get(profile, 0) + need
            out.append(Admission(run_id, tuple(d.uuid for d in chosen)))
            continue
        if not best_effort:
            break
        if not free:
            break
    return out


def queue_positions(queued_ids_in_order: Iterable[str]) -> dict[str, int]:
    return {run_id: i for i, run_id in enumerate(queued_ids_in_order, start=1)}
