"""The local agent's sweep policy over a real SQLite state file: parallel caps in the admission
queue, max_failed, the early-stop pass, experiment ids, and ETAs in admission order."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from backend.engines.local import eta, sweeps
from backend.ledger import db
from backend.engines.local.scheduler import FreeDevice, plan
from backend.engines.local.sweeps import SweepGovernor, SweepPolicy
from backend.eta import format_eta
from backend.runs import RunState


@pytest.fixture
def conn(tmp_path):
    c = db.connect(tmp_path / "state" / "state.db")
    sweeps.ensure_schema(c)
    yield c
    c.close()


def add(conn, rid: str, *, experiment: str | None = None, state: str = "QUEUED", gpus: int = 1,
        prio: int = 0, at: float = 0.0, max_s: float | None = 600, name: str | None = None, **extra):
    with db.write(conn):
        db.insert_run(conn, {
            "id": rid, "name": name or rid, "experiment": experiment, "profile": "local", "state": state,
            "priority": "normal", "prio": prio, "submitted_at": 1000.0 + at, "gpus": gpus, "learners": 1,
            "spec": {"command": "true", "max_duration_s": max_s, "manifest_name": name or "m"}, **extra,
        }, db.next_seq(conn))


def policy(conn, exp: str, **kw) -> None:
    with db.write(conn):
        sweeps.record_policies(conn, {exp: SweepPolicy(**kw)})


def test_parallel_cap_holds_back_only_that_experiment(conn):
    policy(conn, "sw", parallel=2)
    for i in range(4):
        add(conn, f"sw-{i}", experiment="sw", at=i)
    add(conn, "solo", at=10)
    add(conn, "sw-running", experiment="sw", state="PROCESSING", at=-1)
    gov = SweepGovernor(conn, lambda *a: None)
    assert gov.room() == {"sw": 1}
    free = [FreeDevice(f"cpu:{i}", "cpu") for i in range(4)]
    admitted = plan(gov.queue(best_effort=False, free=4), free, {"local": None})
    assert [a.run_id for a in admitted] == ["sw-0", "solo"]  # sw-1.. wait; the run behind passes them


def test_under_best_effort_a_trial_passed_over_leaves_its_place_to_the_next_that_fits(conn):
    """A capped sweep's trial that the planner passes over (no GPU of its type free) does not use up the
    sweep's room: the next trial that fits starts, and the cap still holds for the ones after it."""
    policy(conn, "sw", parallel=1)
    add(conn, "sw-a100", experiment="sw", at=0, gpu_type="A100")
    add(conn, "sw-any", experiment="sw", at=1)
    add(conn, "sw-any-2", experiment="sw", at=2)
    gov = SweepGovernor(conn, lambda *a: None)
    free = [FreeDevice("GPU-0", "H100"), FreeDevice("GPU-1", "H100")]
    queue = gov.queue(best_effort=False, free=2)
    assert plan(queue, free, {"local": None}, match_type=True) == []  # FIFO waits on its head
    queue.close()
    queue = gov.queue(best_effort=True, free=2)
    admitted = plan(queue, free, {"local": None}, best_effort=True, match_type=True)
    queue.close()
    assert [a.run_id for a in admitted] == ["sw-any"]


def test_an_experiment_at_its_cap_is_skipped_inside_sqlite(conn):
    policy(conn, "sw", parallel=1)
    add(conn, "sw-running", experiment="sw", state="PROCESSING")
    for i in range(3):
        add(conn, f"sw-{i}", experiment="sw", at=i)
    add(conn, "other", at=5)
    gov = SweepGovernor(conn, lambda *a: None)
    assert [r[0] for r in gov.queue(best_effort=False, free=1)] == ["other"]


def test_no_policies_means_the_plain_queue(conn):
    add(conn, "a")
    add(conn, "b", at=1)
    gov = SweepGovernor(conn, lambda *a: None)
    assert gov.room() == {}
    assert [r[0] for r in gov.queue(best_effort=False, free=1)] == ["a", "b"]


def test_max_failed_halts_the_queued_rest_with_c205_and_a_ledger_event(conn):
    policy(conn, "sw", max_failed=2)
    add(conn, "f1", experiment="sw", state="FAILED")
    add(conn, "q1", experiment="sw", at=1)
    add(conn, "q2", experiment="sw", at=2)
    add(conn, "other", experiment="x", at=3)
    gov = SweepGovernor(conn, lambda *a: None)
    assert gov.enforce_max_failed() == 0  # one failure is under the limit
    add(conn, "f2", experiment="sw", state="FAILED", at=4)
    assert gov.enforce_max_failed() == 2
    row = db.get_row(conn, "q1")
    assert row["state"] == "HALTED" and row["error_code"] == sweeps.MAX_FAILED_CODE
    assert "max_failed" in row["message"] and row["cost_micro"] == 0
    assert [e["state"] for e in db.events(conn, "q2")] == ["QUEUED", "HALTED"]
    assert db.get_row(conn, "other")["state"] == "QUEUED"


def _metrics(conn, rid: str, values: list[float]) -> None:
    db.add_metrics(conn, rid, [(1, "loss", v, float(i + 1), time.time()) for i, v in enumerate(values)],
                   {"loss": values[-1]}, "loss")


