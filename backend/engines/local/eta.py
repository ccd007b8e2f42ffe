"""Queue ETAs for the local engine: each QUEUED run's estimated start, in admission order.

The queue is simulated in the order the agent admits (priority, submit time, id) from the billed
runs' expected ends: admitted_at + max_duration, else the mean billed time of earlier COMPLETED runs
of the same manifest name. Tiers (capacity) and sweeps' `parallel` caps are honoured. A run whose
end nobody can estimate (no max_duration, no history) hides the ETAs of every run waiting on it
rather than inventing one. They are estimates and are labelled as such wherever they are shown.
"""
from __future__ import annotations

import heapq
import time
from datetime import datetime, timezone

from backend import clock
from .sweeps import BILLED_SQL, read_policies

_FAR = 100 * 365 * 86400.0  # "no expected end known": ETAs behind it are not given


def expected_seconds(conn) -> dict[str, float]:
    """Mean billed seconds of COMPLETED runs per manifest name."""
    rows = conn.execute(
        "SELECT COALESCE(json_extract(spec, '$.manifest_name'), name), AVG(finished_at - admitted_at), "
        "COUNT(*) FROM runs WHERE state = 'COMPLETED' AND admitted_at IS NOT NULL GROUP BY 1").fetchall()
    return {name: avg for name, avg, _n in rows if avg is not None}


def queue_etas(conn, capacity: int, now: float | None = None,
               caps: dict[str, int] | None = None) -> dict[str, datetime]:
    """Estimated start of each QUEUED run; runs whose start cannot be estimated are left out.

    capacity: devices this profile may hold at once (tier, else the machine's devices).
    caps: `parallel` per experiment (default: from the experiments table).
    """
    now = clock.time() if now is None else now
    history = expected_seconds(conn)
    caps = {e: p.parallel for e, p in read_policies(conn).items() if p.parallel} if caps is None else caps

    def seconds(max_s, manifest_name) -> float:
        if max_s:
            return float(max_s)
        return history.get(manifest_name, _FAR)

    ends: list[tuple[float, int, str | None]] = []
    active: dict[str, int] = {}
    for need, admitted, max_s, mname, exp in conn.execute(
        "SELECT gpus * learners, admitted_at, json_extract(spec, '$.max_duration_s'), "
        f"COALESCE(json_extract(spec, '$.manifest_name'), name), experiment FROM runs "
        f"WHERE state IN {BILLED_SQL}"):
        ends.append((max(now, (admitted or now) + seconds(max_s, mname)), need, exp))
        if exp:
            active[exp] = active.get(exp, 0) + 1
    heapq.heapify(ends)
    free = capacity - sum(n for _, n, _ in ends) if capacity else 1 << 30
    at = now
    out: dict[str, datetime] = {}
    queue = conn.execute(
        "SELECT id, gpus * learners, json_extract(spec, '$.max_duration_s'), "
        "COALESCE(json_extract(spec, '$.manifest_name'), name), experiment FROM runs "
        "WHERE state = 'QUEUED' ORDER BY prio DESC, submitted_at, id")
    for rid, need, max_s, mname, exp in queue:
        if capacity:
            need = min(need, capacity)
        cap = caps.get(exp) if exp else None
        while (free < need or (cap and active.get(exp, 0) >= cap)) and ends:
            t, n, e = heapq.heappop(ends)
            at = max(at, t)
            free += n
            if e:
                active[e] -= 1
        if at - now >= _FAR / 2:
            break  # everything from here waits on a run with no expected end
        out[rid] = datetime.fromtimestamp(at, timezone.utc)
        free -= need
        if exp:
            active[exp] = active.get(exp, 0) + 1
        heapq.heappush(ends, (at + seconds(max_s, mname), need, exp))
    return out


_capacity: dict[tuple[int, int], tuple[float, int]] = {}


def engine_etas(engine) -> dict[str, datetime]:
    """ETAs for the local engine's queue: the profile's tier, else the machine's device count."""
    from . import deps

    backend = engine.backend
    tier = backend.config.tier_gpus(backend.profile)
    key = (backend.profile.cpu_slots, id(engine))
    at, devices = _capacity.get(key, (0.0, 0))
    if time.monotonic() - at > 5.0:  # NVML is not free: count the devices every few seconds
        devices = len(deps.discover_devices(backend.profile.cpu_slots)[0])
        _capacity[key] = (time.monotonic(), devices)
    capacity = min(tier, devices) if tier and devices else (tier or devices)
    return queue_etas(engine.conn, capacity)
