"""An honest in-memory engine on a clock you drive: the scheduler that UI and CLI tests run against.

It keeps the same rules as the real engines: a priority-then-submit-time queue with real positions,
admission onto free devices within the tier, the lifecycle PENDING -> DOWNLOADING -> PROCESSING ->
STORING -> COMPLETED (or FAILED / HALTED) with an event per transition, metrics and log lines while
PROCESSING, cost from the event ledger, and a change cursor. Time moves only when the clock does
(`FakeClock.advance`), so a test can put a run in any state exactly.

Knobs a manifest can carry in `env` (the fake reads them, real engines pass them to the command):
`fake_duration` (seconds of PROCESSING), `fake_steps` (metric points), `fake_fail` (an error code,
e.g. C201, to fail with) and `fake_fail_state` (the state it fails in; default PROCESSING).
"""
from __future__ import annotations

import bisect
import copy
import heapq
import itertools
import math
import random
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ...cost import PriceTable, canonical_gpu_type, run_cost
from ...errors import BadInput, EngineError, NotFound
from ...manifest.model import Manifest
from ...runs import (
    ALLOWED_TRANSITIONS,
    ChangeSet,
    Device,
    ErrorCode,
    Inventory,
    MetricPoint,
    Run,
    RunEvent,
    RunState,
    SubmitRequest,
    iso,
)
from .clock import FakeClock, WallClock
from .manifests import load_manifest_any

S = RunState
DEFAULT_DURATIONS: dict[RunState, float] = {S.PENDING: 1.0, S.DOWNLOADING: 2.0, S.PROCESSING: 30.0, S.STORING: 2.0}
_NEXT = {S.PENDING: S.DOWNLOADING, S.DOWNLOADING: S.PROCESSING, S.STORING: S.COMPLETED}
GPU_NAMES = {
    "H100": "NVIDIA H100 80GB HBM3",
    "A100": "NVIDIA A100-SXM4-80GB",
    "V100": "Tesla V100-SXM2-16GB",
    "T4": "Tesla T4",
    "K80": "Tesla K80",
}
GPU_MEMORY = {"H100": 80, "A100": 80, "V100": 16, "T4": 16, "K80": 12}
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_DELETED_KEPT = 10_000


@dataclass
class PlantedFailure:
    """A failure the fake will stage: in `state`, `after` seconds in (None: when the state ends)."""

    code: str = ErrorCode.COMMAND_FAILED.value
    state: RunState = RunState.PROCESSING
    after: float | None = None
    message: str = ""


@dataclass
class _Rec:
    run: Run
    manifest_text: str
    durations: dict[RunState, float]
    steps: int
    command: str
    need: int
    key: tuple
    failure: PlantedFailure | None = None
    events: list[RunEvent] = field(default_factory=list)
    metric_points: list[MetricPoint] = field(default_factory=list)
    logs: list[list[str]] | None = None  # per learner; None: generated on first read (seeded runs)
    devices: list[int] = field(default_factory=list)
    gen: int = 0
    seq: int = 0
    step: int = 0
    sweep_metric: str | None = None
    cost_micro: int | None = 0
    cost_key: int = -1  # len(events) when cost_micro was computed


