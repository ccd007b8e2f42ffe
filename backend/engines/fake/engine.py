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
import itertools
import random
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ...cost import PriceTable, canonical_gpu_type
from ...errors import BadInput, NotFound
from ...manifest.model import Manifest
from ...runs import (
    RESUMABLE_STATES,
    RUN_ID_ALPHABET,
    ChangeSet,
    Device,
    ErrorCode,
    Inventory,
    MetricPoint,
    Run,
    RunEvent,
    RunState,
    SubmitRequest,
    attempt_of,
    resolve_priority,
    resume_message,
)
from .clock import DrivenClock, FakeClock, WallClock
from .controls import Controls
from .lifecycle import DEFAULT_DURATIONS, GPU_MEMORY, GPU_NAMES, Lifecycle
from .manifests import expand_sweep, load_manifest_any
from .reading import Reading
from .record import PlantedFailure, RunRecord
from .seeding import Seeding

_DELETED_KEPT = 10_000


class FakeEngine(Controls, Seeding, Reading, Lifecycle):
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
        profile_name: str = "default",
    ) -> None:
        self.profile_name = profile_name  # named in a "tier limit" wait reason
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
        self._runs: dict[str, RunRecord] = {}
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
        self._last_submission: list[str] = []  # run ids (`submit --after @`)
        self._closed = False
        self._eta_cache: tuple[tuple[int, datetime], dict] | None = None
        self._model_cache: tuple[int, Any] | None = None  # (seq, DurationModel) learned from completed runs
        if isinstance(self.clock, DrivenClock):
            self.clock.subscribe(self._on_clock)

    # -- construction from a profile ------------------------------------------------------------
    @classmethod
    def from_backend(cls, backend: Any) -> FakeEngine:
        """A fake on real time for the `fake` scheduler: the profile's tier, the config's prices
        and priorities. `DLAAS_FAKE_DEVICES` (e.g. `4xH100`, `0` for cpu slots) and `DLAAS_FAKE_SEED`
        (a number of runs to start with) shape it for demos and CLI tests."""
        import os

        config, profile = backend.config, backend.profile
        spec = os.environ.get("DLAAS_FAKE_DEVICES", "2xH100").lower()
        count_s, _, kind = spec.partition("x")
        try:
            count = int(count_s)
        except ValueError:
            raise BadInput(f"DLAAS_FAKE_DEVICES={spec!r}: expected COUNTxTYPE, e.g. 4xH100") from None
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
            profile_name=profile.name,
        )
        n = int(os.environ.get("DLAAS_FAKE_SEED", "0") or 0)
        if n:
            engine.seed(n)
        return engine

    # -- Engine protocol --------------------------------------------------------------------------
    def submit(self, request: SubmitRequest) -> list[Run]:
        """Every manifest (a sweep gives one run per trial), all checked before any is queued."""
        planned = []
        after: list[str] = []
        for ref in request.after:  # "@": the last submission, as on the local engine
            if ref == "@" and not self._last_submission:
                raise BadInput("--after @: nothing has been submitted from this home yet")
            after += self._last_submission if ref == "@" else [ref]
        for path in request.manifests:
            manifest, text = load_manifest_any(Path(path))
            self._check_fits(manifest.name, manifest.total_gpus)
            trials = expand_sweep(manifest)
            if trials is None:
                planned.append((manifest, text, request.name, request.experiment, {}, None))
                continue
            base = request.name or manifest.name
            experiment = request.experiment or f"{manifest.name}-{self._new_id()[-6:]}"
            metric = manifest.sweep.metric if manifest.sweep else None
            for trial in trials:
                planned.append(
                    (trial.manifest, text, f"{base}-{trial.index}", experiment, trial.params, metric)
                )
        runs = [
            self.submit_manifest(
                m, text=text, name=name, experiment=exp, params=params, sweep_metric=metric,
                dry_run=request.dry_run, after=after,
            )
            for m, text, name, exp, params, metric in planned
        ]
        if not request.dry_run:
            self._last_submission = [r.id for r in runs]
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
        sweep_metric: Any = None,
        dry_run: bool = False,
        after: Sequence[str] = (),
    ) -> Run:
        """Submit one manifest (a `Manifest`, or a dict in its shape); returns the QUEUED run.
        It starts once the runs in its `depends_on` and `after` have completed."""
        if not isinstance(manifest, Manifest):
            manifest, text = load_manifest_any(manifest)
        depends_on = list(dict.fromkeys([*manifest.depends_on, *after]))
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
            durations[RunState.PROCESSING] = float(duration if duration is not None else env["fake_duration"])
        if failure is None and "fake_fail" in env:
            failure = PlantedFailure(
                str(ErrorCode(env["fake_fail"]).value), RunState(env.get("fake_fail_state", "PROCESSING"))
            )
        with self._lock:
            self._tick()
            for rid in depends_on:  # checked as the local engine checks them, in its words
                where = "depends_on" if rid in manifest.depends_on else "--after"
                dep = self._runs.get(rid)
                if dep is None:
                    raise BadInput(f"{where}: no run {rid!r}", code=ErrorCode.BAD_MANIFEST.value)
                if dep.run.state in (RunState.FAILED, RunState.HALTED):
                    code = dep.run.error_code
                    raise BadInput(f"{where}: {rid} already ended {dep.run.state.value}"
                                   f"{f' ({code})' if code else ''}; this run could never start",
                                   code=ErrorCode.DEPENDENCY_FAILED.value)
            if failure is None and self._planted and not dry_run:
                failure = self._planted.pop(0)
            now = self.clock.now()
            order = next(self._submitted)
            run_id = self._new_id()
            if sweep_metric is None and manifest.sweep and manifest.sweep.metric:
                sweep_metric = manifest.sweep.metric
            gpu_type = "cpu" if (self.cpu_only or need == 0) else (
                canonical_gpu_type(manifest.gpu_type) or manifest.gpu_type or self.gpu_type
            )
            run = Run(
                id=run_id,
                name=name or manifest.name,
                state=RunState.QUEUED,
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
                manifest_name=manifest.name,
                max_duration_s=manifest.max_duration_seconds,
                depends_on=depends_on,
            )
            rec = RunRecord(
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
            rec.events.append(RunEvent(run_id, now, RunState.QUEUED, "submitted"))
            held = f"{manifest.learners} cpu slot(s)" if need == 0 and self.cpu_only else f"{need} device(s)"
            self._log(rec, f"[dlaas] {run_id} submitted: {held}, priority {manifest.priority}")
            self._enqueue(rec)
            self._touch(rec)
            # As a real engine's submit: the run is recorded QUEUED; admission follows (here at once).
            queued = self._snapshot(rec)
            self._admit(now)
            return queued

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
            return list(self._points(self._rec(run_id)))

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
                self._transition(rec, RunState.HALTED, now, "halted by the user")
                self._admit(now)
            return self._snapshot(rec)

    def resume(self, run_id: str) -> Run:
        """A HALTED or FAILED run back to QUEUED as its next attempt (a planted failure stays: the
        same command fails the same way again)."""
        with self._lock:
            self._tick()
            rec = self._rec(run_id)
            run = rec.run
            if run.state not in RESUMABLE_STATES:
                raise BadInput(f"{run_id} is {run.state.value}: only a HALTED or FAILED run can be resumed")
            now = self.clock.now()
            attempt = attempt_of(rec.events) + 1
            message = resume_message(attempt)
            run.state = RunState.QUEUED
            run.finished_at = None
            run.error_code = None
            run.message = message
            rec.gen += 1
            rec.events.append(RunEvent(run.id, now, RunState.QUEUED, message))
            self._log(rec, f"[dlaas] attempt {attempt}: resumed, checkpoints kept")
            self._enqueue(rec)
            self._touch(rec)
            self._admit(now)
            return self._snapshot(rec)

    def set_priority(self, run_id: str, priority: str) -> Run:
        """Change a queued run's priority (a name from the priorities or a whole number), as the
        local engine does: its place in the queue and every position follow at once; an event says so."""
        with self._lock:
            self._tick()
            rec = self._rec(run_id)
            run = rec.run
            if run.state is not RunState.QUEUED:
                raise BadInput(f"{run_id}: run is {run.state.value}; only a queued run's priority can be changed")
            name, value = resolve_priority(self.priorities, priority)
            old_value = -rec.key[0]
            if (run.priority, old_value) != (name, value):
                now = self.clock.now()
                self._dequeue(rec)
                rec.key = (-value, *rec.key[1:])
                old, run.priority = run.priority, name
                rec.events.append(RunEvent(run_id, now, None,
                                           f"priority changed from {old} ({old_value}) to {name} ({value})"))
                self._enqueue(rec)
                self._touch(rec)
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
        if isinstance(self.clock, DrivenClock):
            self.clock.unsubscribe(self._on_clock)

    # -- internals --------------------------------------------------------------------------------
    def _rec(self, run_id: str) -> RunRecord:
        rec = self._runs.get(run_id)
        if rec is None:
            raise NotFound(f"no run {run_id!r}")
        return rec

    def _new_id(self) -> str:
        while True:
            run_id = "training-" + "".join(self._rng.choices(RUN_ID_ALPHABET, k=8))
            if run_id not in self._runs:
                return run_id

    def check_fits(self, manifest: Manifest) -> None:
        """C104 (BadInput) when the manifest asks for more devices than this engine could ever give."""
        self._check_fits(manifest.name, manifest.total_gpus)

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
