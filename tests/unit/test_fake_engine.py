"""The fake engine keeps the real rules: queue order, tiers, lifecycle, failures, cost, changes."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from backend.engines.fake import FakeClock, FakeEngine
from backend.errors import BadInput, NotFound
from backend.runs import ALLOWED_TRANSITIONS, ErrorCode, RunState, SubmitRequest

S = RunState


def manifest(name: str = "digits", gpus: int = 1, **extra):
    return {
        "name": name,
        "gpus": gpus,
        "data_stores": [
            {"id": "s", "type": "local", "training_data": {"container": "data"},
             "training_results": {"container": "results"}}
        ],
        "framework": {"name": "pytorch", "command": "python train.py"},
        **extra,
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_queue_positions_follow_admission_under_a_one_gpu_tier(clock):
    engine = FakeEngine(clock, devices=4, tier_gpus=1)
    runs = [engine.submit_manifest(manifest(f"r{i}")) for i in range(4)]
    assert runs[0].state == S.QUEUED and runs[0].queue_position == 1  # as recorded at submit
    assert engine.get_run(runs[0].id).state == S.PENDING
    assert engine.get_run(runs[0].id).queue_position is None
    assert [engine.get_run(r.id).queue_position for r in runs[1:]] == [1, 2, 3]
    admitted = []
    for _ in range(400):
        clock.advance(1)
        for r in runs:
            if r.id not in admitted and engine.get_run(r.id).admitted_at is not None:
                admitted.append(r.id)
        if len(admitted) == 4:
            break
    assert admitted == [r.id for r in runs]
    clock.advance(60)
    assert {engine.get_run(r.id).state for r in runs} == {S.COMPLETED}


def test_priority_then_submit_time(clock):
    engine = FakeEngine(clock, devices=1)
    first = engine.submit_manifest(manifest("first"))
    low = engine.submit_manifest(manifest("low", priority="low"))
    normal = engine.submit_manifest(manifest("normal"))
    high = engine.submit_manifest(manifest("high", priority="high"))
    assert engine.get_run(first.id).state == S.PENDING
    positions = {r.id: engine.get_run(r.id).queue_position for r in (low, normal, high)}
    assert positions == {high.id: 1, normal.id: 2, low.id: 3}


def test_lifecycle_events_metrics_logs_and_cost(clock):
    engine = FakeEngine(clock, devices=2, durations={"PROCESSING": 100})
    run = engine.submit_manifest(manifest(gpus=2))
    clock.advance(200)
    done = engine.get_run(run.id)
    states = [e.state for e in engine.events(run.id) if e.state]
    assert states == [S.QUEUED, S.PENDING, S.DOWNLOADING, S.PROCESSING, S.STORING, S.COMPLETED]
    for a, b in zip(states, states[1:]):
        assert b in ALLOWED_TRANSITIONS[a]
    times = [e.at for e in engine.events(run.id)]
    assert times == sorted(times)
    assert done.finished_at - done.admitted_at == (times[-1] - times[1])
    losses = [p.value for p in engine.metrics(run.id) if p.name == "loss"]
    assert len(losses) == 10 and losses[-1] < losses[0]
    assert done.primary_metric == "loss" and done.metrics["loss"] == losses[-1]
    assert any("epoch=10" in line for line in engine.logs(run.id))
    # held 1 + 2 + 100 + 2 = 105 s on 2 H100 at $6.88/h
    assert done.cost_micro_usd == round(6_880_000 * 2 * 105 / 3600)
    assert done.assigned == ["GPU-0 NVIDIA H100 80GB HBM3", "GPU-1 NVIDIA H100 80GB HBM3"]


def test_minimum_charge_and_unpriced(clock):
    engine = FakeEngine(clock, devices=1, gpu_type="L4", durations={"PROCESSING": 5})
    run = engine.submit_manifest(manifest())
    clock.advance(60)
    assert engine.get_run(run.id).state == S.COMPLETED
    assert engine.get_run(run.id).cost_usd is None  # L4 has no default price: unpriced, not $0
    priced = FakeEngine(FakeClock(), devices=1, gpu_type="L4", prices={"L4": 0.80}, durations={"PROCESSING": 5})
    r = priced.submit_manifest(manifest())
    priced.clock.advance(60)
    assert priced.get_run(r.id).cost_micro_usd == round(800_000 * 60 / 3600)  # the 60 s minimum


def test_cost_ticks_while_running(clock):
    engine = FakeEngine(clock, devices=1, durations={"PROCESSING": 1000})
    run = engine.submit_manifest(manifest())
    clock.advance(100)
    a = engine.get_run(run.id).cost_micro_usd
    clock.advance(100)
    b = engine.get_run(run.id).cost_micro_usd
    assert 0 < a < b


def test_planted_failures_and_env_knobs(clock):
    engine = FakeEngine(clock, devices=3)
    engine.fail_next(ErrorCode.OUT_OF_MEMORY, after=4)
    oom = engine.submit_manifest(manifest("oom"))
    env_fail = engine.submit_manifest(manifest("dl", env={"fake_fail": "S301", "fake_fail_state": "DOWNLOADING"}))
    slow = engine.submit_manifest(manifest("slow", env={"fake_duration": "500"}))
    clock.advance(60)
    got = {r.name: r for r in engine.list_runs()}
    assert (got["oom"].state, got["oom"].error_code) == (S.FAILED, "C202")
    assert "memory" in got["oom"].message
    assert (got["oom"].finished_at - got["oom"].started_at).total_seconds() == 4
    assert (got["dl"].state, got["dl"].error_code) == (S.FAILED, "S301")
    assert S.PROCESSING not in [e.state for e in engine.events(env_fail.id)]
    assert got["slow"].state == S.PROCESSING
    assert any("C202" in line for line in engine.logs(oom.id))
    assert engine.get_run(slow.id).state == S.PROCESSING


def test_halt_frees_devices_and_admits_next(clock):
    engine = FakeEngine(clock, devices=1, durations={"PROCESSING": 1000})
    a = engine.submit_manifest(manifest("a"))
    b = engine.submit_manifest(manifest("b"))
    clock.advance(10)
    halted = engine.halt(a.id)
    assert halted.state == S.HALTED and halted.finished_at == clock.now()
    assert engine.get_run(b.id).state == S.PENDING
    assert engine.halt(a.id).state == S.HALTED  # idempotent on a finished run
    queued = engine.submit_manifest(manifest("c"))
    assert engine.halt(queued.id).state == S.HALTED
    assert engine.get_run(queued.id).cost_micro_usd == 0  # never billed


def test_preempt_opens_a_new_billed_interval(clock):
    engine = FakeEngine(clock, devices=1, durations={"PROCESSING": 100})
    run = engine.submit_manifest(manifest())
    clock.advance(50)
    engine.preempt(run.id)
    assert engine.get_run(run.id).state == S.PENDING  # admitted again at once: the device is free
    clock.advance(300)
    assert engine.get_run(run.id).state == S.COMPLETED
    assert len(engine.cost(run.id).intervals) == 2


def test_delete_and_not_found(clock):
    engine = FakeEngine(clock, devices=1, durations={"PROCESSING": 5})
    run = engine.submit_manifest(manifest())
    with pytest.raises(BadInput, match=run.id):
        engine.delete(run.id)
    clock.advance(60)
    engine.delete(run.id)
    with pytest.raises(NotFound, match=run.id):
        engine.get_run(run.id)
    with pytest.raises(NotFound, match="training-nope"):
        engine.events("training-nope")


def test_never_fits_is_refused_at_submit(clock):
    engine = FakeEngine(clock, devices=2, tier_gpus=1)
    with pytest.raises(BadInput) as err:
        engine.submit_manifest(manifest(gpus=2))
    assert err.value.code == "C104" and "tier allows 1" in err.value.message
    with pytest.raises(BadInput, match="machine has 2"):
        FakeEngine(clock, devices=2).submit_manifest(manifest(gpus=1, learners=3))


def test_changes_cursor(clock):
    engine = FakeEngine(clock, devices=1, durations={"PROCESSING": 5})
    first = engine.changes()
    assert first.full and first.runs == []
    a = engine.submit_manifest(manifest("a"))
    b = engine.submit_manifest(manifest("b"))
    delta = engine.changes(first.cursor)
    assert not delta.full and {r.id for r in delta.runs} == {a.id, b.id}
    quiet = engine.changes(delta.cursor)
    assert quiet.runs == [] and quiet.deleted == [] and quiet.cursor == delta.cursor
    clock.advance(200)
    engine.delete(a.id)
    later = engine.changes(delta.cursor)
    assert later.deleted == [a.id] and [r.id for r in later.runs] == [b.id]
    assert engine.changes(10**9).full  # a cursor this engine never gave out


def test_follow_ends_with_the_run(clock):
    engine = FakeEngine(clock, devices=1, follow_step=1.0, durations={"PROCESSING": 20})
    run = engine.submit_manifest(manifest())
    lines = list(engine.logs(run.id, follow=True))
    assert lines[-1] == "[dlaas] run COMPLETED"
    assert engine.get_run(run.id).state == S.COMPLETED
    assert list(engine.logs(run.id, tail=2)) == lines[-2:]


def test_submit_from_files(tmp_path: Path, clock):
    import yaml

    path = tmp_path / "m.yml"
    path.write_text(yaml.safe_dump(manifest("from-file")))
    engine = FakeEngine(clock, devices=1)
    [run] = engine.submit(SubmitRequest(manifests=[path], experiment="exp1"))
    assert run.name == "from-file" and run.experiment == "exp1"
    assert "from-file" in engine.manifest_text(run.id)
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\ngpus: [\n")
    with pytest.raises(BadInput, match="bad.yml"):
        engine.submit(SubmitRequest(manifests=[bad]))
    assert len(engine.list_runs()) == 1


def test_seed_is_deterministic_and_consistent():
    a = FakeEngine(FakeClock(), devices=4, tier_gpus=2)
    b = FakeEngine(FakeClock(), devices=4, tier_gpus=2)
    ids = a.seed(2000, experiment_size=20)
    assert ids == b.seed(2000, experiment_size=20)
    runs = a.list_runs()
    counts = Counter(r.state for r in runs)
    assert counts[S.COMPLETED] > 0 and counts[S.FAILED] > 0 and counts[S.QUEUED] > 0
    assert sum(1 for r in runs if r.state.billed) <= 2
    queued = sorted((r for r in runs if r.state == S.QUEUED), key=lambda r: r.queue_position)
    assert [r.queue_position for r in queued] == list(range(1, len(queued) + 1))
    assert all(r.error_code for r in runs if r.state == S.FAILED)
    done = next(r for r in runs if r.state == S.COMPLETED)
    assert done.cost_micro_usd and done.cost_micro_usd > 0 and "loss" in done.metrics
    assert any("epoch=" in line for line in a.logs(done.id))
    a.clock.advance(3600)
    assert sum(1 for r in a.list_runs() if r.state == S.QUEUED) < counts[S.QUEUED]


def test_seed_ten_thousand():
    engine = FakeEngine(FakeClock(), devices=8)
    assert len(engine.seed(10_000)) == 10_000
    assert len(engine.changes().runs) == 10_000


def test_inventory_shows_holders_and_foreign_use(clock):
    engine = FakeEngine(clock, devices=2, gpu_type="NVIDIA A100-SXM4-80GB")
    engine.set_foreign(0, [999])
    run = engine.submit_manifest(manifest())
    inv = engine.inventory()
    assert inv.nvml_available and [d.gpu_type for d in inv.devices] == ["A100", "A100"]
    assert inv.devices[0].busy_foreign and inv.devices[0].held_by is None
    assert inv.devices[1].held_by == run.id
    cpu = FakeEngine(clock, devices=1, gpu_type="cpu").inventory()
    assert not cpu.nvml_available and cpu.devices[0].uuid == "cpu:0" and "cpu slot" in cpu.message


def test_from_backend_uses_profile_and_prices(monkeypatch, dlaas_home):
    from backend.facade import open_backend

    (dlaas_home / "config.toml").write_text(
        '[profiles.fake]\nscheduler = "fake"\ntier = "free"\n[prices]\nH100 = 1.0\n'
    )
    monkeypatch.setenv("DLAAS_FAKE_DEVICES", "3xH100")
    engine = open_backend("fake").engine
    assert isinstance(engine, FakeEngine)
    assert engine.tier_gpus == 1 and engine.device_count == 3
    assert engine.prices.rate("H100") == 1_000_000


def test_backend_cost_breakdown_through_the_facade(monkeypatch, dlaas_home):
    from backend.facade import open_backend

    (dlaas_home / "config.toml").write_text('[profiles.fake]\nscheduler = "fake"\n')
    backend = open_backend("fake")
    run = backend.engine.submit_manifest(manifest())
    lines = backend.cost_breakdown(run.id).lines()
    assert "H100" in lines[-1]


def test_sweep_gives_one_run_per_trial(tmp_path, clock):
    pytest.importorskip("backend.manifest.sweep")
    import yaml

    doc = manifest("sweepy", sweep={
        "method": "grid",
        "parameters": {"lr": {"values": [0.1, 0.01]}, "layers": {"values": [1, 2]}},
        "metric": {"name": "accuracy", "goal": "maximize"},
    })
    doc["framework"]["command"] = "python train.py --lr ${lr}"
    path = tmp_path / "sweep.yml"
    path.write_text(yaml.safe_dump(doc))
    engine = FakeEngine(clock, devices=4)
    runs = engine.submit(SubmitRequest(manifests=[path]))
    assert [r.name for r in runs] == ["sweepy-0", "sweepy-1", "sweepy-2", "sweepy-3"]
    assert len({r.experiment for r in runs}) == 1 and runs[0].experiment.startswith("sweepy-")
    assert runs[0].params == {"lr": 0.1, "layers": 1} and runs[3].params == {"lr": 0.01, "layers": 2}
    clock.advance(100)
    done = engine.get_run(runs[0].id)
    assert done.primary_metric == "accuracy" and done.metric_goal == "maximize"
    assert any("--lr 0.1" in line for line in engine.logs(runs[0].id))


def test_queued_runs_have_an_eta_that_learns(clock):
    """The one ETA model (backend/eta.py): max_duration as an upper bound until a run of the same
    manifest has completed, then what it took."""
    engine = FakeEngine(clock, devices=1, durations={"PENDING": 1, "DOWNLOADING": 2, "PROCESSING": 30, "STORING": 2})
    runs = [engine.submit_manifest(manifest("r", max_duration="10m")) for i in range(3)]
    first, second, third = (engine.get_run(r.id) for r in runs)
    assert first.eta is None  # admitted already
    assert (second.eta - clock.now()).total_seconds() == 600 and second.eta_bound
    assert (third.eta - clock.now()).total_seconds() == 1200 and third.eta_bound
    clock.advance(35)
    assert engine.get_run(runs[0].id).state == S.COMPLETED
    second = engine.get_run(runs[1].id)
    assert second.state == S.PENDING
    third = engine.get_run(runs[2].id)
    assert third.eta == second.admitted_at + timedelta(seconds=35) and not third.eta_bound


def test_where_cpu_slots_are_the_devices_a_queued_cpu_run_is_estimated_after_the_one_holding_its_slot(clock):
    """A run asking for no GPU holds a cpu slot (one per learner): the ETA of the one waiting for it is
    the running run's end, not "now", as the wait reason says."""
    engine = FakeEngine(clock, devices=1, gpu_type="cpu",
                        durations={"PENDING": 1, "DOWNLOADING": 2, "PROCESSING": 30, "STORING": 2})
    first, second = (engine.submit_manifest(manifest("c", gpus=0, max_duration="10m")) for _ in range(2))
    second = engine.get_run(second.id)
    assert engine.get_run(first.id).state == S.PENDING and second.state == S.QUEUED
    assert second.message == "cpu slots busy: needs 1, 0 free"
    assert (second.eta - clock.now()).total_seconds() == 600 and second.eta_bound
    # Two slots: a 2-learner cpu run holds both, so the next waits for it; learners beyond the box's
    # slots share them rather than wait for one that does not exist.
    engine = FakeEngine(clock, devices=2, gpu_type="cpu")
    wide = engine.submit_manifest(manifest("w", gpus=0, learners=3, max_duration="5m"))
    after = engine.submit_manifest(manifest("a", gpus=0, max_duration="5m"))
    assert engine.get_run(wide.id).state == S.PENDING and engine.get_run(wide.id).assigned == ["cpu:0", "cpu:1"]
    after = engine.get_run(after.id)
    assert after.state == S.QUEUED and (after.eta - clock.now()).total_seconds() == 300


