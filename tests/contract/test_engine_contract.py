"""The Engine contract: what every scheduler (fake, local, Kubernetes) must do the same way.

Parametrized over tests/contract/engines.py's HARNESSES. Each test states one rule of DESIGN.md's
lifecycle, queue, logs, cost or JSON contract.
"""
from __future__ import annotations

import json
import re
import threading
from datetime import datetime

import pytest

from backend.errors import BadInput, NotFound
from backend.runs import ALLOWED_TRANSITIONS, Run, RunState

S = RunState
LIFECYCLE = [S.QUEUED, S.PENDING, S.DOWNLOADING, S.PROCESSING, S.STORING, S.COMPLETED]
RUN_ID = re.compile(r"^training-[a-z0-9]{8}$")
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
JSON_FIELDS = {
    "id": str, "name": str, "experiment": (str, type(None)), "state": str,
    "queue_position": (int, type(None)), "queue_position_approximate": bool, "eta": (str, type(None)),
    "gpus": int, "gpu_type": (str, type(None)), "assigned": list, "submitted_at": str,
    "admitted_at": (str, type(None)), "started_at": (str, type(None)), "finished_at": (str, type(None)),
    "cost_usd": (float, int, type(None)), "error_code": (str, type(None)), "message": str,
    "metrics": dict, "primary_metric": (str, type(None)),
}


def terminal(run: Run) -> bool:
    return run.state.terminal


def state_is(*states: RunState):
    return lambda run: run.state in states


def test_submit_records_a_queued_run_with_a_position(engine_harness, tmp_path):
    run = engine_harness.submit(tmp_path, kind="quick", name="first")
    assert RUN_ID.match(run.id)
    assert run.state == S.QUEUED and run.queue_position is not None and run.queue_position >= 1
    assert run.name == "first" and run.gpus == 1 and run.finished_at is None
    events = engine_harness.engine.events(run.id)
    assert events[0].state == S.QUEUED and events[0].at == run.submitted_at
    assert run.id in {r.id for r in engine_harness.engine.list_runs()}


def test_lifecycle_order_with_timestamps(engine_harness, tmp_path):
    run = engine_harness.submit(tmp_path, kind="quick")
    done = engine_harness.wait_for(run.id, terminal)
    assert done.state == S.COMPLETED, done.message
    events = engine_harness.engine.events(run.id)
    states = [e.state for e in events if e.state is not None]
    assert states == LIFECYCLE
    for a, b in zip(states, states[1:]):
        assert b in ALLOWED_TRANSITIONS[a]
    times = [e.at for e in events]
    assert all(isinstance(t, datetime) and t.tzinfo is not None for t in times)
    assert times == sorted(times)
    assert done.submitted_at <= done.admitted_at <= done.started_at <= done.finished_at
    assert done.queue_position is None and done.error_code is None


def test_completed_run_has_metrics_and_primary_metric(engine_harness, tmp_path):
    run = engine_harness.submit(tmp_path, kind="quick")
    done = engine_harness.wait_for(run.id, terminal)
    assert done.state == S.COMPLETED
    assert done.primary_metric == "loss"
    losses = [p for p in engine_harness.engine.metrics(run.id) if p.name == "loss"]
    assert len(losses) >= 2 and losses[-1].value < losses[0].value
    assert done.metrics["loss"] == losses[-1].value and "accuracy" in done.metrics


def test_logs_tail_and_follow_end_when_the_run_ends(engine_harness, tmp_path):
    run = engine_harness.submit(tmp_path, kind="quick")
    engine_harness.wait_for(run.id, state_is(S.PROCESSING, S.STORING, S.COMPLETED))
    followed: list[str] = []
    reader = threading.Thread(
        target=lambda: followed.extend(engine_harness.engine.logs(run.id, follow=True)), daemon=True
    )
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), "logs(follow=True) did not end when the run ended"
    assert engine_harness.engine.get_run(run.id).state.terminal
    assert any("loss=" in line for line in followed)
    full = list(engine_harness.engine.logs(run.id))
    assert full == followed
    assert list(engine_harness.engine.logs(run.id, tail=2)) == full[-2:]
    assert all("\n" not in line for line in full)


def test_failing_command_fails_with_c201(engine_harness, tmp_path):
    run = engine_harness.submit(tmp_path, kind="fail")
    done = engine_harness.wait_for(run.id, terminal)
    assert done.state == S.FAILED and done.error_code == "C201" and done.message
    assert done.finished_at is not None


def test_halt_is_terminal(engine_harness, tmp_path):
    run = engine_harness.submit(tmp_path, kind="long")
    engine_harness.wait_for(run.id, state_is(S.PROCESSING))
    engine_harness.engine.halt(run.id)
    halted = engine_harness.wait_for(run.id, terminal)
    assert halted.state == S.HALTED and halted.finished_at is not None
    engine_harness.quiesce()  # the worker is done: nothing it does later may overwrite HALTED
    assert engine_harness.engine.get_run(run.id).state == S.HALTED
    assert engine_harness.engine.halt(run.id).state == S.HALTED  # halting again changes nothing
    assert [e.state for e in engine_harness.engine.events(run.id) if e.state][-1] == S.HALTED


