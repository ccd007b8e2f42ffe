"""Queue ETAs for the local engine: its SQLite state fed to the one model in backend/eta.py.

This module only reads: the durations of COMPLETED runs (by experiment and manifest name), the
QUEUED and billed runs, the admission order (QUEUE_SQL: priority, submit time, id) and sweeps'
`parallel` caps. The rules (learned median, then max_duration as a bound) are backend/eta.py's.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timezone

from backend import clock
from ...eta import DurationModel, Eta, queue_etas
from ...runs import BILLED_SQL, Run
from .rows import LIST_COLUMNS, QUEUE_SQL, row_to_run


def learned(conn) -> DurationModel:
    """Durations (admitted to finished) of COMPLETED runs by experiment and manifest name."""
    model = DurationModel()
    for exp, mname, seconds in conn.execute(
        "SELECT experiment, COALESCE(json_extract(spec, '$.manifest_name'), name), finished_at - admitted_at "
        "FROM runs WHERE state = 'COMPLETED' AND admitted_at IS NOT NULL AND finished_at IS NOT NULL"):
        model.add(exp, mname, seconds)
    return model


def parallel_caps(conn) -> dict[str, int]:
    """`parallel` per experiment. A ledger whose experiments record no policy (most of them) is
    answered from one query, without loading sweeps.py (admission's module) into every listing."""
    try:
        if conn.execute("SELECT 1 FROM experiments WHERE policy NOT IN ('', '{}') LIMIT 1").fetchone() is None:
            return {}
    except Exception as exc:  # no sweep submitted yet: no table, no caps; any other error is raised
        if str(exc).startswith("no such table"):
            return {}
        raise
    from .sweeps import read_policies

    return {e: p.parallel for e, p in read_policies(conn).items() if p.parallel}


def local_etas(conn, capacity: int, now: float | None = None,
               caps: dict[str, int] | None = None, *, built: Mapping[str, Run] | None = None,
               order: list[str] | None = None) -> dict[str, Eta]:
    """Estimated start of each QUEUED run; runs whose start cannot be estimated are left out.

    capacity: devices this profile may hold at once (tier, else the machine's devices).
    caps: `parallel` per experiment (default: from the experiments table).
    built: Runs the caller already has, by id (a listing's): only the QUEUED and billed runs not
    among them are read and built here. order: the QUEUED ids in admission order, if read already.
    """
    now = clock.time() if now is None else now
    if caps is None:
        caps = parallel_caps(conn)
    where = f"state = 'QUEUED' OR state IN {BILLED_SQL}"
    if built:
        ids = [rid for (rid,) in conn.execute(f"SELECT id FROM runs WHERE {where}")]
        missing = [rid for rid in ids if rid not in built]
        got: dict[str, Run] = {}
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            got.update((r["id"], row_to_run(r)) for r in conn.execute(
                f"SELECT {LIST_COLUMNS} FROM runs WHERE id IN ({', '.join('?' for _ in chunk)})", chunk))
        runs = [run for run in (built.get(rid) or got.get(rid) for rid in ids) if run is not None]
    else:
        runs = [row_to_run(r) for r in conn.execute(f"SELECT {LIST_COLUMNS} FROM runs WHERE {where}")]
    if order is None:
        order = [row[0] for row in conn.execute(QUEUE_SQL)]
    return queue_etas(runs, capacity=capacity, now=datetime.fromtimestamp(now, timezone.utc), caps=caps,
                      order=order, model=learned(conn))


_capacity: dict[tuple[int, int], tuple[float, int]] = {}


def engine_etas(engine, *, built: Mapping[str, Run] | None = None,
                order: list[str] | None = None) -> dict[str, Eta]:
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
        return local_etas(engine.conn, capacity, built=built, order=order)
    except Exception as exc:  # an estimate must not break the listing; say why there is none
        import logging  # here, not at import: `runs` lists without logging

        logging.getLogger("dlaas.engine").warning("queue ETAs not computed: %s", exc)
        return {}