def test_a_run_waiting_for_a_prerequisite_has_no_eta_and_the_run_behind_it_is_estimated_past_it(clock):
    engine = FakeEngine(clock, devices=1)
    first = engine.submit_manifest(manifest("a", max_duration="10m"))
    child = engine.submit_manifest(manifest("b", max_duration="10m"), after=[first.id])
    other = engine.submit_manifest(manifest("c", max_duration="10m"))
    child, other = engine.get_run(child.id), engine.get_run(other.id)
    assert child.state == S.QUEUED and child.message.startswith("waiting for") and child.eta is None
    assert (other.eta - clock.now()).total_seconds() == 600  # after a, not after a and b


def test_seeded_running_runs_go_on_with_consistent_metrics():
    engine = FakeEngine(FakeClock(), devices=2)
    engine.seed(40, states={S.PROCESSING: 1})
    running = [r for r in engine.list_runs() if r.state == S.PROCESSING]
    assert len(running) == 2
    engine.clock.advance(60)
    for run in running:
        steps = [p.step for p in engine.metrics(run.id) if p.name == "loss"]
        assert steps == list(range(1, 11))
        assert engine.get_run(run.id).state == S.COMPLETED
        assert engine.get_run(run.id).metrics["loss"] == engine.metrics(run.id)[-2].value