def test_halt_a_queued_run(engine_factory, tmp_path):
    harness = engine_factory(devices=1, tier_gpus=1)
    busy = harness.submit(tmp_path, kind="long", name="busy")
    waiting = harness.submit(tmp_path, kind="long", name="waiting")
    harness.wait_for(busy.id, state_is(S.PROCESSING))
    assert harness.engine.get_run(waiting.id).queue_position == 1
    harness.engine.halt(waiting.id)
    halted = harness.wait_for(waiting.id, terminal)
    assert halted.state == S.HALTED and halted.admitted_at is None and halted.queue_position is None
    harness.engine.halt(busy.id)
    harness.wait_for(busy.id, terminal)


def test_delete_removes_the_record(engine_harness, tmp_path):
    engine = engine_harness.engine
    run = engine_harness.submit(tmp_path, kind="long")
    with pytest.raises(BadInput, match=run.id):
        engine.delete(run.id)  # still active: halt it first
    engine.halt(run.id)
    engine_harness.wait_for(run.id, terminal)
    engine.delete(run.id)
    for call in (engine.get_run, engine.events, engine.halt, engine.delete, engine.manifest_text):
        with pytest.raises(NotFound, match=run.id):
            call(run.id)
    with pytest.raises(NotFound, match=run.id):
        list(engine.logs(run.id))
    assert run.id not in {r.id for r in engine.list_runs()}


def test_unknown_run_is_not_found_naming_it(engine_harness):
    with pytest.raises(NotFound, match="training-zzzzzzzz"):
        engine_harness.engine.get_run("training-zzzzzzzz")
    with pytest.raises(NotFound, match="training-zzzzzzzz"):
        engine_harness.engine.metrics("training-zzzzzzzz")


def test_queue_positions_match_admission_order_under_a_one_device_tier(engine_factory, tmp_path):
    harness = engine_factory(devices=2, tier_gpus=1)
    busy = harness.submit(tmp_path, kind="long", name="busy")
    runs = [harness.submit(tmp_path, kind="quick", name=f"q{i}") for i in range(3)]
    harness.wait_for(busy.id, state_is(S.PROCESSING))
    assert [harness.engine.get_run(r.id).queue_position for r in runs] == [1, 2, 3]
    assert all(harness.engine.get_run(r.id).state == S.QUEUED for r in runs)  # the tier is full
    harness.engine.halt(busy.id)
    done = [harness.wait_for(r.id, terminal) for r in runs]
    assert [d.state for d in done] == [S.COMPLETED] * 3
    admitted = sorted(done, key=lambda d: d.admitted_at)
    assert [d.id for d in admitted] == [r.id for r in runs]
    # one device at a time: each run was admitted only after the one before it finished
    assert all(b.admitted_at >= a.finished_at for a, b in zip(done, done[1:]))


def test_priority_goes_first_in_the_queue(engine_factory, tmp_path):
    harness = engine_factory(devices=1, tier_gpus=1)
    busy = harness.submit(tmp_path, kind="long", name="busy")
    normal = harness.submit(tmp_path, kind="long", name="normal")
    low = harness.submit(tmp_path, kind="long", name="low", priority="low")
    high = harness.submit(tmp_path, kind="long", name="high", priority="high")
    harness.wait_for(busy.id, state_is(S.PROCESSING))
    positions = {r.name: harness.engine.get_run(r.id).queue_position for r in (normal, low, high)}
    assert positions == {"high": 1, "normal": 2, "low": 3}
    for r in (high, normal, low, busy):
        harness.engine.halt(r.id)
    for r in (high, normal, low, busy):
        harness.wait_for(r.id, terminal)


def test_request_that_can_never_fit_is_refused(engine_factory, tmp_path):
    harness = engine_factory(devices=2, tier_gpus=1)
    with pytest.raises(BadInput) as err:
        harness.submit(tmp_path, kind="quick", gpus=2)
    assert err.value.code == "C104" and "2" in err.value.message
    assert harness.engine.list_runs() == []


def test_changes_cursor(engine_harness, tmp_path):
    engine = engine_harness.engine
    start = engine.changes(None)
    assert start.full and isinstance(start.cursor, int)
    run = engine_harness.submit(tmp_path, kind="quick")
    delta = engine.changes(start.cursor)
    assert not delta.full and run.id in {r.id for r in delta.runs}
    assert delta.cursor >= start.cursor
    engine_harness.wait_for(run.id, terminal)
    engine_harness.quiesce()
    quiet = engine.changes(engine.changes(delta.cursor).cursor)
    assert quiet.runs == [] and quiet.deleted == [] and not quiet.full
    engine.delete(run.id)
    after = engine.changes(quiet.cursor)
    assert after.deleted == [run.id] and run.id not in {r.id for r in after.runs}
    assert engine.changes(quiet.cursor + 10**9).full  # a cursor the engine never gave out


