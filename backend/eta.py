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

GPU sharing (local engine: `share: true` with a `gpu_memory:` cap) is simulated GPU by GPU when the
caller gives the GPUs and their memory (`devices`): a sharing run goes where `sharing_candidates`
says, the one rule the scheduler (backend/engines/local/scheduler.py) places by, so runs whose
caps fit one GPU together start together, and an exclusive run waits for a GPU nobody holds.

Cpu slots and the box (local engine): where a box's devices are cpu slots, a run that asks for no GPU
still holds slots (`slots_held`, one per learner), so it waits for running cpu runs to end; and every
run holds its cores and memory (`box_short`). Both are the rules `plan` admits by.

Under `queue_policy = "best-effort"` (local and fake engines by the profile; Kubernetes, whose
ClusterQueue is BestEffortFIFO, always) admission lets a run that fits pass one that does not, and the
simulation does the same: at now, then at each expected end, every waiting run that fits starts, in
queue order; the others keep their place. A run that can never fit then gets no ETA and holds back
nobody; under FIFO it holds back everything behind it, as admission does.
"""
from __future__ import annotations

import heapq
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from .records import FrozenRecord
from .runs import Run, RunState

_FAR = timedelta(days=365 * 100)  # "no expected end known": ETAs behind it are not given
_BEST_EFFORT_TRIES = 200_000  # a best-effort simulation's work limit (tries to start a run): ~0.2 s


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
        _setattr(self, "seconds", seconds)  # FrozenRecord._set, unrolled
        _setattr(self, "bound", bound)
        _setattr(self, "delta", timedelta(seconds=seconds))  # not a field: what the simulation adds


_setattr = object.__setattr__
_TRIAL_SUFFIX = re.compile(r"-\d+$")


def manifest_key(run: Run) -> str:
    """The manifest a run came from: its recorded manifest name, else its name less a trial suffix."""
    return run.manifest_name or _TRIAL_SUFFIX.sub("", run.name)


class DurationModel:
    """Durations of completed runs by experiment and by manifest name."""

    def __init__(self, by_experiment: dict[str, list[float]] | None = None,
                 by_manifest: dict[str, list[float]] | None = None) -> None:
        self.by_experiment: dict[str, list[float]] = {} if by_experiment is None else by_experiment
        self.by_manifest: dict[str, list[float]] = {} if by_manifest is None else by_manifest
        self._known: dict[tuple[str, str], Expected] = {}  # the medians' Expected, worked out once each

    def add(self, experiment: str | None, manifest: str | None, seconds: float) -> None:
        if seconds < 0:
            return
        self._known.clear()
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
        """The median duration of its experiment's completed runs, else of its manifest's, else its
        max_duration as a bound; None when nothing is known. (A simulation asks this of every run it
        starts: each median is sorted out once.)"""
        known = self._known
        experiment = run.experiment
        if experiment and experiment in self.by_experiment:
            got = known.get(("e", experiment))
            if got is None:
                got = known[("e", experiment)] = Expected(_median(self.by_experiment[experiment]), False)
            return got
        key = manifest_key(run)
        if key in self.by_manifest:
            got = known.get(("m", key))
            if got is None:
                got = known[("m", key)] = Expected(_median(self.by_manifest[key]), False)
            return got
        limit = run.max_duration_s
        if limit:
            got = known.get(("d", limit))
            if got is None:
                got = known[("d", limit)] = Expected(float(limit), True)
            return got
        return None


def sharing_candidates(cap: int, shared: Iterable, free: Iterable, want: str | None = None) -> list:
    """The GPUs a sharing run with a per-GPU memory cap `cap` (bytes) may go on, in the order it takes
    them: GPUs sharing runs hold whose room (memory less their caps; None: unknown, nothing joins)
    fits the cap, fullest first; then free GPUs whose memory fits it (unknown memory: any). A run
    needing N GPUs starts when N are here. `shared` items have uuid, gpu_type and room; `free` items
    uuid, gpu_type and memory_total; `want`: the GPU type the run asks for (None: any)."""
    joined = sorted((g for g in shared if g.room is not None and g.room >= cap and (not want or g.gpu_type == want)),
                    key=lambda g: (g.room, g.uuid))
    fresh = [d for d in free if (not want or d.gpu_type == want) and (d.memory_total is None or d.memory_total >= cap)]
    return joined + fresh


def slots_held(need: int, learners: int, slot_count: int | None = None) -> int:
    """The cpu slots a run holds where a box's devices are cpu slots (no GPU): a run that asks for GPUs
    holds one slot per GPU (`need`: GPUs x learners); one that asks for none, one per learner (what it
    is billed for), at most the box's `slot_count` (its learners beyond that share the slots it holds:
    it must never wait for a slot that does not exist; None: not capped)."""
    if need > 0:
        return need
    slots = max(1, learners or 1)
    return min(slots, slot_count) if slot_count else slots


def box_short(cpus: int, memory: int, free_cpus: int | None, free_memory: int | None) -> str | None:
    """What of the box's cores and memory a run lacks to start ("cpus" or "memory"), None when both fit.
    `cpus`/`memory`: what the run holds (cores, bytes); free_*: what running runs leave (None: not
    counted). Every run waits on it, whatever its GPUs."""
    if free_cpus is not None and cpus > free_cpus:
        return "cpus"
    if free_memory is not None and memory > free_memory:
        return "memory"
    return None


def share_cap(run) -> int:
    """The per-GPU memory cap a sharing run is placed by (0: the run does not share a GPU)."""
    cap = getattr(run, "gpu_memory", None)
    return int(cap) if cap and getattr(run, "share", False) and run.gpus > 0 else 0


class _Gpu:
    """One GPU of the simulation: who holds it, and for sharing runs the memory left under their caps."""

    __slots__ = ("uuid", "gpu_type", "memory_total", "room", "holders", "shared")

    def __init__(self, uuid: str, memory_total: int | None) -> None:
        self.uuid, self.gpu_type, self.memory_total = uuid, None, memory_total
        self.room: int | None = memory_total
        self.holders = 0
        self.shared = False

    def take(self, cap: int) -> None:
        if cap:
            if not self.holders:
                self.shared, self.room = True, self.memory_total
            self.room = None if self.room is None else self.room - cap
        self.holders += 1

    def leave(self, cap: int) -> None:
        self.holders -= 1
        if self.holders <= 0:
            self.holders, self.shared, self.room = 0, False, self.memory_total
        elif cap and self.room is not None:
            self.room += cap


class _Gpus:
    """The GPUs the simulation places runs on, one by one (`devices` given), by the scheduler's rules:
    an exclusive run takes free GPUs only, a sharing run `sharing_candidates`."""

    def __init__(self, devices: Mapping[str, int | None]) -> None:
        self.by_uuid = {uuid: _Gpu(uuid, memory) for uuid, memory in devices.items()}

    def free(self) -> list[_Gpu]:
        return [g for g in self.by_uuid.values() if not g.holders]

    def pick(self, need: int, cap: int) -> list[_Gpu] | None:
        """The GPUs a run would take now (None: fewer than it needs are there)."""
        if cap:
            pool = sharing_candidates(cap, [g for g in self.by_uuid.values() if g.shared and g.holders], self.free())
        else:
            pool = self.free()
        return pool[:need] if len(pool) >= need else None

    def holding(self, uuids: Iterable[str], cap: int) -> list[_Gpu]:
        """A running run's GPUs (those of `uuids` this simulation knows), taken."""
        held = [self.by_uuid[u] for u in uuids if u in self.by_uuid]
        for g in held:
            g.take(cap)
        return held