def test_queued_runs_say_why_they_wait_in_the_local_engines_words(clock):
    from backend import waits

    engine = FakeEngine(clock, devices=2, tier_gpus=2)
    running = engine.submit_manifest(manifest("big", gpus=2))
    head = engine.submit_manifest(manifest("head"))
    second = engine.submit_manifest(manifest("second"))
    third = engine.submit_manifest(manifest("third"))
    assert engine.get_run(running.id).state == S.PENDING
    # The head waits for the tier (both GPUs are spent); the runs behind it for the runs ahead.
    assert engine.get_run(head.id).message == waits.tier_limit("default", 0, 1)
    assert engine.get_run(second.id).message == "behind 1 run"
    assert engine.get_run(third.id).message == "behind 2 runs"
    # Without a tier, the head waits for busy GPUs, and says who holds them.
    engine = FakeEngine(clock, devices=1)
    engine.submit_manifest(manifest("one"))
    waiting = engine.submit_manifest(manifest("two"))
    assert engine.get_run(waiting.id).message == "GPUs busy: needs 1, 0 free (1 held by runs here)"
    # Once admitted, the reason is gone.
    clock.advance(400)
    assert engine.get_run(waiting.id).state != S.QUEUED
    assert "busy" not in engine.get_run(waiting.id).message
    # The reasons travel in the change set, so a UI that follows changes sees them move.
    engine = FakeEngine(clock, devices=1)
    engine.submit_manifest(manifest("a"))
    cursor = engine.changes().cursor
    late = engine.submit_manifest(manifest("b"))
    assert any(r.id == late.id and r.message.startswith("GPUs busy") for r in engine.changes(cursor).runs)


