"""The one queue-ETA model (backend/eta.py): learned medians first, max_duration as a bound last."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from backend.eta import DurationModel, format_eta, queue_etas
from backend.runs import Run, RunState

S = RunState
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def run(rid: str, state: RunState = S.QUEUED, *, exp: str | None = None, name: str = "m", took: float | None = None,
        admitted: float | None = None, max_s: float | None = None, gpus: int = 1, at: float = 0) -> Run:
    r = Run(id=rid, name=name, state=state, submitted_at=T0 + timedelta(seconds=at), experiment=exp, gpus=gpus,
            manifest_name=name.rsplit("-", 1)[0] if exp else name, max_duration_s=max_s)
    if took is not None:
        r.admitted_at = T0 - timedelta(seconds=1000)
        r.finished_at = r.admitted_at + timedelta(seconds=took)
    if admitted is not None:
        r.admitted_at = T0 + timedelta(seconds=admitted)
    return r


def test_the_sweeps_own_trials_come_first_then_the_manifest_then_max_duration():
    history = [run("a", S.COMPLETED, exp="sw", name="sw-1", took=3), run("b", S.COMPLETED, exp="sw", name="sw-2", took=5),
               run("c", S.COMPLETED, exp="sw", name="sw-3", took=100),
               run("old", S.COMPLETED, exp="earlier", name="sw-1", took=50)]
    model = DurationModel.learn(history)
    trial = run("t", exp="sw", name="sw-4", max_s=600)
    assert model.expected(trial).seconds == 5 and not model.expected(trial).bound  # the median, not the mean
    fresh = run("f", exp="new-sweep", name="sw-1", max_s=600)
    assert model.expected(fresh).seconds == 27.5  # none of its own trials done: all runs of manifest sw
    stranger = run("s", name="other", max_s=600)
    assert model.expected(stranger).seconds == 600 and model.expected(stranger).bound
    assert model.expected(run("u", name="unknown")) is None


def test_a_sweep_after_two_trials_predicts_the_rest_from_them():
    # parallel 1, trials of ~3 s, max_duration 10 m: the case. Two have completed.
    runs = [run("t1", S.COMPLETED, exp="sw", name="sw-1", took=3), run("t2", S.COMPLETED, exp="sw", name="sw-2", took=3),
            run("t3", S.PROCESSING, exp="sw", name="sw-3", admitted=-1, max_s=600)]
    runs += [run(f"t{i}", exp="sw", name=f"sw-{i}", max_s=600, at=i) for i in range(4, 7)]
    etas = queue_etas(runs, capacity=4, now=T0, caps={"sw": 1})
    assert [(etas[f"t{i}"].at - T0).total_seconds() for i in range(4, 7)] == [2, 5, 8]
    assert not any(e.bound for e in etas.values())


def test_bounds_propagate_and_unknown_runs_hide_what_waits_on_them():
    runs = [run("r", S.PROCESSING, name="x", admitted=0, max_s=600), run("q1", name="y", max_s=60, at=1),
            run("q2", name="z", at=2)]
    etas = queue_etas(runs, capacity=1, now=T0)
    assert etas["q1"].at == T0 + timedelta(seconds=600) and etas["q1"].bound
    assert etas["q2"].at == T0 + timedelta(seconds=660) and etas["q2"].bound
    assert "q3" not in queue_etas([*runs, run("q3", name="w", at=3)], capacity=1, now=T0)  # behind q2, unknown
    assert format_eta(etas["q1"].at, T0, bound=True) == "≤10m"
    assert format_eta(etas["q1"].at, T0) == "~10m"
