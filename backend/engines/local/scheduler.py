"""Admission: which QUEUED runs get devices now, in the one order that queue positions also show.

Order: priority (higher first), then submit time, then id (a total order, so positions are stable).
`fifo` (the default) admits from the head and stops at the first run that does not fit, so nothing
is ever passed; `best-effort` lets a run that fits pass one that does not. A pass reads the queue
lazily from an index in that order, so with free devices gone it stops after one row, not 10,000.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ... import waits
from ...eta import box_short, sharing_candidates, slots_held
# The queue's order lives with the listing's queries: a listing reads queue positions without the planner.
from .rows import QUEUE_SQL  # noqa: F401

# What admission reads: the same order, plus each run's cores and memory (recorded in its spec at
# submit; 0 for runs recorded before they were), leaving out runs held back by a gate (a dependency
# not yet complete, a hold, a begin time: spec.wait, cleared by the agent when it opens).
# And, for GPU sharing, its per-GPU memory cap (bytes, or NULL) and whether it may share a GPU.
ADMIT_COLS = (
    "id, gpus * learners, profile, gpu_type, learners, "
    "COALESCE(json_extract(spec, '$.cpus_total'), 0), COALESCE(json_extract(spec, '$.memory_total'), 0), "
    "json_extract(spec, '$.gpu_memory'), COALESCE(json_extract(spec, '$.share'), 0)"
)
GATE_FILTER = "json_extract(spec, '$.wait') IS NULL"
ADMIT_SQL = (
    f"SELECT {ADMIT_COLS} FROM runs WHERE state = 'QUEUED' AND {GATE_FILTER} "
    "ORDER BY prio DESC, submitted_at, id"
)
# Best-effort may skip runs: those needing more devices than are free are skipped inside SQLite's
# index scan instead of one by one in Python.
FITTING_SQL = (
    f"SELECT {ADMIT_COLS} FROM runs WHERE state = 'QUEUED' AND {GATE_FILTER} "
    "AND gpus * learners <= ? ORDER BY prio DESC, submitted_at, id"
)


def queue_cursor(conn, *, best_effort: bool, free: int):
    if best_effort:
        return conn.execute(FITTING_SQL, (free,))
    return conn.execute(ADMIT_SQL)


@dataclass(frozen=True)
class FreeDevice:
    uuid: str
    gpu_type: str | None
    memory_total: int | None = None  # bytes; None = NVML did not say


@dataclass
class SharedGpu:
    """A GPU that only sharing runs hold: `room` is its memory less the caps of the runs on it
    (None = its memory is unknown, so nothing more may join)."""

    uuid: str
    gpu_type: str | None
    room: int | None
    total: int | None = None


@dataclass(frozen=True)
class Admission:
    run_id: str
    devices: tuple[str, ...]
    shared: bool = False  # placed as a sharing run (gpu_memory + share)


@dataclass
class Box:
    """The machine's cores and memory not held by running runs (None = not counted)."""

    cpus: int | None = None
    memory: int | None = None
    cpus_total: int | None = None
    memory_total: int | None = None


WHY_LIMIT = 50  # reasons written per pass; the rest of the queue is "behind N runs"


def fmt_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v == int(v) or v >= 10 else f"{v:.1f} {unit}"
    return f"{n} B"


def _box_reason(box: Box | None, cpus: int, memory: int) -> str | None:
    if box is None:
        return None
    short = box_short(cpus, memory, box.cpus, box.memory)  # the rule the queue's ETAs simulate
    if short == "cpus":
        return f"CPUs busy: needs {cpus} core(s), {box.cpus} of {box.cpus_total} free"
    if short == "memory":
        return (f"memory busy: needs {fmt_bytes(memory)}, {fmt_bytes(max(0, box.memory))} of "
                f"{fmt_bytes(box.memory_total or 0)} free")
    return None


