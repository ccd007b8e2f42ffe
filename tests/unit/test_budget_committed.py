"""Committed money: every queued and running run's estimate less what it has spent."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from backend.budget import committed_micro, completed_durations, run_estimate_micro
from backend.cost import Meter, PriceTable
from backend.runs import Run, RunState

S = RunState
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
METER = Meter(PriceTable.from_mapping({"cpu": 36}), minimum_seconds=60)  # cpu: $0.01 a second


def run(rid: str, state: RunState, *, gpus: int = 0, learners: int = 1, max_s: float | None = None,
        spent: int = 0, name: str = "m", took: float | None = None, gpu_type: str | None = None) -> Run:
    r = Run(id=rid, name=name, state=state, submitted_at=T0, gpus=gpus, learners=learners,
            gpu_type=gpu_type, cost_micro_usd=spent, max_duration_s=max_s, manifest_name=name.rsplit("-", 1)[0])
    if took is not None:
        r.admitted_at, r.finished_at = T0, T0 + timedelta(seconds=took)
    return r


def test_a_queued_run_commits_its_whole_estimate_a_running_one_what_is_left():
    runs = [run("q", S.QUEUED, max_s=600), run("p", S.PROCESSING, max_s=600, spent=2_000_000)]
    assert run_estimate_micro(runs[0], METER, {}) == 6_000_000  # 600 s x 1 cpu slot x $36/h
    assert committed_micro(runs, METER) == (6_000_000 + 4_000_000, 0)


def test_units_minimum_and_terminal_runs():
    two_learners = run("c", S.QUEUED, learners=2, max_s=100)  # cpu: one slot per learner
    short = run("s", S.QUEUED, max_s=10)  # the 60 s minimum
    done = run("d", S.COMPLETED, max_s=600, spent=1_000_000)
    over = run("o", S.PROCESSING, max_s=100, spent=5_000_000)  # spent past its estimate: commits nothing
    assert committed_micro([two_learners, short, done, over], METER) == (2_000_000 + 600_000, 0)


def test_history_by_manifest_then_unknown():
    history = [run("h1", S.COMPLETED, name="sw-1", took=100), run("h2", S.COMPLETED, name="sw-2", took=300)]
    assert completed_durations(history) == {"sw": [100.0, 300.0]}
    queued = run("q", S.QUEUED, name="sw-3")
    stranger = run("x", S.QUEUED, name="other")
    unpriced = run("u", S.QUEUED, gpus=1, gpu_type="L4", max_s=60)
    assert committed_micro([*history, queued, stranger, unpriced], METER) == (2_000_000, 2)
