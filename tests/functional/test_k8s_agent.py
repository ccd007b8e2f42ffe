"""The Kubernetes engine's SQLite ledger and the agent's Kubernetes part, against kmock (KubeSim),
the test playing Kueue and the kubelet.

- a run's whole history outlives the process (the file, opened again, holds every transition);
- `changes(cursor)` from the file;
- held sweep runs are released `parallel` at a time;
- the real agent process watches the cluster, and after a restart records, in order, what happened
  while it was down.
"""
from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from backend.engines.kubernetes.client import KubeApi
from backend.engines.kubernetes.engine import KubernetesEngine
from backend.engines.kubernetes.sqlite_ledger import SqliteLedger
from backend.ledger.files import ledger_path
from backend.runs import RunState
from tests.fixtures import k8s_objects as fx
from tests.fixtures import kube_sim
from tests.fixtures.kube_sim import NS, FakeStore, KubeSim

pytest.importorskip("kmock")

ALL_STATES = [RunState.QUEUED, RunState.PENDING, RunState.DOWNLOADING, RunState.PROCESSING, RunState.STORING,
              RunState.COMPLETED]



@pytest.fixture
def sim():
    s = KubeSim().start()
    s.add_node("gpu-node-7", "NVIDIA-H100-80GB-HBM3", 8)
    yield s
    s.stop()


def _profile():
    prof = fx.profile()
    return prof.model_copy(update={"kubernetes": prof.kubernetes.model_copy(update={"namespace": NS})})


def _engine(sim, path: Path, store=None) -> KubernetesEngine:
    return KubernetesEngine(KubeApi.for_host(sim.url), _profile(), fx.config(), store=store or FakeStore(),
                            user="ada", ledger=SqliteLedger(path, "lab"))


def _states(engine, run_id):
    return [e.state for e in engine.events(run_id) if e.state]


def _run_to_completion(sim, run_id, sync=lambda: None):
    sim.add_workload(run_id)
    sync()
    sim.admit(run_id, at=60)
    sim.add_pod(run_id, "p1", created=61)
    sync()
    sim.schedule("p1", "gpu-node-7", at=100)
    sim.loader_running("p1", at=101)
    sync()
    sim.learner_running("p1", 130, "dlaas: gpus: none", "epoch 1 loss=0.5")
    sync()
    sim.append_log("p1", "dlaas: storing results", 390)
    sim.storing("p1", 390)
    sync()
    sim.learner_ended("p1", 400, 0, {"exit_code": 0, "stored": True})
    sim.finish_job(run_id, 405, ok=True)
    sync()


def test_history_and_changes_survive_a_second_open(sim, tmp_path):
    path = tmp_path / "state" / "kubernetes" / "lab.db"
    first = _engine(sim, path)
    run_id = "training-sqlite01"
    first.submit_run(fx.manifest(), run_id=run_id, manifest_text="name: x\n")
    cursor = first.changes().cursor
    _run_to_completion(sim, run_id, first.sync_once)
    history = [(e.state, e.at, e.message) for e in first.events(run_id)]
    final = first.get_run(run_id).to_json()
    first.close()

    second = _engine(sim, path)  # a new connection, nothing in memory: only the file
    assert [(e.state, e.at, e.message) for e in second.events(run_id)] == history
    assert _states(second, run_id) == ALL_STATES
    assert second.get_run(run_id).to_json() == final
    assert final["state"] == "COMPLETED" and final["cost_usd"] > 0
    changes = second.changes(cursor)
    assert not changes.full and [r.id for r in changes.runs] == [run_id]
    assert second.changes(changes.cursor).runs == []
    assert oct(path.stat().st_mode & 0o777) == "0o600"

    second.delete(run_id)  # forgotten runs are reported as deleted; the ledger file keeps their events
    gone = second.changes(changes.cursor)
    assert gone.deleted == [run_id] and gone.runs == []
    assert _engine(sim, path).list_runs() == []
    second.close()


