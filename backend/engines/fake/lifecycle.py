"""The fake engine's simulation: its queue, admission onto devices, and the lifecycle on the clock.

Everything here runs under the engine's lock. Work that falls due is kept in a heap of
(due time, run, generation, kind); a run's generation moves on each transition, so planned work of
a run that was halted, failed or preempted is dropped when it comes up instead of being searched for.
"""
from __future__ import annotations

import bisect
import heapq
from datetime import datetime, timedelta

from ... import waits
from ...errors import EngineError
from ...eta import slots_held
from ...metrics import parse_metrics_line, primary_metric
from ...runs import (
    ALLOWED_TRANSITIONS,
    ErrorCode,
    MetricPoint,
    RunEvent,
    RunState,
    attempt_of,
    attempt_started_message,
    iso,
)
from .record import RunRecord, failure_message, synthetic_metrics

DEFAULT_DURATIONS: dict[RunState, float] = {
    RunState.PENDING: 1.0, RunState.DOWNLOADING: 2.0, RunState.PROCESSING: 30.0, RunState.STORING: 2.0}
# Where a state goes when its time is up (PROCESSING ends after its steps instead).
_NEXT = {RunState.PENDING: RunState.DOWNLOADING, RunState.DOWNLOADING: RunState.PROCESSING,
         RunState.STORING: RunState.COMPLETED}
GPU_NAMES = {
    "H100": "NVIDIA H100 80GB HBM3",
    "A100": "NVIDIA A100-SXM4-80GB",
    "V100": "Tesla V100-SXM2-16GB",
    "T4": "Tesla T4",
    "K80": "Tesla K80",
}
GPU_MEMORY = {"H100": 80, "A100": 80, "V100": 16, "T4": 16, "K80": 12}