def plan(
    queue: Iterable[tuple],
    free: list[FreeDevice],
    room: Mapping[str, int | None],
    *,
    best_effort: bool = False,
    match_type: bool = False,
    cpu_slots: bool = False,
    slot_count: int | None = None,
    box: Box | None = None,
    why: dict[str, str] | None = None,
    busy_note: str = "",
    shared: dict[str, SharedGpu] | None = None,
) -> list[Admission]:
    """Admissions for one pass.

    queue: (run id, devices needed, profile, wanted gpu type[, learners[, cores, memory bytes]]) in
    queue order; where it has a `passed(run_id)` method, each run not admitted is told to it.
    free: devices nobody holds. room: devices each profile may still take (None = no tier limit);
    a mapping that may compute missing profiles on demand.
    match_type: only hand a run devices of its `gpu_type` (real GPUs; cpu slots stand in for any).
    cpu_slots: the devices are cpu slots; a run that asks for no GPU then holds one slot per learner
    (what it is billed for), so it shows as assigned and busy; tiers count GPUs, not these slots.
    slot_count: how many cpu slots the box has in all: a GPU-less run's learners beyond it share
    the slots it holds (it needs no device, so it must never wait for one that does not exist).
    box: the cores and memory left; every run, whatever its GPUs, waits until its own fit (and
    takes them from `box` when admitted).
    why: filled with the reason each run looked at but not admitted waits (the first WHY_LIMIT);
    busy_note: who holds the busy GPUs, added to a "GPUs busy" reason.
    shared: the GPUs that sharing runs hold (uuid -> SharedGpu), updated as runs are placed. A run
    with `share` and a `gpu_memory` cap (queue items' 8th and 9th fields) goes on GPUs whose room
    fits its cap, fullest first, then on free GPUs (backend/eta.py's `sharing_candidates`, which
    the queue's ETAs simulate too); an exclusive run only ever takes a free GPU, and a GPU a
    sharing run took is not free to anyone else.
    """
    free = list(free)
    shared = shared if shared is not None else {}
    spent: dict[str, int] = {}
    out: list[Admission] = []

    passed = getattr(queue, "passed", None)  # a queue that counts what it offers (sweeps.capped_queue)

    def wait(run_id: str, reason: str) -> None:
        """`run_id` is passed over (once for each run not admitted)."""
        if passed is not None:
            passed(run_id)
        if why is not None and len(why) < WHY_LIMIT:
            why[run_id] = reason

    def take(cpus: int, memory: int) -> None:
        if box is not None:
            if box.cpus is not None:
                box.cpus -= cpus
            if box.memory is not None:
                box.memory -= memory

    for item in queue:
        run_id, need, profile, want = item[:4]
        cpus = int(item[5]) if len(item) > 6 else 0
        memory = int(item[6]) if len(item) > 6 else 0
        cap = int(item[7]) if len(item) > 8 and item[7] else 0
        sharing = bool(item[8]) and cap > 0 and match_type and need > 0 if len(item) > 8 else False
        limit = room[profile]
        if limit is not None:
            limit -= spent.get(profile, 0)
        short = _box_reason(box, cpus, memory)
        if short is not None:
            wait(run_id, short)
            if not best_effort:
                break
            continue
        if need == 0:
            if not cpu_slots:
                take(cpus, memory)
                out.append(Admission(run_id, ()))
                continue
            slots = slots_held(0, item[4] if len(item) > 4 else 1, slot_count)  # as the queue's ETAs count
            if slots <= len(free):
                taken, free = free[:slots], free[slots:]
                take(cpus, memory)
                out.append(Admission(run_id, tuple(d.uuid for d in taken)))
                continue
            wait(run_id, waits.busy("cpu slots", slots, len(free)))
            if not best_effort or not free:
                break
            continue
        if sharing:
            pool = sharing_candidates(cap, shared.values(), free, want)  # the rule the queue's ETAs simulate
            if need <= len(pool) and (limit is None or need <= limit):
                chosen_ids = [d.uuid for d in pool[:need]]
                for d in pool[:need]:
                    if d.uuid not in shared:  # a free GPU: sharing runs hold it from now on
                        shared[d.uuid] = SharedGpu(d.uuid, d.gpu_type, d.memory_total, d.memory_total)
                        free = [f for f in free if f.uuid != d.uuid]
                for uuid in chosen_ids:
                    g = shared[uuid]
                    g.room = None if g.room is None else g.room - cap
                spent[profile] = spent.get(profile, 0) + need
                take(cpus, memory)
                out.append(Admission(run_id, tuple(chosen_ids), True))
                continue
            if limit is not None and need > limit:
                wait(run_id, f"tier limit: profile {profile} may take {max(0, limit)} more GPU(s), "
                             f"this run needs {need}")
            else:
                kind = f"{want} GPUs" if want else "GPUs"
                wait(run_id, f"{kind} busy: needs {need} with {fmt_bytes(cap)} of GPU memory free, "
                             f"{len(pool)} fit" + (f" ({busy_note})" if busy_note else ""))
            if not best_effort:
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
            take(cpus, memory)
            out.append(Admission(run_id, tuple(d.uuid for d in chosen)))
            continue
        if limit is not None and need > limit:
            wait(run_id, waits.tier_limit(profile, limit, need))
        else:
            kind = f"{want} GPUs" if match_type and want else ("cpu slots" if not match_type else "GPUs")
            wait(run_id, waits.busy(kind, need, len(pool), busy_note))
        if not best_effort:
            break
        if not free and not shared:
            break
    return out


def queue_positions(queued_ids_in_order: Iterable[str]) -> dict[str, int]:
    return {run_id: i for i, run_id in enumerate(queued_ids_in_order, start=1)}