def test_a_stale_view_from_another_process_never_revives_an_ended_run(sim, tmp_path):
    path = tmp_path / "lab.db"
    agent_side, cli_side = _engine(sim, path), _engine(sim, path)
    run_id = "training-sqlite03"
    agent_side.submit_run(fx.manifest(), run_id=run_id)
    stale = agent_side.get_run(run_id)  # what the agent had read before the halt landed
    cli_side.halt(run_id)
    stale.state = RunState.PENDING
    from backend.runs import RunEvent, utcnow

    agent_side.ledger.record(RunEvent(run_id, utcnow(), RunState.PENDING, "scheduled"))
    agent_side.ledger.put_run(stale)
    assert agent_side.get_run(run_id).state == RunState.HALTED
    assert _states(agent_side, run_id) == [RunState.QUEUED, RunState.HALTED]


def test_run_json_written_once_across_opens(sim, tmp_path):
    path = tmp_path / "lab.db"
    store = FakeStore()
    first = _engine(sim, path, store)
    run_id = "training-sqlite02"
    first.submit_run(fx.manifest(), run_id=run_id)
    _run_to_completion(sim, run_id, first.sync_once)
    doc = json.loads(store.objects.pop(("mnist-results", f"{run_id}/run.json")))
    assert [e["state"] for e in doc["events"] if e["state"]] == [s.value for s in ALL_STATES]
    first.close()
    second = _engine(sim, path, store)
    second.sync_once()
    second._write_run_json(second.get_run(run_id))
    assert ("mnist-results", f"{run_id}/run.json") not in store.objects  # the flag lives in the file too


def _sweep_request(tmp_path, trials=5, parallel=2, **sweep):
    from backend.runs import SubmitRequest

    folder = tmp_path / "sweep"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "train.py").write_text("print('loss=1')\n")
    manifest = fx.manifest().model_dump(mode="json", by_alias=True, exclude_none=True)
    manifest["sweep"] = {"method": "grid", "parallel": parallel,
                         "parameters": {"lr": {"values": [0.1 * (i + 1) for i in range(trials)]}}, **sweep}
    manifest["framework"]["command"] = "python train.py --lr ${lr}"
    import yaml

    (folder / "manifest.yml").write_text(yaml.safe_dump(manifest))
    return SubmitRequest(manifests=[folder / "manifest.yml"], experiment="lr-sweep")


def _unfinished_jobs(sim):
    with sim.lock:
        return [n for n, j in sim.jobs.items() if not j["status"].get("conditions")]