class Lifecycle:
    """The simulation half of FakeEngine (state lives on the engine; see FakeEngine.__init__)."""

    def _on_clock(self) -> None:
        with self._lock:
            self._tick()

    def _touch(self, rec: RunRecord) -> None:
        self._seq += 1
        rec.seq = self._seq
        rec.run.updated_at = self.clock.now()
        self._order[rec.run.id] = None
        self._order.move_to_end(rec.run.id)
        self._cond.notify_all()

    def _log(self, rec: RunRecord, line: str, learner: int | None = None) -> None:
        if rec.logs is None:
            return
        targets = range(len(rec.logs)) if learner is None else (learner,)
        for i in targets:
            rec.logs[i].append(line)

    def _lines(self, rec: RunRecord, learner: int) -> list[str]:
        if rec.logs is None:
            from .seeding import seeded_logs

            rec.logs = seeded_logs(rec)
        return rec.logs[learner]

    def _schedule(self, rec: RunRecord, due: datetime, kind: str) -> None:
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

    def _fire(self, rec: RunRecord, at: datetime, kind: str) -> None:
        state = rec.run.state
        fail = rec.failure if rec.failure and rec.failure.state == state else None
        if kind == "fail" or (kind == "end" and fail and fail.after is None):
            self._fail(rec, at, fail.code if fail else ErrorCode.COMMAND_FAILED.value, fail.message if fail else "")
            return
        if kind == "step":
            self._points(rec)  # a seeded run's earlier points first, so steps stay in order
            rec.step += 1
            self._emit_step(rec, at)
            if rec.step < rec.steps:
                self._schedule(rec, at + self._step_len(rec), "step")
                return
            if fail and fail.after is None:
                self._fail(rec, at, fail.code, fail.message)
                return
            self._log(rec, "[dlaas] command exited 0")
            self._transition(rec, RunState.STORING, at)
            return
        self._transition(rec, _NEXT[state], at)
        if _NEXT[state].terminal:
            self._admit(at)

    def _step_len(self, rec: RunRecord) -> timedelta:
        return timedelta(seconds=rec.durations[RunState.PROCESSING] / max(1, rec.steps))

    def _fail(self, rec: RunRecord, at: datetime, code: str, message: str) -> None:
        code_enum = ErrorCode(code)
        message = message or failure_message(code_enum)
        self._log(rec, f"[dlaas] {code}: {message}")
        self._transition(rec, RunState.FAILED, at, message, code)
        self._admit(at)

    def _transition(
        self, rec: RunRecord, state: RunState, at: datetime, message: str = "", error_code: str | None = None
    ) -> None:
        run = rec.run
        if state not in ALLOWED_TRANSITIONS[run.state]:
            raise EngineError(f"run {run.id}: {run.state.value} -> {state.value} is not a valid transition")
        if run.state == RunState.QUEUED:
            self._dequeue(rec)
            run.message = message  # no longer why it waited
        if state == RunState.PENDING and not message and (attempt := attempt_of(rec.events)) > 1:
            message = attempt_started_message(attempt)
        run.state = state
        rec.gen += 1
        rec.events.append(RunEvent(run.id, at, state, message, error_code))
        if state == RunState.PENDING:
            run.admitted_at = at
            run.queue_position = None
            self._log(rec, f"[dlaas] devices assigned: {', '.join(run.assigned) or 'none (no GPUs asked)'}")
        elif state == RunState.DOWNLOADING:
            self._log(rec, "[dlaas] downloading model code and data")
        elif state == RunState.PROCESSING:
            run.started_at = at
            rec.step = 0
            self._log(rec, f"[dlaas] running: {rec.command}")
        elif state == RunState.STORING:
            self._log(rec, f"[dlaas] storing results to {run.results_bucket}/{run.id}/")
        if state == RunState.QUEUED or state.terminal:
            self._release(rec)
        if state == RunState.QUEUED:
            self._enqueue(rec)
        if state.terminal:
            run.finished_at = at
            run.error_code = error_code
            run.message = message
            self._log(rec, f"[dlaas] run {state.value}")
        if state == RunState.PROCESSING:
            self._schedule(rec, at + self._step_len(rec), "step")
        elif state in _NEXT:
            self._schedule(rec, at + timedelta(seconds=rec.durations[state]), "end")
        fail = rec.failure
        if fail and fail.state == state and fail.after is not None:
            self._schedule(rec, at + timedelta(seconds=fail.after), "fail")
        self._touch(rec)

    def _points(self, rec: RunRecord) -> list[MetricPoint]:
        if rec.metric_points is None:
            from .seeding import seeded_points

            rec.metric_points = seeded_points(rec)
        return rec.metric_points

    def _emit_step(self, rec: RunRecord, at: datetime) -> None:
        loss, acc = synthetic_metrics(rec.run.id, rec.step, rec.steps)
        stamp = iso(at)
        line = f"{stamp} epoch={rec.step} loss={loss:.6f} accuracy={acc:.6f}"
        self._log(rec, line, learner=0)
        for learner in range(1, rec.run.learners):
            self._log(rec, f"{stamp} rank={learner} epoch={rec.step} waiting for all-reduce", learner=learner)
        # The metrics come from the log line, as a real engine's do, through the same parser.
        parsed = parse_metrics_line(line)
        if parsed is not None:
            self._points(rec).extend(parsed.points())
            rec.run.metrics.update(parsed.values)
            rec.run.primary_metric = primary_metric(list(rec.run.metrics), rec.sweep_metric)
        self._touch(rec)

    # -- the queue ------------------------------------------------------------------------------
    def _enqueue(self, rec: RunRecord) -> None:
        i = bisect.bisect_left(self._queue_keys, rec.key)
        self._queue_keys.insert(i, rec.key)
        self._queue.insert(i, rec.run.id)
        self._renumber(i)

    def _dequeue(self, rec: RunRecord) -> None:
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

    def _gate(self, rec: RunRecord) -> tuple[str | None, str]:
        """(why the run fails, why it waits) for its prerequisites, as the local agent says it."""
        pending = []
        for dep in rec.run.depends_on:
            other = self._runs.get(dep)
            if other is None:
                return waits.dependency_gone(dep), ""
            state = other.run.state
            if state in (RunState.FAILED, RunState.HALTED):
                return waits.dependency_ended(dep, state.value, other.run.error_code), ""
            if state != RunState.COMPLETED:
                pending.append((dep, state.value))
        return None, waits.waiting_for(pending) if pending else ""

    def _open_gates(self, at: datetime) -> dict[str, str]:
        """Queued runs whose prerequisites are not all complete: those with one that failed, was
        halted or is gone end FAILED (C206); the rest wait, out of admission's sight. Returns the
        waiting ones' reasons."""
        gated: dict[str, str] = {}
        failed = True
        while failed:  # a run failed here may be another's prerequisite
            failed = False
            gated = {}
            for run_id in list(self._queue):
                rec = self._runs[run_id]
                if not rec.run.depends_on:
                    continue
                fail, reason = self._gate(rec)
                if fail:
                    self._log(rec, f"[dlaas] {ErrorCode.DEPENDENCY_FAILED.value}: {fail}")
                    self._transition(rec, RunState.FAILED, at, fail, ErrorCode.DEPENDENCY_FAILED.value)
                    failed = True
                elif reason:
                    gated[run_id] = reason
        return gated

    def _say_why(self, why: dict[str, str]) -> None:
        """Each queued run's message says why it waits (a run with no reason of its own: the runs
        ahead of it), in the words of backend/waits.py; a run is touched only when its reason changes."""
        for pos, run_id in enumerate(self._queue, start=1):
            rec = self._runs[run_id]
            reason = why.get(run_id) or waits.behind(pos)
            if reason and rec.run.message != reason:
                rec.run.message = reason
                self._touch(rec)

    def _admit(self, at: datetime) -> None:
        """Admit from the head of the queue while runs fit (best-effort: smaller ones may pass)."""
        why = self._open_gates(at)
        free = self._free_devices()
        # GPUs held under the tier: what the runs holding devices asked for (a cpu slot held by a run
        # asking for no GPU is not a GPU)
        in_use = sum(self._runs[h].need for h in {h for h in self._held if h is not None} if h in self._runs)
        i = 0
        while i < len(self._queue):
            rec = self._runs[self._queue[i]]
            if rec.run.id in why:  # waits for a prerequisite: admission does not see it
                i += 1
                continue
            # Where cpu slots are the devices, a run asking for no GPU holds one slot per learner
            # (what it is billed for), at most the box's, as the local agent does (the rule the queue's
            # ETAs count by); tiers count GPUs only.
            slots = slots_held(rec.need, rec.run.learners, self.device_count) if self.cpu_only else rec.need
            fits = slots <= len(free) and (not self.tier_gpus or in_use + rec.need <= self.tier_gpus)
            if fits:
                taken, free = free[:slots], free[slots:]
                in_use += rec.need
                rec.devices = taken
                for d in taken:
                    self._held[d] = rec.run.id
                rec.run.assigned = [self._device_label(d) for d in taken]
                self._transition(rec, RunState.PENDING, at)
                continue
            if self.tier_gpus and in_use + rec.need > self.tier_gpus:
                why[rec.run.id] = waits.tier_limit(self.profile_name, self.tier_gpus - in_use, rec.need)
            else:
                why[rec.run.id] = waits.busy("cpu slots" if self.cpu_only else "GPUs", slots, len(free),
                                             self._busy_note())
            if self.queue_policy != "best-effort":
                break
            i += 1
        self._say_why(why)

    def _busy_note(self) -> str:
        """Who holds the busy GPUs, as the local agent says it."""
        if self.cpu_only:
            return ""
        parts = []
        ours = sum(1 for h in self._held if h is not None)
        if ours:
            parts.append(waits.held_here(ours))
        parts += [waits.not_ours(self._device_label(i)) for i in sorted(self._foreign) if self._held[i] is None]
        return "; ".join(parts)

    def _release(self, rec: RunRecord) -> None:
        for d in rec.devices:
            if self._held[d] == rec.run.id:
                self._held[d] = None
        rec.devices = []

    def _device_label(self, index: int) -> str:
        if self.cpu_only:
            return f"cpu:{index}"
        return f"GPU-{index} {GPU_NAMES.get(self.gpu_type, self.gpu_type)}"