class Eta(FrozenRecord):
    at: datetime
    bound: bool  # an upper bound (some run it waits on is only known by its max_duration)
    _fields = ("at", "bound")

    def __init__(self, at: datetime, bound: bool) -> None:
        _setattr(self, "at", at)
        _setattr(self, "bound", bound)


def queue_etas(
    runs: Sequence[Run],
    *,
    capacity: int,
    now: datetime,
    caps: Mapping[str, int] | None = None,
    order: Sequence[str] | None = None,
    model: DurationModel | None = None,
    devices: Mapping[str, int | None] | None = None,
    cpu_slots: int = 0,
    box: tuple[int | None, int | None] | None = None,
    gated: Collection[str] = (),
    best_effort: bool = False,
) -> dict[str, Eta]:
    """Estimated start of each QUEUED run among `runs` (which hold the billed runs too).

    capacity: devices the queue may hold at once (0: no limit). caps: `parallel` per experiment.
    order: QUEUED run ids in admission order (default: queue_position, then submit time).
    model: the durations learned (default: from the COMPLETED runs among `runs`).
    devices: the GPUs (uuid -> memory in bytes, None: unknown) where runs may share a GPU: runs are
    then placed on them one by one (a running run on those of its `assigned`), sharing runs by
    `sharing_candidates`; `capacity` is then only the tier's limit on the GPUs runs ask for (as the
    scheduler counts it: a sharing run's GPUs too). None: runs are counted against `capacity` alone,
    and a sharing run is counted as holding its GPUs whole.
    cpu_slots: the box's devices are this many cpu slots (a local box without GPUs; not with
    `devices`): every run holds the slots the scheduler hands it (`slots_held`: one per GPU it asks
    for, else one per learner), a GPU-less run too; `capacity` is then only the tier's limit on the
    GPUs runs ask for (tiers count GPUs, not slots).
    box: the cores and memory (bytes) runs may hold together (None in it: not counted): each run
    holds its `cpus_total` cores and `memory_total` bytes from admission to its end, and starts only
    once they fit (`box_short`, the scheduler's rule), whatever its GPUs.
    gated: QUEUED runs held back by a gate (a prerequisite not complete, a hold, a begin time): when
    they start is not known, so they get no ETA; admission does not see them, so nothing waits on them.
    best_effort: the queue policy lets a run that fits pass one that does not (`plan(best_effort=True)`):
    at each moment (now, then each time a run is expected to end) every waiting run that fits starts,
    in queue order, and the others keep their place: a run asking more than exists gets no ETA and
    holds back nobody. False (strict FIFO): nothing passes the first run that waits, nor one that
    never fits.
    """
    model = model or DurationModel.learn(runs)
    caps = caps or {}
    gpus = _Gpus(devices) if devices else None
    slot_count = 0 if gpus else cpu_slots

    def holds(r, need: int) -> tuple[int, int, int, int]:
        """What a run holds while it runs: (GPUs counted against capacity, cpu slots, cores, memory bytes)."""
        # slots_held caps a GPU-less run's slots at the box's; a run asking more GPUs than there are
        # slots never fits (plan admits it never), nor may the estimate pretend it does.
        slots = slots_held(r.gpus, getattr(r, "learners", 1), slot_count) if slot_count else 0
        return (need, slots, int(getattr(r, "cpus_total", 0) or 0), int(getattr(r, "memory_total", 0) or 0))

    pool = _Pool(model, gpus, now, seq=len(runs))
    for i, r in enumerate(runs):
        if not r.state.billed:
            continue
        exp = model.expected(r)
        start = r.admitted_at or now
        end = now + _FAR if exp is None else max(now, start + timedelta(seconds=exp.seconds))
        cap = share_cap(r) if gpus else 0
        held = tuple(gpus.holding(getattr(r, "assigned", None) or (), cap)) if gpus else ()
        pool.ends.append((end, i, holds(r, r.gpus), r.experiment, bool(exp and exp.bound), held, cap))
        if r.experiment:
            pool.active[r.experiment] = pool.active.get(r.experiment, 0) + 1
    heapq.heapify(pool.ends)
    box_cpus, box_memory = box if box else (None, None)
    held_now = [e[2] for e in pool.ends]
    pool.free = [capacity - sum(h[0] for h in held_now) if capacity else 1 << 30,
                 slot_count - sum(h[1] for h in held_now) if slot_count else 1 << 30,
                 None if box_cpus is None else box_cpus - sum(h[2] for h in held_now),
                 None if box_memory is None else box_memory - sum(h[3] for h in held_now)]
    queued = {r.id: r for r in runs if r.state == RunState.QUEUED}
    if order is None:
        order = [r.id for r in sorted(queued.values(), key=lambda r: (
            r.queue_position if r.queue_position is not None else 1 << 30, r.submitted_at, r.id))]
    if best_effort:
        return _best_effort(order, queued, gated, caps=caps, holds=holds, pool=pool)
    out: dict[str, Eta] = {}
    for rid in order:
        r = queued.get(rid)
        if r is None or rid in gated:
            continue
        # What it asks for whole, as plan admits it: a run asking more than the tier allows or the box
        # has never starts (plan waits on it: FIFO, nothing behind it either), and has no ETA.
        need = r.gpus
        cap = share_cap(r) if gpus else 0
        hold = holds(r, need)
        limit = caps.get(r.experiment) if r.experiment else None
        while (taken := pool.fits(need, hold, cap, r.experiment, limit)) is None and pool.ends:
            pool.end_next()
        if taken is None or pool.at - now >= _FAR / 2:
            break  # everything from here waits on a run with no expected end (or one that never fits)
        out[rid] = Eta(pool.at, pool.bound)
        pool.start(r, hold, cap, taken)
    return out


