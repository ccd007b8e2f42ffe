"""Queue ETAs for the local engine: its SQLite state fed to the one model in backend/eta.py.

This module only reads: the durations of COMPLETED runs (by experiment and manifest name), the
QUEUED and billed runs, the admission order (QUEUE_SQL: priority, submit time, id) and sweeps'
`parallel` caps. The rules (learned median, then max_duration as a bound) are backend/eta.py's.
Where a run in the queue or on the GPUs shares a GPU (`share` + `gpu_memory`), the simulation places
runs GPU by GPU with the GPUs' memory, as the scheduler does. On a box without GPUs the devices are
cpu slots, which a GPU-less run holds too (one per learner); and every run holds its cores and
memory: the simulation counts both as the scheduler admits by them.
"""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone

from backend import clock
from ...eta import DurationModel, Eta, queue_etas
from ...runs import BILLED_SQL, STATES, RunState
from .rows import QUEUE_SQL


def learned(conn) -> DurationModel:
    """Durations (admitted to finished) of COMPLETED runs by experiment and manifest name."""
    model = DurationModel()
    for exp, mname, seconds in conn.execute(
        "SELECT experiment, COALESCE(json_extract(spec, '$.manifest_name'), name), finished_at - admitted_at "
        "FROM runs WHERE state = 'COMPLETED' AND admitted_at IS NOT NULL AND finished_at IS NOT NULL"):
        model.add(exp, mname, seconds)
    return model


def parallel_caps(conn) -> dict[str, int]:
    """`parallel` per experiment that sets one, read in SQL from the policies sweeps.py records (as
    its SweepPolicy would read them): a listing does not load admission's modules for it."""
    try:
        rows = conn.execute("SELECT id, json_extract(policy, '$.parallel') FROM experiments").fetchall()
    except Exception as exc:  # no sweep submitted yet: no table, no caps; any other error is raised
        if str(exc).startswith("no such table"):
            return {}
        raise
    return {exp: parallel for exp, parallel in rows if parallel}


class QueueRow:
    """What the queue simulation reads of a QUEUED or billed run (backend/eta.py asks these of a Run):
    read from a narrow query, so estimating 10,000 queued runs builds no Run objects."""

    __slots__ = ("id", "state", "gpus", "experiment", "_admitted", "_submitted", "name", "manifest_name",
                 "max_duration_s", "learners", "cpus_total", "memory_total", "gated", "queue_position")
    share, gpu_memory, assigned = 0, None, ()  # read only where runs may share a GPU (SharingQueueRow)

    def __init__(self, row) -> None:
        (self.id, state, self.gpus, self.experiment, self._admitted, self._submitted, self.name, self.manifest_name,
         self.max_duration_s, self.learners, self.cpus_total, self.memory_total, self.gated) = row
        self.state = STATES.get(state) or RunState(state)
        self.queue_position = None

    # As datetimes when read: the simulation reads them of billed runs alone (the queue's order is given).
    @property
    def admitted_at(self) -> datetime | None:
        return None if self._admitted is None else datetime.fromtimestamp(self._admitted, timezone.utc)

    @property
    def submitted_at(self) -> datetime:
        return datetime.fromtimestamp(self._submitted, timezone.utc)


class SharingQueueRow(QueueRow):
    """A QueueRow with what placing runs GPU by GPU reads too: `share`, the `gpu_memory` cap and the
    devices a billed run holds (QUEUE_ROW_COLUMNS, then SHARE_COLUMNS)."""

    __slots__ = ("share", "gpu_memory", "assigned")

    def __init__(self, row) -> None:
        super().__init__(row[:13])
        self.share, self.gpu_memory, assigned = row[13:]
        self.assigned = json.loads(assigned) if assigned else []


QUEUE_ROW_COLUMNS = (
    "id, state, gpus * learners, experiment, admitted_at, submitted_at, name, "
    "json_extract(spec, '$.manifest_name'), json_extract(spec, '$.max_duration_s'), "
    # what the scheduler admits by besides GPUs (scheduler.ADMIT_COLS): learners (a GPU-less run's cpu
    # slots), cores and memory (0 for runs recorded before they were)
    "learners, COALESCE(json_extract(spec, '$.cpus_total'), 0), COALESCE(json_extract(spec, '$.memory_total'), 0), "
    # held back by a gate (scheduler.GATE_FILTER): admission does not see it, the estimate neither
    "json_extract(spec, '$.wait') IS NOT NULL"
)
# Read too where the machine has GPUs (only there may runs share one): ~10 % more time to read 10,000.
SHARE_COLUMNS = "COALESCE(json_extract(spec, '$.share'), 0), json_extract(spec, '$.gpu_memory'), assigned"