def test_dependencies_wait_then_start_or_end_with_c206(clock):
    engine = FakeEngine(clock, devices=2)
    first = engine.submit_manifest(manifest("prep"))
    child = engine.submit_manifest(manifest("train", depends_on=[first.id]))
    grandchild = engine.submit_manifest(manifest("eval"), after=[child.id])
    assert engine.get_run(child.id).depends_on == [first.id]
    assert engine.get_run(grandchild.id).depends_on == [child.id]
    # A free GPU is not enough: the dependent waits for its prerequisite, which does not block others.
    got = engine.get_run(child.id)
    assert got.state == S.QUEUED and got.message.startswith(f"waiting for {first.id} (")
    other = engine.submit_manifest(manifest("other"))
    assert engine.get_run(other.id).state == S.PENDING
    clock.advance(600)
    assert engine.get_run(first.id).state == S.COMPLETED
    assert engine.get_run(child.id).state != S.QUEUED
    # A prerequisite that ends FAILED or HALTED ends its dependents, and theirs, with C206.
    bad = engine.submit_manifest(manifest("bad"))
    kid = engine.submit_manifest(manifest("kid", depends_on=[bad.id]))
    grandkid = engine.submit_manifest(manifest("grandkid", depends_on=[kid.id]))
    engine.halt(bad.id)
    for rid, dep in ((kid.id, bad.id), (grandkid.id, kid.id)):
        run = engine.get_run(rid)
        assert run.state == S.FAILED and run.error_code == ErrorCode.DEPENDENCY_FAILED.value
        assert run.message.startswith(f"not started: {dep}, which it depends on, ended ")
    # Unknown or already-failed prerequisites are refused at submit, as on the local engine.
    with pytest.raises(BadInput, match="no run 'nope'"):
        engine.submit_manifest(manifest("x", depends_on=["nope"]))
    with pytest.raises(BadInput, match="could never start"):
        engine.submit_manifest(manifest("y"), after=[bad.id])


