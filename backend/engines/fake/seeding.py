"""Many runs in mixed states at once, deterministically, for UI tests and demos (10,000 in well
under a second). Each seeded run has a ledger that obeys the lifecycle, so cost, events and
queue positions read the same as for a run that got there by itself."""
from __future__ import annotations

import random
from datetime import timedelta

from ...runs import ERROR_DESCRIPTIONS, ErrorCode, MetricPoint, Run, RunEvent, RunState, iso
from .record import RunRecord, synthetic_metrics

_LIFECYCLE = (RunState.PENDING, RunState.DOWNLOADING, RunState.PROCESSING, RunState.STORING)
_MIX = (
    (RunState.COMPLETED, 45), (RunState.QUEUED, 28), (RunState.FAILED, 9), (RunState.HALTED, 5),
    (RunState.PROCESSING, 7), (RunState.PENDING, 2), (RunState.DOWNLOADING, 2), (RunState.STORING, 2),
)
_FAIL_CODES = (ErrorCode.COMMAND_FAILED, ErrorCode.OUT_OF_MEMORY, ErrorCode.MAX_DURATION,
               ErrorCode.RUN_LOST, ErrorCode.LOAD_FAILED)
_MANIFEST = """name: {name}
gpus: {gpus}
data_stores:
  - id: store
    type: local
    training_data: {{container: dlaas-samples, prefix: digits}}
    training_results: {{container: results}}
framework:
  name: pytorch
  version: "2.5"
  command: python train.py --lr {lr}
"""


class Seeding:
    """Mixed into FakeEngine (after Lifecycle, whose queue and devices it fills); runs under its lock."""

    def seed(
        self,
        n_runs: int,
        *,
        seed: int = 0,
        experiment_size: int = 0,
        spacing: float = 30.0,
        states: dict[RunState, int] | None = None,
    ) -> list[str]:
        """Create `n_runs` runs in mixed states, deterministically, spread over the past
        `n_runs * spacing` seconds; returns their ids.

        `states` weights the mix ({RunState: weight}); active runs beyond the free devices queue
        instead, and the queue is admitted as usual at the end. `experiment_size` > 0 groups
        consecutive runs into experiments of that size with swept `lr` parameters.
        """
        with self._lock:
            return self._seed_runs(n_runs, seed, experiment_size, spacing, states)

    def _seed_runs(self, n_runs: int, seed: int, experiment_size: int, spacing: float,
                   states: dict[RunState, int] | None) -> list[str]:
        rng = random.Random(seed)
        mix = list((states or dict(_MIX)).items())
        choices, weights = [s for s, _ in mix], [w for _, w in mix]
        picks = rng.choices(choices, weights, k=n_runs)
        now = self.clock.now()
        base = now - timedelta(seconds=n_runs * spacing + 120)
        free = self._free_devices()
        in_use = sum(1 for h in self._held if h is not None)
        ids = []
        for i, target in enumerate(picks):
            submitted = base + timedelta(seconds=i * spacing)
            gpus = 1 if self.device_count else 0
            if target.billed:
                room = (not self.tier_gpus) or in_use + gpus <= self.tier_gpus
                if gpus > len(free) or not room:
                    target = RunState.QUEUED
            lr = round(10 ** rng.uniform(-4, -1), 6)
            experiment = f"sweep-{i // experiment_size:04d}" if experiment_size else None
            name = f"seed-{i:05d}"
            order = next(self._submitted)
            run_id = self._new_id()
            run = Run(
                id=run_id, name=name, state=RunState.QUEUED, submitted_at=submitted, experiment=experiment,
                gpus=gpus, gpu_type="cpu" if self.cpu_only or not gpus else self.gpu_type,
                params={"lr": lr} if experiment else {}, results_bucket="results", updated_at=now,
            )
            rec = RunRecord(
                run=run, manifest_text=_MANIFEST.format(name=name, gpus=gpus, lr=lr),
                durations=dict(self.durations), steps=self.steps, command=f"python train.py --lr {lr}",
                need=gpus, key=(-self.priorities["normal"], submitted, order), logs=None,
            )
            rec.events.append(RunEvent(run_id, submitted, RunState.QUEUED, "submitted"))
            self._runs[run_id] = rec
            ids.append(run_id)
            if target == RunState.QUEUED:
                self._enqueue(rec)
                self._touch(rec)
                continue
            # Walk the lifecycle in the past up to the target (or its end for a finished run).
            t = submitted + timedelta(seconds=rng.uniform(1, 20))
            final = target if target.terminal else None
            stop = {RunState.COMPLETED: RunState.STORING, RunState.FAILED: rng.choice(_LIFECYCLE[1:3]), RunState.HALTED: RunState.PROCESSING}
            last = stop.get(target, target)
            if final:
                t = min(t, now - timedelta(seconds=60))
            for state in _LIFECYCLE:
                rec.events.append(RunEvent(run_id, t, state))
                if state == RunState.PENDING:
                    run.admitted_at = t
                if state == RunState.PROCESSING:
                    run.started_at = t
                    rec.step = rec.steps if final == RunState.COMPLETED else rng.randint(1, rec.steps - 1)
                    loss, acc = synthetic_metrics(run_id, rec.step, rec.steps)
                    run.metrics = {"loss": loss, "accuracy": acc}
                    run.primary_metric = "loss"
                    rec.metric_points = None  # made on first read: most seeded runs are never opened
                if state == last:
                    break
                t += timedelta(seconds=rec.durations[state] if not final else min(rec.durations[state], 20))
            run.state = last
            if final:
                t = min(t + timedelta(seconds=2), now)
                code = rng.choice(_FAIL_CODES) if final == RunState.FAILED else None
                message = ERROR_DESCRIPTIONS[code] if code else ("halted by the user" if final == RunState.HALTED else "")
                rec.events.append(RunEvent(run_id, t, final, message, code.value if code else None))
                run.state, run.finished_at, run.message = final, t, message
                run.error_code = code.value if code else None
                self._touch(rec)
                continue
            # An active run: take devices now and continue from here on the engine's clock.
            taken, free = free[:gpus], free[gpus:]
            in_use += gpus
            rec.devices = taken
            for d in taken:
                self._held[d] = run_id
            run.assigned = [self._device_label(d) for d in taken]
            rec.gen += 1
            if last == RunState.PROCESSING:
                self._schedule(rec, now + self._step_len(rec), "step")
            else:
                self._schedule(rec, now + timedelta(seconds=rec.durations[last]), "end")
            self._touch(rec)
        self._admit(now)
        return ids