class _Pool:
    """What the queue's simulation holds: what is free (GPUs against the tier or capacity, cpu slots,
    cores, memory bytes: None where not counted), the GPUs' places, running runs per experiment, the
    expected ends of what runs, and the moment reached (`at`, `bound`: whether any end it waited on
    is only max_duration's bound). FIFO and best-effort start and end runs through it alike."""

    def __init__(self, model: DurationModel, gpus: _Gpus | None, now: datetime, seq: int) -> None:
        self.model, self.gpus, self.at, self.bound, self.seq = model, gpus, now, False, seq
        self.free: list = [1 << 30, 1 << 30, None, None]
        self.active: dict[str, int] = {}
        self.ends: list[tuple[datetime, int, tuple[int, int, int, int], str | None, bool, tuple[_Gpu, ...], int]] = []

    def fits(self, need: int, hold: tuple[int, int, int, int], cap: int, experiment: str | None,
             limit: int | None) -> list[_Gpu] | None:
        """The GPUs a run would take now ([] where none are placed one by one); None: it waits."""
        gpus, slots, cpus, memory = self.free
        if ((not need or gpus >= need) and slots >= hold[1]  # a GPU-less run: no tier (plan's rule)
                and box_short(hold[2], hold[3], cpus, memory) is None
                and not (limit and self.active.get(experiment, 0) >= limit)):
            return self.gpus.pick(need, cap) if self.gpus else []
        return None

    def start(self, r, hold: tuple[int, int, int, int], cap: int, taken: list[_Gpu]) -> None:
        """`r` starts at `at`, holding `hold` and the GPUs `taken`, until its expected end."""
        free = self.free
        free[0] -= hold[0]
        free[1] -= hold[1]
        if free[2] is not None:
            free[2] -= hold[2]
        if free[3] is not None:
            free[3] -= hold[3]
        for g in taken:
            g.take(cap)
        if r.experiment:
            self.active[r.experiment] = self.active.get(r.experiment, 0) + 1
        exp = self.model.expected(r)
        self.seq += 1
        end = self.at + (_FAR if exp is None else exp.delta)
        heapq.heappush(self.ends, (end, self.seq, hold, r.experiment, bool(exp and exp.bound), tuple(taken), cap))

    def end_next(self) -> None:
        """The next expected end: time moves on to it, and what that run held is free again."""
        t, _i, back, experiment, b, held, held_cap = heapq.heappop(self.ends)
        self.at = max(self.at, t)
        self.bound = self.bound or b
        free = self.free
        free[0] += back[0]
        free[1] += back[1]
        if free[2] is not None:
            free[2] += back[2]
        if free[3] is not None:
            free[3] += back[3]
        for g in held:
            g.leave(held_cap)
        if experiment:
            self.active[experiment] -= 1


