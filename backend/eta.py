"""Queue ETAs: one model for every engine, which learns from what already ran.

A run's expected duration (admitted to finished, the span it holds devices) is, in this order:

1. the median duration of COMPLETED runs of the same experiment (a sweep's earlier trials);
2. the median duration of COMPLETED runs of the same manifest name;
3. the manifest's `max_duration`: an upper bound, not an estimate, so an ETA that rests on it is
   shown as `≤12m` rather than `~12m`.

A run with none of these has no expected end: the ETAs of every run waiting behind it are left out
rather than invented. The queue is simulated in admission order (the engine's queue positions),
honouring the capacity (tier, else the devices) and sweeps' `parallel` caps. A running run past its
expected end is taken to end now.
"""
from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from .records import FrozenRecord
from .runs import Run, RunState

_FAR = timedelta(days=365 * 100)  # "no expected end known": ETAs behind it are not given


def _median(values: Sequence[float]) -> float:
    """statistics.median's rule (the middle value, or the mean of the two middle ones), without
    importing statistics (with fractions and decimal) into every `runs` listing."""
    data = sorted(values)
    n = len(data)
    return data[n // 2] if n % 2 else (data[n // 2 - 1] + data[n // 2]) / 2


class Expected(FrozenRecord):
    seconds: float
    bound: bool  # True: max_duration, an upper bound; False: learned from completed runs
    _fields = ("seconds", "bound")

    def __init__(self, seconds: float, bound: bool) -> None:
        self._set(seconds=seconds, bound=bound)


def manifest_key(run: Run) -> str:
    """The manifest a run came from: its recorded manifest name, else its name less a trial suffix."""
    return run.manifest_name or re.sub(r"-\d+$", "", run.name)


class DurationModel:
    """Durations of completed runs by experiment and by manifest name."""

    def __init__(self, by_experiment: dict[str, list[float]] | None = None,
                 by_manifest: dict[str, list[float]] | None = None) -> None:
        self.by_experiment: dict[str, list[float]] = {} if by_experiment is None else by_experiment
        self.by_manifest: dict[str, list[float]] = {} if by_manifest is None else by_manifest

    def add(self, experiment: str | None, manifest: str | None, seconds: float) -> None:
        if seconds < 0:
            return
        if experiment:
            self.by_experiment.setdefault(experiment, []).append(seconds)
        if manifest:
            self.by_manifest.setdefault(manifest, []).append(seconds)

    @classmethod
    def learn(cls, runs: Iterable[Run]) -> DurationModel:
        model = cls()
        for r in runs:
            if r.state == RunState.COMPLETED and r.admitted_at and r.finished_at:
                model.add(r.experiment, manifest_key(r), (r.finished_at - r.admitted_at).total_seconds())
        return model

    def expected(self, run: Run) -> Expected | None:
        same_sweep = self.by_experiment.get(run.experiment or "")
        if same_sweep:
            return Expected(_median(same_sweep), False)
        same_manifest = self.by_manifest.get(manifest_key(run))
        if same_manifest:
            return Expected(_median(same_manifest), False)
        if run.max_duration_s:
            return Expected(float(run.max_duration_s), True)
        return None


class Eta(FrozenRecord):
    at: datetime
    bound: bool  # an upper bound (some run it waits on is only known by its max_duration)
    _fields = ("at", "bound")

    def __init__(self, at: datetime, bound: bool) -> None:
        self._set(at=at, bound=bound)


def queue_etas(
    runs: Sequence[Run],
    *,
    capacity: int,
    now: datetime,
    caps: Mapping[str, int] | None = None,
    order: Sequence[str] | None = None,
    model: DurationModel | None = None,
) -> dict[str, Eta]:
    """Estimated start of each QUEUED run among `runs` (which hold the billed runs too).

    capacity: devices the queue may hold at once (0: no limit). caps: `parallel` per experiment.
    order: QUEUED run ids in admission order (default: queue_position, then submit time).
    model: the durations learned (default: from the COMPLETED runs among `runs`).
    """
    model = model or DurationModel.learn(runs)
    caps = caps or {}
    ends: list[tuple[datetime, int, int, str | None, bool]] = []
    active: dict[str, int] = {}
    for i, r in enumerate(runs):
        if not r.state.billed:
            continue
        exp = model.expected(r)
        start = r.admitted_at or now
        end = now + _FAR if exp is None else max(now, start + timedelta(seconds=exp.seconds))
        ends.append((end, i, r.gpus, r.experiment, bool(exp and exp.bound)))
        if r.experiment:
            active[r.experiment] = active.get(r.experiment, 0) + 1
    heapq.heapify(ends)
    free = capacity - sum(e[2] for e in ends) if capacity else 1 << 30
    queued = {r.id: r for r in runs if r.state == RunState.QUEUED}
    if order is None:
        order = [r.id for r in sorted(queued.values(), key=lambda r: (
            r.queue_position if r.queue_position is not None else 1 << 30, r.submitted_at, r.id))]
    at, bound, seq = now, False, len(runs)
    out: dict[str, Eta] = {}
    for rid in order:
        r = queued.get(rid)
        if r is None:
            continue
        need = min(r.gpus, capacity) if capacity else r.gpus
        cap = caps.get(r.experiment) if r.experiment else None
        while (free < need or (cap and active.get(r.experiment, 0) >= cap)) and ends:
            t, _i, n, e, b = heapq.heappop(ends)
            at = max(at, t)
            bound = bound or b
            free += n
            if e:
                active[e] -= 1
        if at - now >= _FAR / 2:
            break  # everything from here waits on a run with no expected end
        out[rid] = Eta(at, bound)
        free -= need
        if r.experiment:
            active[r.experiment] = active.get(r.experiment, 0) + 1
        exp = model.expected(r)
        seq += 1
        end = at + (_FAR if exp is None else timedelta(seconds=exp.seconds))
        heapq.heappush(ends, (end, seq, need, r.experiment, bool(exp and exp.bound)))
    return out


def apply_etas(runs: Iterable[Run], etas: Mapping[str, Eta]) -> None:
    """Set `eta` and `eta_bound` on the QUEUED runs (None where no estimate can be given)."""
    for r in runs:
        got = etas.get(r.id) if r.state == RunState.QUEUED else None
        r.eta = got.at if got else None
        r.eta_bound = bool(got and got.bound)


def format_eta(eta: datetime | None, now: datetime | None = None, *, bound: bool = False) -> str:
    """`~12m` (the tilde says it is an estimate), or `≤12m` when it is an upper bound."""
    if eta is None:
        return ""
    if now is None:
        from . import clock

        now = clock.now()
    mark = "≤" if bound else "~"
    s = max(0, int((eta - now).total_seconds()))
    if s < 60:
        return f"{mark}now" if s < 5 else f"{mark}{s}s"
    if s < 3600:
        return f"{mark}{s // 60}m"
    if s < 86400:
        return f"{mark}{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{mark}{s // 86400}d{s % 86400 // 3600:02d}h"


__all__ = ["DurationModel", "Eta", "Expected", "apply_etas", "format_eta", "manifest_key", "queue_etas"]