def seeded_points(rec: RunRecord) -> list[MetricPoint]:
    """The metric points of a seeded run's first `rec.step` steps, spread over its PROCESSING time."""
    events = [e for e in rec.events if e.state is not None]
    start = next((i for i, e in enumerate(events) if e.state == RunState.PROCESSING), None)
    if start is None or rec.step == 0:
        return []
    t = events[start].at
    if start + 1 < len(events):
        step_len = (events[start + 1].at - t) / rec.step
    else:
        step_len = timedelta(seconds=rec.durations[RunState.PROCESSING] / max(1, rec.steps))
    points = []
    for k in range(1, rec.step + 1):
        loss, acc = synthetic_metrics(rec.run.id, k, rec.steps)
        at = t + step_len * k
        points.append(MetricPoint("loss", loss, float(k), at))
        points.append(MetricPoint("accuracy", acc, float(k), at))
    return points


def seeded_logs(rec: RunRecord) -> list[list[str]]:
    """Log lines for a seeded run, made from its ledger and metrics when first read."""
    lines: list[str] = []
    points = iter(rec.metric_points if rec.metric_points is not None else seeded_points(rec))
    for event in rec.events:
        if event.state == RunState.PROCESSING:
            lines.append(f"[dlaas] running: {rec.command}")
            for loss in points:
                acc = next(points)
                lines.append(
                    f"{iso(loss.at)} epoch={int(loss.step or 0)} loss={loss.value:.6f} accuracy={acc.value:.6f}"
                )
        elif event.state is not None:
            extra = f": {event.message}" if event.message else ""
            lines.append(f"[dlaas] {iso(event.at)} {event.state.value}{extra}")
    return [lines] + [[] for _ in range(rec.run.learners - 1)]