def test_to_json_follows_the_contract(engine_harness, tmp_path):
    run = engine_harness.submit(tmp_path, kind="quick")
    done = engine_harness.wait_for(run.id, terminal)
    data = json.loads(json.dumps(done.to_json()))
    for key, kind in JSON_FIELDS.items():
        assert key in data, key
        assert isinstance(data[key], kind), (key, data[key])
    assert data["state"] == "COMPLETED" and data["id"] == run.id
    for key in ("submitted_at", "admitted_at", "started_at", "finished_at"):
        assert ISO_Z.match(data[key]), (key, data[key])
    assert data["assigned"] and all(isinstance(a, str) for a in data["assigned"])
    assert isinstance(data["metrics"]["loss"], float)


def test_cost_of_a_billed_run(engine_harness, tmp_path):
    run = engine_harness.submit(tmp_path, kind="quick")
    done = engine_harness.wait_for(run.id, terminal)
    assert done.cost_usd is not None and done.cost_usd > 0
    assert isinstance(done.cost_micro_usd, int)
    with engine_harness.later(3600):  # an hour on, past the per-run minimum: the bill has stopped
        assert engine_harness.engine.get_run(run.id).cost_micro_usd == done.cost_micro_usd


def test_unpriced_cost_is_none(engine_factory, tmp_path):
    harness = engine_factory(priced=False)
    run = harness.submit(tmp_path, kind="quick")
    done = harness.wait_for(run.id, terminal)
    assert done.state == S.COMPLETED and done.cost_usd is None


def test_inventory_names_the_holder(engine_harness, tmp_path):
    run = engine_harness.submit(tmp_path, kind="long")
    engine_harness.wait_for(run.id, state_is(S.PROCESSING))
    inventory = engine_harness.engine.inventory()
    assert inventory.gpu_count >= 1
    assert [d.held_by for d in inventory.devices].count(run.id) == 1
    engine_harness.engine.halt(run.id)
    engine_harness.wait_for(run.id, terminal)
    assert run.id not in [d.held_by for d in engine_harness.engine.inventory().devices]


def test_list_runs_filters(engine_harness, tmp_path):
    engine = engine_harness.engine
    a = engine_harness.submit(tmp_path, kind="fail", name="a")
    engine_harness.wait_for(a.id, terminal)
    b = engine_harness.submit(tmp_path, kind="quick", name="b")
    engine_harness.wait_for(b.id, terminal)
    assert [r.id for r in engine.list_runs(states=[S.FAILED])] == [a.id]
    assert len(engine.list_runs(limit=1)) == 1
    assert {r.id for r in engine.list_runs()} == {a.id, b.id}
    assert "train.py" in engine.manifest_text(a.id)


def test_resume_a_halted_run_is_a_new_attempt_of_the_same_run(engine_harness, tmp_path):
    from backend.cost import billed_intervals
    from backend.runs import attempt_of, utcnow

    engine = engine_harness.engine
    run = engine_harness.submit(tmp_path, kind="long")
    engine_harness.wait_for(run.id, state_is(S.PROCESSING))
    with pytest.raises(BadInput, match=run.id):
        engine.resume(run.id)  # still running: nothing to resume
    engine.halt(run.id)
    assert engine_harness.wait_for(run.id, terminal).state == S.HALTED

    again = engine.resume(run.id)
    assert again.id == run.id and again.state in (S.QUEUED, S.PENDING, S.DOWNLOADING, S.PROCESSING)
    assert again.finished_at is None and again.error_code is None
    engine_harness.wait_for(run.id, state_is(S.PROCESSING))
    events = engine.events(run.id)
    messages = [e.message for e in events]
    assert any("attempt 2 started" in m for m in messages), messages
    assert attempt_of(events) == 2
    engine.halt(run.id)
    assert engine_harness.wait_for(run.id, terminal).state == S.HALTED
    events = engine.events(run.id)
    states = [e.state for e in events if e.state]
    assert states.count(S.PENDING) == 2 and states.count(S.HALTED) == 2, states
    # Billing sums both attempts: one interval each, none spanning the time it was halted.
    intervals = billed_intervals(events, utcnow())
    assert len(intervals) == 2 and intervals[0][1] <= intervals[1][0]
    assert engine.get_run(run.id).cost_micro_usd > 0


def test_only_halted_or_failed_runs_resume(engine_harness, tmp_path):
    engine = engine_harness.engine
    done = engine_harness.submit(tmp_path, kind="quick")
    assert engine_harness.wait_for(done.id, terminal).state == S.COMPLETED
    with pytest.raises(BadInput, match="COMPLETED"):
        engine.resume(done.id)
    with pytest.raises(NotFound):
        engine.resume("training-zzzzzzzz")
    failed = engine_harness.submit(tmp_path, kind="fail")
    assert engine_harness.wait_for(failed.id, terminal).state == S.FAILED
    engine.resume(failed.id)
    again = engine_harness.wait_for(failed.id, terminal)
    assert again.state == S.FAILED and again.error_code == "C201"  # the same command fails again
    assert sum(1 for e in engine.events(failed.id) if e.state == S.FAILED) == 2