def test_sweep_is_released_parallel_at_a_time(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("DLAAS_AGENT_AUTOSTART", "0")
    engine = _engine(sim, tmp_path / "lab.db")
    runs = engine.submit(_sweep_request(tmp_path))
    assert len(runs) == 5 and all(r.state == RunState.QUEUED for r in runs)
    assert sorted(_unfinished_jobs(sim)) == sorted(r.id for r in runs[:2])  # no agent: released in-process
    assert "held back" in engine.get_run(runs[4].id).message
    most = 0
    for _round in range(10):
        engine.release_held()
        engine.sync_once()
        live = _unfinished_jobs(sim)
        most = max(most, len(live))
        assert len(live) <= 2
        if not live:
            break
        sim.finish_job(live[0], 500 + _round, ok=True)
    assert most == 2 and len(sim.jobs) == 5
    assert all(engine.get_run(r.id).state == RunState.COMPLETED for r in runs)
    assert _states(engine, runs[4].id).count(RunState.QUEUED) == 1
    assert engine.get_run(runs[4].id).submitted_at == runs[4].submitted_at
    # held runs are never mistaken for Jobs that vanished, and their manifest is kept
    assert engine.manifest_text(runs[4].id).startswith(("data_stores", "name", "cpus"))


def test_a_run_halted_while_held_is_never_created(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("DLAAS_AGENT_AUTOSTART", "0")
    engine = _engine(sim, tmp_path / "lab.db")
    runs = engine.submit(_sweep_request(tmp_path, trials=3, parallel=1))
    engine.sync_once()
    assert engine.get_run(runs[1].id).state == RunState.QUEUED  # held, not vanished
    engine.halt(runs[1].id)
    sim.finish_job(runs[0].id, 600, ok=True)
    engine.sync_once()
    engine.release_held()
    assert runs[1].id not in sim.jobs and runs[2].id in sim.jobs
    assert engine.get_run(runs[1].id).state == RunState.HALTED


def test_held_runs_of_a_sweep_that_reached_max_failed_end_halted(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("DLAAS_AGENT_AUTOSTART", "0")
    engine = _engine(sim, tmp_path / "lab.db")
    runs = engine.submit(_sweep_request(tmp_path, trials=4, parallel=1, max_failed=1))
    assert list(sim.jobs) == [runs[0].id]
    sim.finish_job(runs[0].id, 50, ok=False, reason="BackoffLimitExceeded")
    engine.sync_once()
    assert engine.release_held() == []
    assert list(sim.jobs) == [runs[0].id]
    assert engine.get_run(runs[0].id).state == RunState.FAILED
    for held in runs[1:]:
        run = engine.get_run(held.id)
        assert (run.state, run.error_code) == (RunState.HALTED, "C205")
        assert run.message == "not started: experiment lr-sweep reached max_failed (1 failed)"
        assert run.cost_usd == 0


# -- the agent process ---------------------------------------------------------------------------------
def _wait(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow
def test_agent_watches_and_catches_up_after_a_restart(sim, dlaas_home, tmp_path, monkeypatch):
    from backend.agentlink.control import agent_pid, ensure_agent, stop_agent
    from backend.facade import open_backend

    fx.write_sim_profile(sim.url, NS, dlaas_home, tmp_path)
    monkeypatch.setenv("DLAAS_AGENT_AUTOSTART", "0")
    monkeypatch.setenv("DLAAS_K8S_RESYNC", "0.3")  # kmock's watch streams only scripted events
    backend = open_backend("lab")
    path = ledger_path(backend.paths, "lab")
    cli_engine = backend.engine  # creates the profile's ledger: the agent will watch this profile
    assert isinstance(cli_engine.ledger, SqliteLedger) and cli_engine.ledger.path == path
    run_id = "training-agent001"
    cli_engine.hold_run(fx.manifest(), run_id=run_id, experiment="e")
    pid = ensure_agent(backend.paths)
    try:
        _wait(lambda: run_id in sim.jobs, "the agent to release the held run")
        sim.add_workload(run_id)
        sim.admit(run_id, at=60)
        sim.add_pod(run_id, "p1", created=61)
        sim.schedule("p1", "gpu-node-7", at=100)
        _wait(lambda: cli_engine.get_run(run_id).state == RunState.PENDING, "the agent to see PENDING")
    finally:
        assert stop_agent(backend.paths) == pid
    assert agent_pid(backend.paths.state_dir) is None
    # While no agent runs, the run goes on on the cluster.
    sim.loader_running("p1", at=101)
    sim.learner_running("p1", 130, "dlaas: gpus: none", "loss=0.5")
    sim.learner_ended("p1", 400, 0, {"exit_code": 0, "stored": True})
    sim.finish_job(run_id, 405, ok=True)
    assert cli_engine.get_run(run_id).state == RunState.PENDING
    pid = ensure_agent(backend.paths)
    try:
        _wait(lambda: cli_engine.get_run(run_id).state == RunState.COMPLETED, "the restarted agent to catch up")
    finally:
        stop_agent(backend.paths)
    events = [e for e in cli_engine.events(run_id) if e.state]
    assert [e.state for e in events] == ALL_STATES
    assert [e.at for e in events] == sorted(e.at for e in events)
    # the states missed while down carry the cluster's own times, not the time the agent came back
    assert events[3].at == kube_sim.T0 + timedelta(seconds=130)
    assert events[-1].at == kube_sim.T0 + timedelta(seconds=405)
    log = (backend.paths.state_dir / "agent.log").read_text()
    assert "watching namespace" in log and "Traceback" not in log
    backend.close()
    assert os.path.exists(path)


def test_a_held_runs_priority_goes_into_its_job_when_it_is_released(sim, tmp_path, monkeypatch):
    from backend.engines.kubernetes import render

    monkeypatch.setenv("DLAAS_AGENT_AUTOSTART", "0")
    engine = _engine(sim, tmp_path / "lab.db")
    first, held = engine.submit(_sweep_request(tmp_path, trials=2, parallel=1))
    assert held.id not in sim.jobs
    assert engine.set_priority(held.id, "low").priority == "low"
    assert sim.patches == []  # no Job to patch: the held manifest carries it
    assert any(e.message == "priority changed from high to low (-100)" for e in engine.events(held.id))
    sim.finish_job(first.id, 600, ok=True)
    engine.sync_once()
    engine.release_held()
    assert sim.jobs[held.id]["metadata"]["labels"][render.PRIORITY_LABEL] == "low"
    engine.sync_once()
    assert engine.get_run(held.id).priority == "low"
