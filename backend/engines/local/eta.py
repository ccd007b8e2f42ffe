"""Queue ETAs for the local engine: its SQLite state fed to the one model in backend/eta.py.

This module only reads: the durations of COMPLETED runs (by experiment and manifest name), the
QUEUED and billed runs, the admission order (QUEUE_SQL: priority, submit time, id) and sweeps'
`parallel` caps. The rules (learned median, then max_duration as a bound) are backend/eta.py's.
"""
from __future__ import annotations

import time
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

    __slots__ = ("id", "state", "gpus", "experiment", "admitted_at", "submitted_at", "name", "manifest_name",
                 "max_duration_s", "queue_position")

    def __init__(self, row) -> None:
        (self.id, state, self.gpus, self.experiment, admitted, submitted, self.name, self.manifest_name,
         self.max_duration_s) = row
        self.state = STATES.get(state) or RunState(state)
        self.admitted_at = None if admitted is None else datetime.fromtimestamp(admitted, timezone.utc)
        self.submitted_at = datetime.fromtimestamp(submitted, timezone.utc)
        self.queue_position = None


QUEUE_ROW_COLUMNS = (
    "id, state, gpus * learners, experiment, admitted_at, submitted_at, name, "
    "json_extract(spec, '$.manifest_name'), json_extract(spec, '$.max_duration_s')"
)


def local_etas(conn, capacity: int, now: float | None = None,
               caps: dict[str, int] | None = None, *, order: list[str] | None = None) -> dict[str, Eta]:
    """Estimated start of each QUEUED run; runs whose start cannot be estimated are left out.

    capacity: devices this profile may hold at once (tier, else the machine's devices).
    caps: `parallel` per experiment (default: from the experiments table).
    order: the QUEUED ids in admission order, when the caller has read them already (QUEUE_SQL); or
    only the head of that order, when only the head's ETAs are wanted (a first screenful): a run's
    estimate depends on the runs ahead of it, never on those behind.
    """
    now = clock.time() if now is None else now
    if caps is None:
        caps = parallel_caps(conn)
    rows = conn.execute(f"SELECT {QUEUE_ROW_COLUMNS} FROM runs WHERE state = 'QUEUED' OR state IN {BILLED_SQL}")
    if order is None:
        runs = [QueueRow(r) for r in rows]
        order = [row[0] for row in conn.execute(QUEUE_SQL)]
    else:
        wanted = set(order)
        runs = [QueueRow(r) for r in rows if r[1] != "QUEUED" or r[0] in wanted]
    return queue_etas(runs, capacity=capacity, now=datetime.fromtimestamp(now, timezone.utc), caps=caps,
                      order=order, model=learned(conn))


_capacity: dict[tuple[int, int], tuple[float, int]] = {}


def engine_etas(engine, *, order: list[str] | None = None) -> dict[str, Eta]:
    """ETAs for the local engine's queue: the profile's tier, else the machine's device count."""
    backend = engine.backend
    tier = backend.config.tier_gpus(backend.profile)
    key = (backend.profile.cpu_slots, id(engine))
    at, devices = _capacity.get(key, (0.0, 0))
    if time.monotonic() - at > 5.0:  # NVML is not free: count the devices every few seconds
        from .nvml import device_count

        devices = device_count(backend.profile.cpu_slots)
        _capacity[key] = (time.monotonic(), devices)
    capacity = min(tier, devices) if tier and devices else (tier or devices)
    try:
        return local_etas(engine.conn, capacity, order=order)
    except Exception as exc:  # an estimate must not break the listing; say why there is none
        import logging  # here, not at import: `runs` lists without logging

        logging.getLogger("dlaas.engine").warning("queue ETAs not computed: %s", exc)
        return {}