def _best_effort(order, queued, gated, *, caps: Mapping[str, int], holds, pool: _Pool) -> dict[str, Eta]:
    """queue_etas under the best-effort policy: at now, then at each expected end, walk the waiting runs
    in queue order and start every one that fits then, as the scheduler's passes would.

    `plan` stops a pass early where nothing is free (no free or shared GPU; no cpu slot for a GPU-less
    run) or skips in SQL the runs asking more than is free: what it leaves then could only be a run
    holding no device (a GPU-less run on a GPU box), which the agent's next pass, half a second on,
    admits; so the model starts every run that fits. A run asking more than exists never starts and
    gets no ETA, and the runs behind it are estimated past it.

    Runs of one shape (what they hold, their sharing cap, their experiment where it is capped) fit or
    not alike, and within one moment what is free only shrinks: once one does not fit, the rest of its
    shape wait for the next end without being tried, so a sweep of 10,000 alike trials costs each end
    one try, not 10,000. A moment's walk stops where what is free is less than the least any waiting
    shape holds (GPUs, slots, cores or memory). A queue of thousands of unlike runs that still fit
    one dimension could cost each end a try per shape: past _BEST_EFFORT_TRIES tries the simulation
    stops, and the runs not yet placed get no ETA rather than a slow listing.
    """
    now = pool.at
    groups: dict[tuple, list] = {}  # shape -> its waiting runs in queue order
    for idx, rid in enumerate(order):
        r = queued.get(rid)
        if r is None or rid in gated:
            continue
        need = r.gpus
        cap = share_cap(r) if pool.gpus else 0
        limit = caps.get(r.experiment) if r.experiment else None
        key = (need, holds(r, need), cap, r.experiment if limit else None)
        groups.setdefault(key, []).append((idx, rid, r, limit))
    heads = dict.fromkeys(groups, 0)  # the first run of each shape still waiting
    pending = [(members[0][0], key) for key, members in groups.items()]  # each shape's first, in queue order
    heapq.heapify(pending)
    out: dict[str, Eta] = {}
    tries = 0

    def least() -> tuple[int, int, int, int]:
        """The least GPUs, slots, cores and memory any waiting shape holds (fewer free: none fits)."""
        held = [key[1] for _i, key in pending]
        return tuple(min(h[d] for h in held) for d in range(4)) if held else (0, 0, 0, 0)  # type: ignore[return-value]

    low, low_at = least(), len(pending)

    def walk() -> None:
        nonlocal tries, low, low_at
        waits = []  # shapes that do not fit now: tried again at the next end
        free = pool.free
        while pending:
            if ((low[0] > 0 and free[0] < low[0]) or (low[1] > 0 and free[1] < low[1])
                    or (low[2] > 0 and free[2] is not None and free[2] < low[2])
                    or (low[3] > 0 and free[3] is not None and free[3] < low[3])):
                break  # less is free than any waiting run holds
            tries += 1
            entry = heapq.heappop(pending)
            key = entry[1]
            need, hold, cap, _exp = key
            members = groups[key]
            _, rid, r, limit = members[heads[key]]
            taken = pool.fits(need, hold, cap, r.experiment, limit)
            if taken is None:
                waits.append(entry)  # this shape waits for the next end; other shapes are still tried
                continue
            out[rid] = Eta(pool.at, pool.bound)
            pool.start(r, hold, cap, taken)
            heads[key] += 1
            if heads[key] < len(members):
                heapq.heappush(pending, (members[heads[key]][0], key))
        for entry in waits:
            heapq.heappush(pending, entry)
        if len(pending) * 2 < low_at:  # half the shapes are done: the least they hold may have grown
            low, low_at = least(), len(pending)

    walk()
    ends = pool.ends
    while pending and ends and ends[0][0] - now < _FAR / 2:  # past that, what waits waits on an unknown end
        if tries > _BEST_EFFORT_TRIES:
            break
        at = max(pool.at, ends[0][0])
        while ends and ends[0][0] <= at:  # every run that ends at that moment
            pool.end_next()
        walk()
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


__all__ = ["DurationModel", "Eta", "Expected", "apply_etas", "box_short", "format_eta", "manifest_key",
           "queue_etas", "share_cap", "sharing_candidates", "slots_held"]
