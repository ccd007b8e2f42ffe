"""What tests and demos do to a fake engine that no user can: plant failures, lose a run, preempt
one, occupy a device from outside (seeding thousands of runs is seeding.py's)."""
from __future__ import annotations

from collections.abc import Sequence

from ...errors import BadInput
from ...runs import ErrorCode, Run, RunState
from .record import PlantedFailure, failure_message


class Controls:
    """Mixed into FakeEngine; runs under its lock like everything else."""

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
            self._fail(rec, self.clock.now(), code.value, message or failure_message(code))
            return self._snapshot(rec)

    def preempt(self, run_id: str) -> Run:
        """Send a billed run back to QUEUED (an eviction); billing pauses until it is admitted again."""
        with self._lock:
            self._tick()
            rec = self._rec(run_id)
            if not rec.run.state.billed:
                raise BadInput(f"run {run_id} is {rec.run.state.value}, not running")
            now = self.clock.now()
            self._transition(rec, RunState.QUEUED, now, "preempted")
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