def test_submit_after_the_last_submission(tmp_path, clock):
    engine = FakeEngine(clock, devices=1)
    path = tmp_path / "m.yaml"
    import yaml

    path.write_text(yaml.safe_dump(manifest("m")))
    with pytest.raises(BadInput, match="nothing has been submitted"):
        engine.submit(SubmitRequest(manifests=[path], after=["@"]))
    first = engine.submit(SubmitRequest(manifests=[path]))
    second = engine.submit(SubmitRequest(manifests=[path], after=["@"]))
    assert second[0].depends_on == [first[0].id]


def test_set_priority_moves_a_queued_run_and_refuses_any_other(clock):
    """As the local engine: by name or number, the queue and every position follow at once, an event
    says so; a run that is not queued, or a priority that is neither, is refused with its id."""
    engine = FakeEngine(clock, devices=1)
    running = engine.submit_manifest(manifest("running"))
    a, b, c = (engine.submit_manifest(manifest(n)) for n in ("a", "b", "c"))
    assert [engine.get_run(r.id).queue_position for r in (a, b, c)] == [1, 2, 3]
    moved = engine.set_priority(c.id, "high")
    assert moved.priority == "high" and moved.queue_position == 1
    assert [engine.get_run(r.id).queue_position for r in (a, b)] == [2, 3]
    assert engine.events(c.id)[-1].message == "priority changed from normal (0) to high (1000)"
    assert engine.set_priority(a.id, "-100").priority == "low"  # a number a name stands for takes it
    assert engine.get_run(a.id).queue_position == 3
    assert engine.set_priority(b.id, "7").priority == "7"
    with pytest.raises(BadInput, match=f"{running.id}: run is PENDING"):
        engine.set_priority(running.id, "high")
    with pytest.raises(BadInput, match="neither a number nor one of high"):
        engine.set_priority(b.id, "urgent")
    engine.halt(running.id)
    clock.advance(60)
    assert engine.get_run(c.id).state is not S.QUEUED  # the high one went first
