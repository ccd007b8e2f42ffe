"""How the fake engine hands out what it knows: copies of runs with live cost and queue ETAs,
cost breakdowns, and log streams that end when the run does."""
from __future__ import annotations

import copy
from collections.abc import Iterator

from ...cost import CostBreakdown, Meter
from ...runs import Run, RunState
from .clock import DrivenClock
from .record import RunRecord


class Reading:
    """Mixed into FakeEngine; everything here runs under its lock except the log stream's yields."""

    def _snapshot(self, rec: RunRecord) -> Run:
        run = copy.copy(rec.run)
        run.assigned = list(rec.run.assigned)
        run.metrics = dict(rec.run.metrics)
        run.params = dict(rec.run.params)
        run.cost_micro_usd = self._cost_micro(rec)
        if run.state == RunState.QUEUED:
            got = self._etas().get(run.id)
            run.eta, run.eta_bound = (got.at, got.bound) if got else (None, False)
        return run

    def _etas(self):
        """Expected admission times of the queue (backend/eta.py's model, as every engine uses),
        recomputed only when something changed."""
        from ...eta import DurationModel, queue_etas

        now = self.clock.now()
        if self._eta_cache is not None and self._eta_cache[0] == (self._seq, now):
            return self._eta_cache[1]
        runs = [rec.run for rec in self._runs.values()]
        if self._model_cache is None or self._model_cache[0] != self._seq:
            self._model_cache = (self._seq, DurationModel.learn(runs))
        usable = self.device_count - len(self._foreign)
        # Waiting for a prerequisite: out of admission's sight, and with no estimate of its own.
        gated = {rid for rid in self._queue if self._runs[rid].run.depends_on and any(self._gate(self._runs[rid]))}
        if self.cpu_only:  # cpu slots are the devices: runs hold them as admission hands them out
            etas = queue_etas(runs, capacity=self.tier_gpus, now=now, order=list(self._queue),
                              model=self._model_cache[1], cpu_slots=usable, gated=gated,
                              best_effort=self.queue_policy == "best-effort")
        else:
            capacity = min(self.tier_gpus, usable) if self.tier_gpus else usable
            etas = queue_etas(runs, capacity=capacity, now=now, order=list(self._queue), model=self._model_cache[1],
                              gated=gated, best_effort=self.queue_policy == "best-effort")
        self._eta_cache = ((self._seq, now), etas)
        return etas

    def _cost_micro(self, rec: RunRecord) -> int | None:
        # Cost moves with time only while billed; otherwise it changes only with a new event.
        if rec.run.state.billed or rec.cost_key != len(rec.events):
            cost = self._bill(rec)
            rec.cost_micro, rec.cost_key = cost.total_micro, len(rec.events)
        return rec.cost_micro

    def cost(self, run_id: str) -> CostBreakdown:
        """The cost breakdown (for the UI's Cost tab)."""
        with self._lock:
            self._tick()
            return self._bill(self._rec(run_id))

    def _bill(self, rec: RunRecord) -> CostBreakdown:
        return Meter(self.prices, self.minimum_seconds).bill_run(rec.run, rec.events, self.clock.now())

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
                if isinstance(self.clock, DrivenClock):
                    self.clock.advance(self.follow_step)