def test_early_stop_halts_the_loser_once_with_c204(conn):
    policy(conn, "sw", metric="loss", goal="minimize", early_stop_min_runs=2, early_stop_start_step=2)
    for i, curve in enumerate(([1.0, 0.5, 0.3, 0.2], [1.0, 0.6, 0.4, 0.3])):
        add(conn, f"done{i}", experiment="sw", state="COMPLETED", started_at=100.0 + i)
        _metrics(conn, f"done{i}", curve)
    add(conn, "good", experiment="sw", state="PROCESSING", started_at=200.0)
    _metrics(conn, "good", [0.9, 0.4, 0.25])
    add(conn, "bad", experiment="sw", state="PROCESSING", started_at=201.0)
    _metrics(conn, "bad", [3.0, 2.9])
    calls = []
    gov = SweepGovernor(conn, lambda *a: calls.append(a))
    assert gov.early_stop(force=True) == ["bad"]
    rid, code, message = calls[0]
    assert rid == "bad" and code == "C204" and message.startswith("early stop:")
    assert gov.early_stop(force=True) == []  # asked once only


def test_early_stop_waits_for_min_runs_and_start_step(conn):
    policy(conn, "sw", metric="loss", early_stop_min_runs=3, early_stop_start_step=1)
    add(conn, "done", experiment="sw", state="COMPLETED", started_at=1.0)
    _metrics(conn, "done", [0.1, 0.1])
    add(conn, "bad", experiment="sw", state="PROCESSING", started_at=2.0)
    _metrics(conn, "bad", [5.0, 5.0])
    gov = SweepGovernor(conn, lambda *a: None)
    assert gov.early_stop(force=True) == []


def test_experiment_ids_are_unique_per_submit_and_grouping_merges_policies(conn):
    m = SimpleNamespace(name="sw", sweep=SimpleNamespace(
        parallel=4, max_failed=None, early_stop=None, metric=SimpleNamespace(name="acc", goal="maximize")))
    plain = SimpleNamespace(name="one", sweep=None)
    names, pols = sweeps.assign_experiments(conn, None, [m, plain])
    assert names == ["sw", None] and pols["sw"].parallel == 4 and pols["sw"].goal == "maximize"
    with db.write(conn):
        sweeps.record_policies(conn, pols)
    names, _ = sweeps.assign_experiments(conn, None, [m, m])
    assert names == ["sw-2", "sw-3"]
    tighter = SimpleNamespace(name="b", sweep=SimpleNamespace(
        parallel=2, max_failed=3, early_stop=None, metric=None))
    names, pols = sweeps.assign_experiments(conn, "grp", [m, plain, tighter])
    assert names == ["grp"] * 3
    assert pols["grp"] == SweepPolicy(parallel=2, max_failed=3, metric="acc", goal="maximize")
    names, _ = sweeps.assign_experiments(None, None, [m])  # a dry run checks nothing
    assert names == ["sw"]


def test_etas_follow_admission_order_with_priorities_and_caps(conn):
    now = 10_000.0
    add(conn, "running", state="PROCESSING", admitted_at=now - 100, max_s=600)
    add(conn, "q-normal", at=1, max_s=300)
    add(conn, "q-high", at=2, prio=1000, max_s=300)
    add(conn, "q-low", at=0, prio=-100, max_s=300)
    etas = eta.local_etas(conn, capacity=1, now=now)
    order = sorted(etas, key=lambda r: etas[r].at)
    assert order == ["q-high", "q-normal", "q-low"]
    assert etas["q-high"].at.timestamp() == pytest.approx(now + 500)
    assert etas["q-normal"].at.timestamp() == pytest.approx(now + 800)
    assert all(e.bound for e in etas.values())  # nothing completed yet: max_duration, an upper bound
    # A parallel cap delays an experiment's second run even with devices free.
    assert eta.local_etas(conn, capacity=4, now=now, caps={})["q-low"].at.timestamp() == now
    add(conn, "c1", experiment="cap", at=5, max_s=60)
    add(conn, "c2", experiment="cap", at=6, max_s=60)
    etas = eta.local_etas(conn, capacity=10, now=now, caps={"cap": 1})
    assert etas["c2"].at.timestamp() == pytest.approx(etas["c1"].at.timestamp() + 60)


def test_etas_use_history_and_stop_where_nothing_is_known(conn):
    now = 50_000.0
    add(conn, "old", state="COMPLETED", name="m", admitted_at=now - 1000, finished_at=now - 880)
    add(conn, "running", state="PROCESSING", name="m", admitted_at=now - 20, max_s=None)
    add(conn, "next", name="m", at=1, max_s=None)
    etas = eta.local_etas(conn, capacity=1, now=now)
    assert etas["next"].at.timestamp() == pytest.approx(now + 100)  # 120 s learned, 20 s gone
    assert not etas["next"].bound
    add(conn, "mystery-running", state="PROCESSING", name="unknown", admitted_at=now, max_s=None)
    add(conn, "after", name="z", at=2, max_s=None)
    add(conn, "last", name="z", at=3, max_s=None)
    etas = eta.local_etas(conn, capacity=2, now=now)
    assert etas["next"].at.timestamp() == pytest.approx(now + 100)
    assert etas["after"].at.timestamp() == pytest.approx(now + 220)  # behind `next`'s expected end
    assert "last" not in etas  # it waits on runs whose ends nobody can estimate


def test_format_eta_marks_an_estimate():
    from datetime import datetime, timedelta, timezone

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert format_eta(now + timedelta(minutes=12, seconds=5), now) == "~12m"
    assert format_eta(now + timedelta(seconds=2), now) == "~now"
    assert format_eta(now + timedelta(hours=2, minutes=3), now) == "~2h03m"
    assert format_eta(None, now) == ""
    assert format_eta(now + timedelta(minutes=12, seconds=5), now, bound=True) == "≤12m"


def test_policy_json_round_trip_and_emptiness():
    p = SweepPolicy(parallel=3, metric="loss", early_stop_min_runs=4, early_stop_start_step=2.0)
    import json
    from dataclasses import asdict

    assert SweepPolicy.from_json(json.dumps(asdict(p))) == p
    assert SweepPolicy().empty and not p.empty
    assert RunState.HALTED.terminal