def local_etas(conn, capacity: int, now: float | None = None,
               caps: dict[str, int] | None = None, *, order: list[str] | None = None,
               devices: Mapping[str, int | None] | None = None, tier: int = 0, cpu_slots: int = 0,
               box: tuple[int | None, int | None] | None = None, best_effort: bool = False) -> dict[str, Eta]:
    """Estimated start of each QUEUED run; runs whose start cannot be estimated are left out.

    capacity: devices this profile may hold at once (tier, else the machine's devices).
    caps: `parallel` per experiment (default: from the experiments table).
    order: the QUEUED ids in admission order, when the caller has read them already (QUEUE_SQL); or
    only the head of that order, when only the head's ETAs are wanted (a first screenful): a run's
    estimate depends on the runs ahead of it, never on those behind.
    devices: the machine's GPUs (uuid -> memory bytes) and tier: the profile's GPU limit (0: none).
    Where a run among those read shares a GPU, runs are placed on these GPUs one by one (as the
    scheduler places them) and only the tier limits how many GPUs runs ask for in all.
    cpu_slots: the machine has no GPU and its devices are this many cpu slots: every run holds slots
    as the scheduler hands them out (a GPU-less run one per learner), and the tier counts GPUs only.
    box: the cores and memory (bytes; None: not counted) runs may hold together (limits.capacity):
    each run holds its own, as the scheduler counts them.
    best_effort: the profile's queue_policy is "best-effort": a run that fits passes one that does not,
    as admission lets it. A run behind the head may then start first and hold what the head waits
    for, so the whole queue is read and simulated, whatever `order` says.
    """
    now = clock.time() if now is None else now
    if best_effort:
        order = None
    if caps is None:
        caps = parallel_caps(conn)
    columns, row_type = (f"{QUEUE_ROW_COLUMNS}, {SHARE_COLUMNS}", SharingQueueRow) if devices else (
        QUEUE_ROW_COLUMNS, QueueRow)
    rows = conn.execute(f"SELECT {columns} FROM runs WHERE state = 'QUEUED' OR state IN {BILLED_SQL}")
    if order is None:
        runs = [row_type(r) for r in rows]
        order = [row[0] for row in conn.execute(QUEUE_SQL)]
    else:
        wanted = set(order)
        runs = [row_type(r) for r in rows if r[1] != "QUEUED" or r[0] in wanted]
    sharing = bool(devices) and any(r.share and r.gpu_memory and r.gpus for r in runs)
    slots = 0 if devices else cpu_slots
    return queue_etas(runs, capacity=tier if sharing or slots else capacity,
                      now=datetime.fromtimestamp(now, timezone.utc), caps=caps, order=order,
                      model=learned(conn), devices=devices if sharing else None, cpu_slots=slots, box=box,
                      gated={r.id for r in runs if r.gated}, best_effort=best_effort)


_capacity: dict[tuple[int, int], tuple[float, int, dict[str, int | None], tuple[int | None, int | None]]] = {}


def engine_etas(engine, *, order: list[str] | None = None) -> dict[str, Eta]:
    """ETAs for the local engine's queue: the profile's tier, else the machine's device count (its GPUs,
    else its cpu slots, which GPU-less runs hold too), and the cores and memory runs may hold."""
    backend = engine.backend
    tier = backend.config.tier_gpus(backend.profile)
    key = (backend.profile.cpu_slots, id(engine))
    at, devices, gpus, box = _capacity.get(key, (0.0, 0, {}, (None, None)))
    if time.monotonic() - at > 5.0:  # NVML is not free: count the devices every few seconds
        from .limits import capacity as box_capacity
        from .nvml import estimate_devices

        devices, gpus = estimate_devices(backend.profile.cpu_slots)
        held = box_capacity(backend.profile)  # what the agent admits by (Agent.capacity)
        box = (len(held.cores), held.memory or None)
        _capacity[key] = (time.monotonic(), devices, gpus, box)
    capacity = min(tier, devices) if tier and devices else (tier or devices)
    try:
        return local_etas(engine.conn, capacity, order=order, devices=gpus, tier=tier,
                          cpu_slots=0 if gpus else devices, box=box,
                          best_effort=getattr(backend.profile, "queue_policy", "fifo") == "best-effort")
    except Exception as exc:  # an estimate must not break the listing; say why there is none
        import logging  # here, not at import: `runs` lists without logging

        logging.getLogger("dlaas.engine").warning("queue ETAs not computed: %s", exc)
        return {}