class FakeEngine:
    name = "fake"

    def __init__(
        self,
        clock: FakeClock | WallClock | None = None,
        *,
        devices: int = 1,
        gpu_type: str = "H100",
        tier_gpus: int = 0,
        prices: PriceTable | Mapping[str, Any] | None = None,
        minimum_seconds: int = 60,
        durations: Mapping[RunState | str, float] | None = None,
        steps: int = 10,
        priorities: Mapping[str, int] | None = None,
        queue_policy: str = "fifo",
        follow_step: float | None = None,
        seed: int = 0,
    ) -> None:
        self.clock = clock if clock is not None else FakeClock()
        self.gpu_type = canonical_gpu_type(gpu_type) or gpu_type
        self.cpu_only = self.gpu_type == "cpu"
        self.device_count = devices
        self.tier_gpus = tier_gpus
        if prices is None:
            prices = PriceTable.defaults()
        elif not isinstance(prices, PriceTable):
            prices = PriceTable.from_mapping(prices)
        self.prices = prices
        self.minimum_seconds = minimum_seconds
        self.durations = dict(DEFAULT_DURATIONS)
        for k, v in (durations or {}).items():
            self.durations[RunState(k)] = float(v)
        self.steps = steps
        self.priorities = {"high": 1000, "normal": 0, "low": -100, **(priorities or {})}
        self.queue_policy = queue_policy
        self.follow_step = follow_step
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._runs: dict[str, _Rec] = {}
        self._order: OrderedDict[str, None] = OrderedDict()  # run ids, least recently changed first
        self._seq = 0
        self._floor = 0  # cursors older than this lost deletions: they get a full change set
        self._deleted: list[tuple[int, str]] = []
        self._queue: list[str] = []
        self._queue_keys: list[tuple] = []
        self._held: list[str | None] = [None] * devices
        self._foreign: dict[int, tuple[int, ...]] = {}
        self._heap: list[tuple[datetime, int, str, int, str]] = []
        self._tiebreak = itertools.count()
        self._submitted = itertools.count()
        self._planted: list[PlantedFailure] = []
        self._closed = False
        subscribe = getattr(self.clock, "subscribe", None)
        if subscribe:
            subscribe(self._on_clock)

    # -- construction from a profile ------------------------------------------------------------
    @classmethod
    def from_backend(cls, backend: Any) -> FakeEngine:
        """A fake on real time for the `fake` scheduler: the profile's tier, the config's prices
        and priorities. `DLAAS_FAKE_GPUS` (e.g. `4xH100`, `0` for cpu slots) and `DLAAS_FAKE_SEED`
        (a number of runs to start with) shape it for demos and CLI tests."""
        import os

        config, profile = backend.config, backend.profile
        spec = os.environ.get("DLAAS_FAKE_GPUS", "2xH100").lower()
        count_s, _, kind = spec.partition("x")
        try:
            count = int(count_s)
        except ValueError:
            raise BadInput(f"DLAAS_FAKE_GPUS={spec!r}: expected COUNTxTYPE, e.g. 4xH100") from None
        gpu_type = kind.upper() if count and kind else "cpu"
        engine = cls(
            WallClock(),
            devices=count or profile.cpu_slots,
            gpu_type=gpu_type,
            tier_gpus=config.tier_gpus(profile),
            prices=PriceTable.from_config(config),
            minimum_seconds=config.billing.minimum_seconds,
            priorities=config.all_priorities(),
            queue_policy=profile.queue_policy,
        )
        n = int(os.environ.get("DLAAS_FAKE_SEED", "0") or 0)
        if n:
            engine.seed(n)
        return engine

    # -- test helpers ---------------------------------------------------------------------------
    def fail_next(
        self,
        code: str | ErrorCode = ErrorCode.COMMAND_FAILED,
        *,
        state: RunState | str = RunState.PROCESSING,
        after: float | None = None,
        message: str = "",
        count: int = 1,
    ) -> None:
        """The next `count` submitted runs fail with `code` in `state`."""
        for _ in range(count):
            self._planted.append(PlantedFailure(str(ErrorCode(code).value), RunState(state), after, message))

    def fail_run(self, run_id: str, code: str | ErrorCode = ErrorCode.RUN_LOST, message: str = "") -> Run:
        """Fail an active run now (a vanished process, a lost node)."""
        with self._lock:
            self._tick()
            rec = self._rec(run_id)
            if rec.run.state.terminal:
                raise BadInput(f"run {run_id} is already {rec.run.state.value}")
            code = ErrorCode(code)
            self._fail(rec, self.clock.now(), code.value, message or _describe(code))
            return self._snapshot(rec)

    def preempt(self, run_id: str) -> Run:
        """Send a billed run back to QUEUED (an eviction); billing pauses until it is admitted again."""
        with self._lock:
            self._tick()
            rec = self._rec(run_id)
            if not rec.run.state.billed:
                raise BadInput(f"run {run_id} is {rec.run.state.value}, not running")
            now = self.clock.now()
            self._transition(rec, S.QUEUED, now, "preempted")
            self._admit(now)
            return self._snapshot(rec)

    def set_foreign(self, index: int, pids: Sequence[int] = (4242,)) -> None:
        """Mark a device as used by a process this engine did not start (it is not handed out)."""
        with self._lock:
            if pids:
                self._foreign[index] = tuple(pids)
            else:
                self._foreign.pop(index, None)
                self._admit(self.clock.now())

    def seed(self, n_runs: int, **kwargs: Any) -> list[str]:
        """Create `n_runs` runs in mixed states, deterministically (see seeding.py)."""
        from .seeding import seed_runs

        with self._lock:
            return seed_runs(self, n_runs, **kwargs)

    # -- Engine protocol --------------------------------------------------------------------------
    def submit(self, request: SubmitRequest) -> list[Run]:
        loaded = [load_manifest_any(Path(p)) for p in request.manifests]  # all or nothing
        runs = []
        for manifest, text in loaded:
            runs.append(
                self.submit_manifest(
                    manifest, text=text, name=request.name, experiment=request.experiment,
                    dry_run=request.dry_run,
                )
            )
        return runs

    def submit_manifest(
        self,
        manifest: Manifest | Mapping[str, Any],
        *,
        text: str | None = None,
        name: str | None = None,
        experiment: str | None = None,
        params: Mapping[str, Any] | None = None,
        duration: float | None = None,
        failure: PlantedFailure | None = None,
        dry_run: bool = False,
    ) -> Run:
        """Submit one manifest (a `Manifest`, or a dict in its shape); returns the QUEUED run."""
        if not isinstance(manifest, Manifest):
            manifest, text = load_manifest_any(manifest)
        env = {k: v for k, v in manifest.env.items() if isinstance(v, str)}
        need = manifest.total_gpus
        self._check_fits(manifest.name, need)
        if manifest.priority not in self.priorities:
            raise BadInput(
                f"unknown priority {manifest.priority!r}; known: {', '.join(sorted(self.priorities))}",
                code=ErrorCode.BAD_MANIFEST.value,
            )
        durations = dict(self.durations)
        if duration is not None or "fake_duration" in env:
            durations[S.PROCESSING] = float(duration if duration is not None else env["fake_duration"])
        if failure is None and "fake_fail" in env:
            failure = PlantedFailure(
                str(ErrorCode(env["fake_fail"]).value), RunState(env.get("fake_fail_state", "PROCESSING"))
            )
        with self._lock:
            self._tick()
            if failure is None and self._planted and not dry_run:
                failure = self._planted.pop(0)
            now = self.clock.now()
            order = next(self._submitted)
            run_id = self._new_id()
            sweep_metric = manifest.sweep.metric if manifest.sweep and manifest.sweep.metric else None
            gpu_type = "cpu" if (self.cpu_only or need == 0) else (
                canonical_gpu_type(manifest.gpu_type) or manifest.gpu_type or self.gpu_type
            )
            run = Run(
                id=run_id,
                name=name or manifest.name,
                state=S.QUEUED,
                submitted_at=now,
                experiment=experiment,
                gpus=need,
                gpu_type=gpu_type,
                learners=manifest.learners,
                priority=manifest.priority,
                params=dict(params or {}),
                results_bucket=manifest.data_store.training_results.container,
                metric_goal=sweep_metric.goal if sweep_metric else "minimize",
                updated_at=now,
            )
            rec = _Rec(
                run=run,
                manifest_text=text if text is not None else manifest.model_dump_json(indent=2),
                durations=durations,
                steps=int(env.get("fake_steps", self.steps)),
                command=manifest.framework.command,
                need=need,
                key=(-self.priorities[manifest.priority], now, order),
                failure=failure,
                logs=[[] for _ in range(manifest.learners)],
                sweep_metric=sweep_metric.name if sweep_metric else None,
            )
            if dry_run:
                return self._snapshot(rec)
            self._runs[run_id] = rec
            rec.events.append(RunEvent(run_id, now, S.QUEUED, "submitted"))
            self._log(rec, f"[dlaas] {run_id} submitted: {need} device(s), priority {manifest.priority}")
            self._enqueue(rec)
            self._touch(rec)
            self._admit(now)
            return self._snapshot(rec)

    def list_runs(
        self,
        *,
        states: Sequence[RunState] | None = None,
        experiment: str | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        """Newest first."""
        with self._lock:
            self._tick()
            wanted = set(states) if states else None
            out = []
            for rec in sorted(self._runs.values(), key=lambda r: r.key[1:], reverse=True):
                if wanted and rec.run.state not in wanted:
                    continue
                if experiment is not None and rec.run.experiment != experiment:
                    continue
                out.append(self._snapshot(rec))
                if limit is not None and len(out) >= limit:
                    break
            return out

    def get_run(self, run_id: str) -> Run:
        with self._lock:
            self._tick()
            return self._snapshot(self._rec(run_id))

    def changes(self, cursor: int | None = None) -> ChangeSet:
        with self._lock:
            self._tick()
            if cursor is None or cursor > self._seq or cursor < self._floor:
                runs = [self._snapshot(r) for r in self._runs.values()]
                return ChangeSet(runs=runs, deleted=[], cursor=self._seq, full=True)
            changed = []
            for run_id in reversed(self._order):
                rec = self._runs[run_id]
                if rec.seq <= cursor:
                    break
                changed.append(self._snapshot(rec))
            changed.reverse()
            i = bisect.bisect_right(self._deleted, (cursor, "\uffff"))
            return ChangeSet(runs=changed, deleted=[rid for _, rid in self._deleted[i:]], cursor=self._seq)

    def events(self, run_id: str) -> list[RunEvent]:
        with self._lock:
            self._tick()
            return list(self._rec(run_id).events)

    def metrics(self, run_id: str) -> list[MetricPoint]:
        with self._lock:
            self._tick()
            return list(self._rec(run_id).metric_points)

    def manifest_text(self, run_id: str) -> str:
        with self._lock:
            return self._rec(run_id).manifest_text

    def logs(
        self, run_id: str, *, learner: int = 0, tail: int | None = None, follow: bool = False
    ) -> Iterator[str]:
        with self._lock:
            self._tick()
            rec = self._rec(run_id)
            if not 0 <= learner < rec.run.learners:
                raise BadInput(f"run {run_id} has {rec.run.learners} learner(s); no learner {learner}")
            lines = self._lines(rec, learner)
            start = max(0, len(lines) - tail) if tail is not None else 0
        return self._follow(run_id, learner, start, follow)

    def halt(self, run_id: str) -> Run:
        """Halting a finished run changes nothing and returns it as it is."""
        with self._lock:
            self._tick()
            rec = self._rec(run_id)
            if not rec.run.state.terminal:
                now = self.clock.now()
                self._log(rec, "[dlaas] halt requested: stopping the command, storing logs")
                self._transition(rec, S.HALTED, now, "halted by the user")
                self._admit(now)
            return self._snapshot(rec)

    def delete(self, run_id: str) -> None:
        with self._lock:
            self._tick()
            rec = self._rec(run_id)
            if not rec.run.state.terminal:
                raise BadInput(f"run {run_id} is {rec.run.state.value}: halt it before deleting it")
            del self._runs[run_id]
            self._order.pop(run_id, None)
            self._seq += 1
            self._deleted.append((self._seq, run_id))
            if len(self._deleted) > _DELETED_KEPT:
                cut = len(self._deleted) - _DELETED_KEPT
                self._floor = self._deleted[cut - 1][0]
                del self._deleted[:cut]
            self._cond.notify_all()

    def inventory(self) -> Inventory:
        with self._lock:
            self._tick()
            devices = []
            for i in range(self.device_count):
                holder = self._held[i]
                foreign = self._foreign.get(i, ())
                if self.cpu_only:
                    devices.append(Device(i, f"cpu:{i}", f"cpu slot {i}", "cpu", held_by=holder))
                    continue
                mem = GPU_MEMORY.get(self.gpu_type, 16) * 1024**3
                busy = bool(holder or foreign)
                devices.append(
                    Device(
                        index=i,
                        uuid=f"GPU-fa4e0000-0000-4000-8000-{i:012d}",
                        name=GPU_NAMES.get(self.gpu_type, f"NVIDIA {self.gpu_type}"),
                        gpu_type=self.gpu_type,
                        memory_total=mem,
                        memory_used=mem * 3 // 4 if busy else 0,
                        utilization=87 if busy else 0,
                        temperature=64 if busy else 33,
                        power_watts=520.0 if busy else 70.0,
                        processes=tuple(foreign) or ((10_000 + i,) if holder else ()),
                        held_by=holder,
                        busy_foreign=bool(foreign),
                    )
                )
            message = (
                f"no GPU: {self.device_count} cpu slot(s) stand in (fake engine)"
                if self.cpu_only
                else f"fake engine: {self.device_count} simulated {self.gpu_type}"
            )
            return Inventory(tuple(devices), not self.cpu_only, message, "fake", self.tier_gpus)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cond.notify_all()
        unsubscribe = getattr(self.clock, "unsubscribe", None)
        if unsubscribe:
            unsubscribe(self._on_clock)

    # -- internals --------------------------------------------------------------------------------
    def _rec(self, run_id: str) -> _Rec:
        rec = self._runs.get(run_id)
        if rec is None:
            raise NotFound(f"no run {run_id!r}")
        return rec

    def _new_id(self) -> str:
        while True:
            run_id = "training-" + "".join(self._rng.choice(_ID_ALPHABET) for _ in range(8))
            if run_id not in self._runs:
                return run_id

    def _check_fits(self, name: str, need: int) -> None:
        if need > self.device_count:
            raise BadInput(
                f"{name}: needs {need} device(s) but the machine has {self.device_count}",
                code=ErrorCode.NEVER_FITS.value,
            )
        if self.tier_gpus and need > self.tier_gpus:
            raise BadInput(
                f"{name}: needs {need} device(s) but the tier allows {self.tier_gpus} at a time",
                code=ErrorCode.NEVER_FITS.value,
            )

    def _on_clock(self) -> None:
        with self._lock:
            self._tick()

    def _touch(self, rec: _Rec) -> None:
        self._seq += 1
        rec.seq = self._seq
        rec.run.updated_at = self.clock.now()
        self._order[rec.run.id] = None
        self._order.move_to_end(rec.run.id)
        self._cond.notify_all()

    def _log(self, rec: _Rec, line: str, learner: int | None = None) -> None:
        if rec.logs is None:
            return
        targets = range(len(rec.logs)) if learner is None else (learner,)
        for i in targets:
            rec.logs[i].append(line)

    def _lines(self, rec: _Rec, learner: int) -> list[str]:
        if rec.logs is None:
            from .seeding import seeded_logs

            rec.logs = seeded_logs(rec)
        return rec.logs[learner]

    def _schedule(self, rec: _Rec, due: datetime, kind: str) -> None:
        heapq.heappush(self._heap, (due, next(self._tiebreak), rec.run.id, rec.gen, kind))

    def _tick(self) -> None:
        """Fire everything due up to now, in time order, each at its own timestamp."""
        now = self.clock.now()
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, _, run_id, gen, kind = heapq.heappop(heap)
            rec = self._runs.get(run_id)
            if rec is None or rec.gen != gen:
                continue  # the run moved on (halted, failed, deleted) since this was planned
            self._fire(rec, due, kind)

    def _fire(self, rec: _Rec, at: datetime, kind: str) -> None:
        state = rec.run.state
        fail = rec.failure if rec.failure and rec.failure.state == state else None
        if kind == "fail" or (kind == "end" and fail and fail.after is None):
            self._fail(rec, at, fail.code if fail else ErrorCode.COMMAND_FAILED.value, fail.message if fail else "")
            return
        if kind == "step":
            rec.step += 1
            self._emit_step(rec, at)
            if rec.step < rec.steps:
                self._schedule(rec, at + self._step_len(rec), "step")
                return
            if fail and fail.after is None:
                self._fail(rec, at, fail.code, fail.message)
                return
            self._log(rec, "[dlaas] command exited 0")
            self._transition(rec, S.STORING, at)
            return
        self._transition(rec, _NEXT[state], at)
        if _NEXT[state].terminal:
            self._admit(at)

    def _step_len(self, rec: _Rec) -> timedelta:
        return timedelta(seconds=rec.durations[S.PROCESSING] / max(1, rec.steps))

    def _fail(self, rec: _Rec, at: datetime, code: str, message: str) -> None:
        code_enum = ErrorCode(code)
        message = message or _describe(code_enum)
        self._log(rec, f"[dlaas] {code}: {message}")
        self._transition(rec, S.FAILED, at, message, code)
        self._admit(at)

    def _transition(
        self, rec: _Rec, state: RunState, at: datetime, message: str = "", error_code: str | None = None
    ) -> None:
        run = rec.run
        if state not in ALLOWED_TRANSITIONS[run.state]:
            raise EngineError(f"run {run.id}: {run.state.value} -> {state.value} is not a valid transition")
        if run.state == S.QUEUED:
            self._dequeue(rec)
        run.state = state
        rec.gen += 1
        rec.events.append(RunEvent(run.id, at, state, message, error_code))
        if state == S.PENDING:
            run.admitted_at = at
            run.queue_position = None
            self._log(rec, f"[dlaas] devices assigned: {', '.join(run.assigned) or 'none (no GPUs asked)'}")
        elif state == S.DOWNLOADING:
            self._log(rec, "[dlaas] downloading model code and data")
        elif state == S.PROCESSING:
            run.started_at = at
            rec.step = 0
            self._log(rec, f"[dlaas] running: {rec.command}")
        elif state == S.STORING:
            self._log(rec, f"[dlaas] storing results to {run.results_bucket}/{run.id}/")
        if state == S.QUEUED or state.terminal:
            self._release(rec)
        if state == S.QUEUED:
            self._enqueue(rec)
        if state.terminal:
            run.finished_at = at
            run.error_code = error_code
            run.message = message
            self._log(rec, f"[dlaas] run {state.value}")
        if state == S.PROCESSING:
            self._schedule(rec, at + self._step_len(rec), "step")
        elif state in _NEXT:
            self._schedule(rec, at + timedelta(seconds=rec.durations[state]), "end")
        fail = rec.failure
        if fail and fail.state == state and fail.after is not None:
            self._schedule(rec, at + timedelta(seconds=fail.after), "fail")
        self._touch(rec)

    def _emit_step(self, rec: _Rec, at: datetime) -> None:
        loss, acc = synthetic_metrics(rec.run.id, rec.step, rec.steps)
        stamp = iso(at)
        self._log(rec, f"{stamp} epoch={rec.step} loss={loss:.6f} accuracy={acc:.6f}", learner=0)
        for learner in range(1, rec.run.learners):
            self._log(rec, f"{stamp} rank={learner} epoch={rec.step} waiting for all-reduce", learner=learner)
        for name, value in (("loss", loss), ("accuracy", acc)):
            rec.metric_points.append(MetricPoint(name, value, float(rec.step), at))
            rec.run.metrics[name] = value
        rec.run.primary_metric = _primary(rec.run.metrics, rec.sweep_metric)
        self._touch(rec)

    # -- the queue ------------------------------------------------------------------------------
    def _enqueue(self, rec: _Rec) -> None:
        i = bisect.bisect_left(self._queue_keys, rec.key)
        self._queue_keys.insert(i, rec.key)
        self._queue.insert(i, rec.run.id)
        self._renumber(i)

    def _dequeue(self, rec: _Rec) -> None:
        i = bisect.bisect_left(self._queue_keys, rec.key)
        if i < len(self._queue) and self._queue[i] == rec.run.id:
            del self._queue[i], self._queue_keys[i]
            rec.run.queue_position = None
            self._renumber(i)

    def _renumber(self, start: int = 0) -> None:
        for pos in range(start, len(self._queue)):
            rec = self._runs[self._queue[pos]]
            if rec.run.queue_position != pos + 1:
                rec.run.queue_position = pos + 1
                self._touch(rec)

    def _free_devices(self) -> list[int]:
        return [i for i, h in enumerate(self._held) if h is None and i not in self._foreign]

    def _admit(self, at: datetime) -> None:
        """Admit from the head of the queue while runs fit (best-effort: smaller ones may pass)."""
        free = self._free_devices()
        in_use = sum(1 for h in self._held if h is not None)
        i = 0
        while i < len(self._queue):
            rec = self._runs[self._queue[i]]
            fits = rec.need <= len(free) and (not self.tier_gpus or in_use + rec.need <= self.tier_gpus)
            if fits:
                taken, free = free[: rec.need], free[rec.need:]
                in_use += rec.need
                rec.devices = taken
                for d in taken:
                    self._held[d] = rec.run.id
                rec.run.assigned = [self._device_label(d) for d in taken]
                self._transition(rec, S.PENDING, at)
                continue
            if self.queue_policy != "best-effort":
                break
            i += 1

    def _release(self, rec: _Rec) -> None:
        for d in rec.devices:
            if self._held[d] == rec.run.id:
                self._held[d] = None
        rec.devices = []

    def _device_label(self, index: int) -> str:
        if self.cpu_only:
            return f"cpu:{index}"
        return f"GPU-{index} {GPU_NAMES.get(self.gpu_type, self.gpu_type)}"

    # -- reading ------------------------------------------------------------------------------
    def _snapshot(self, rec: _Rec) -> Run:
        run = copy.copy(rec.run)
        run.assigned = list(rec.run.assigned)
        run.metrics = dict(rec.run.metrics)
        run.params = dict(rec.run.params)
        run.cost_micro_usd = self._cost_micro(rec)
        return run

    def _cost_micro(self, rec: _Rec) -> int | None:
        # Cost moves with time only while billed; otherwise it changes only with a new event.
        if rec.run.state.billed or rec.cost_key != len(rec.events):
            cost = run_cost(
                rec.events, rec.run.gpu_type, max(1, rec.need), self.prices, self.clock.now(),
                self.minimum_seconds,
            )
            rec.cost_micro, rec.cost_key = cost.total_micro, len(rec.events)
        return rec.cost_micro

    def cost(self, run_id: str):
        """The cost breakdown (for the UI's Cost tab)."""
        with self._lock:
            self._tick()
            rec = self._rec(run_id)
            return run_cost(
                rec.events, rec.run.gpu_type, max(1, rec.need), self.prices, self.clock.now(),
                self.minimum_seconds,
            )

    def _follow(self, run_id: str, learner: int, index: int, follow: bool) -> Iterator[str]:
        while True:
            with self._lock:
                self._tick()
                rec = self._runs.get(run_id)
                if rec is None:
                    return
                lines = self._lines(rec, learner)
                new, index = lines[index:], len(lines)
                done = rec.run.state.terminal or not follow or self._closed
                if not new and not done and self.follow_step is None:
                    self._cond.wait(timeout=0.05)
            yield from new
            if done:
                return
            if not new and self.follow_step is not None:
                advance = getattr(self.clock, "advance", None)
                if advance:
                    advance(self.follow_step)


def synthetic_metrics(run_id: str, step: int, steps: int) -> tuple[float, float]:
    """A falling loss and rising accuracy, the same for the same run and step."""
    h = zlib.crc32(run_id.encode())
    base = 1.5 + (h % 1000) / 1000
    noise = ((zlib.crc32(f"{run_id}:{step}".encode()) % 1000) / 1000 - 0.5) * 0.02
    frac = step / max(1, steps)
    loss = base * math.exp(-2.5 * frac) + 0.05 + noise
    accuracy = min(0.999, max(0.0, 1.0 - loss / (base + 0.1)))
    return round(loss, 6), round(accuracy, 6)


def _primary(metrics: Mapping[str, float], sweep_metric: str | None) -> str | None:
    try:
        from ...metrics import primary_metric
    except ImportError:  # pragma: no cover - before the metrics module exists
        primary_metric = None
    if primary_metric is not None:
        return primary_metric(list(metrics), sweep_metric)
    if sweep_metric:
        return sweep_metric
    return "loss" if "loss" in metrics else next(iter(metrics), None)


def _describe(code: ErrorCode) -> str:
    from ...runs import ERROR_DESCRIPTIONS

    return ERROR_DESCRIPTIONS.get(code, code.value)
