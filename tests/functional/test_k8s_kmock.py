"""The Kubernetes engine over HTTP against kmock on a thread, the test playing Kueue, the Job
controller and the kubelet with the condition sequences Kueue documents:

  QuotaReserved=False(Pending) -> QuotaReserved=True, Admitted=True (Job unsuspended)
  -> pod PodScheduled -> init container -> learner -> Job Complete/Failed, Workload Finished=True
  eviction: Evicted=True(Preempted), QuotaReserved=False, Admitted=False, Job suspended again.
"""
from __future__ import annotations

from datetime import timedelta

import pytest

from backend.engines.kubernetes import kueue, logs, render
from backend.engines.kubernetes.client import KubeApi, KubeForbidden
from backend.engines.kubernetes.engine import KubernetesEngine
from backend.cost import billed_intervals
from backend.engines.kubernetes.watch import Reflector
from backend.errors import EngineError, NotFound
from backend.runs import RunState
from tests.fixtures import k8s_objects as fx
from tests.fixtures import kube_sim
from tests.fixtures.kube_sim import NS, FakeStore, KubeSim, ts

pytest.importorskip("kmock")



@pytest.fixture
def sim():
    s = KubeSim().start()
    yield s
    s.stop()


@pytest.fixture
def engine(sim):
    prof = fx.profile().model_copy(update={"kubernetes": fx.profile().kubernetes.model_copy(update={"namespace": NS})})
    eng = KubernetesEngine(KubeApi.for_host(sim.url), prof, fx.config(), store=FakeStore(), user="ada")
    yield eng
    eng.close()


def _states(engine, run_id):
    return [e.state for e in engine.events(run_id) if e.state]


def test_create_job_then_owned_objects_with_the_jobs_uid(sim, engine):
    run = engine.submit_run(fx.manifest(), run_id="training-aaaaaaa1", model_zip=b"PK-zip")
    assert run.state == RunState.QUEUED and run.gpus == 2 and run.gpu_type == "H100"
    job = sim.jobs["training-aaaaaaa1"]
    assert job["spec"]["suspend"] is True
    wrapper, secret = sim.owned
    assert (wrapper["kind"], secret["kind"]) == ("ConfigMap", "Secret")
    assert wrapper["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    assert secret["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    assert secret["stringData"]["AWS_SECRET_ACCESS_KEY"] == "s3cr3t-value-never-in-a-job"
    assert engine.store.objects[("mnist-results", "training-aaaaaaa1/_submitted_code/model.zip")] == b"PK-zip"
    methods = [(m, p.rsplit("/", 1)[-1]) for m, p, _ in sim.requests]
    assert methods[:3] == [("POST", "jobs"), ("POST", "configmaps"), ("POST", "secrets")]  # the Job first: its uid owns the rest


def test_full_lifecycle_states_times_gpus_and_cost(sim, engine):
    run_id = "training-aaaaaaa2"
    engine.submit_run(fx.manifest(), run_id=run_id)
    sim.add_node("gpu-node-7", "NVIDIA-H100-80GB-HBM3", 8)
    sim.add_workload(run_id)
    engine.sync_once()
    run = engine.get_run(run_id)
    # Kueue's "insufficient unused quota ... 2 more needed", in the local engine's words
    assert run.state == RunState.QUEUED
    assert run.message == "GPUs busy: needs 2, 0 free (quota of flavor h100 in use, 2 more needed)"
    assert run.queue_position == 1 and run.queue_position_approximate is False

    sim.admit(run_id, at=60)
    sim.add_pod(run_id, "p1", created=61)
    engine.sync_once()
    run = engine.get_run(run_id)
    assert run.state == RunState.QUEUED and "Insufficient nvidia.com/gpu" in run.message  # admitted, no node yet

    sim.schedule("p1", "gpu-node-7", at=100)
    sim.loader_running("p1", at=101)
    engine.sync_once()
    assert engine.get_run(run_id).state == RunState.DOWNLOADING

    sim.learner_running("p1", 130, "dlaas: gpus: 0,GPU-aaaa,NVIDIA H100 80GB HBM3;1,GPU-bbbb,NVIDIA H100 80GB HBM3",
                        "epoch 1 loss=0.5")
    engine.sync_once()
    run = engine.get_run(run_id)
    assert run.state == RunState.PROCESSING
    assert run.assigned == ["GPU-aaaa NVIDIA H100 80GB HBM3", "GPU-bbbb NVIDIA H100 80GB HBM3"]
    assert run.node == "gpu-node-7" and run.gpu_type == "H100"
    assert run.admitted_at == kube_sim.T0 + timedelta(seconds=100)  # PodScheduled: billing starts here
    assert run.started_at == kube_sim.T0 + timedelta(seconds=130)

    sim.append_log("p1", "dlaas: storing results", 390)
    sim.storing("p1", 390)
    engine.sync_once()
    assert engine.get_run(run_id).state == RunState.STORING

    sim.learner_ended("p1", 400, 0, {"exit_code": 0, "stored": True})
    sim.finish_job(run_id, 405, ok=True)
    engine.sync_once()
    run = engine.get_run(run_id)
    assert run.state == RunState.COMPLETED and run.error_code is None
    assert _states(engine, run_id) == [RunState.QUEUED, RunState.PENDING, RunState.DOWNLOADING,
                                       RunState.PROCESSING, RunState.STORING, RunState.COMPLETED]
    spans = billed_intervals(engine.events(run_id), kube_sim.T0 + timedelta(hours=1))
    assert [(a.isoformat(), b.isoformat()) for a, b in spans] == [(ts(100).replace("Z", "+00:00"),
                                                                    ts(405).replace("Z", "+00:00"))]
    # 305 s on 2 H100 at 6.88/h
    assert run.cost_micro_usd == round(305 * 2 * 6.88 * 1_000_000 / 3600)
    stored = engine.store.objects[("mnist-results", f"{run_id}/run.json")]
    assert b'"COMPLETED"' in stored and b'"events"' in stored


@pytest.mark.parametrize("days", [-9, 400])
def test_a_cluster_whose_clock_differs_bills_on_its_own_clock(sim, engine, monkeypatch, days):
    """The API server's clock is days behind (or ahead of) ours: the ledger and the bill keep the
    cluster's times, live and final, and the submission is stamped with the Job's creationTimestamp."""

    monkeypatch.setattr(kube_sim, "T0", kube_sim.T0 + timedelta(days=days))
    at = lambda seconds: kube_sim.T0 + timedelta(seconds=seconds)  # noqa: E731
    run_id = "training-aaaaaaa9"
    engine.submit_run(fx.manifest(), run_id=run_id)
    assert abs(engine.cluster_now() - at(0)) < timedelta(seconds=5)
    sim.add_node("gpu-node-7", "NVIDIA-H100-80GB-HBM3", 8)
    sim.add_workload(run_id)
    sim.admit(run_id, 1)
    sim.add_pod(run_id, "p1", created=1)
    sim.schedule("p1", "gpu-node-7", at=2)
    sim.learner_running("p1", 3, "dlaas: gpus: none", "loss=0.5")
    engine.sync_once()
    run = engine.get_run(run_id)
    assert run.state == RunState.PROCESSING and run.admitted_at == at(2)
    assert 0 < run.cost_micro_usd <= round(120 * 2 * 6.88 * 1_000_000 / 3600)  # the minute minimum, not days

    sim.learner_ended("p1", 140, 0, {"exit_code": 0, "stored": True})
    sim.finish_job(run_id, 142, ok=True)
    engine.sync_once()
    run = engine.get_run(run_id)
    events = [e for e in engine.events(run_id) if e.state]
    assert run.state == RunState.COMPLETED and at(0) <= events[0].at <= at(1)  # the Job's creationTimestamp
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert billed_intervals(engine.events(run_id), at(3600)) == [(at(2), at(142))]
    assert run.cost_micro_usd == round(140 * 2 * 6.88 * 1_000_000 / 3600)


def test_a_late_watcher_fills_in_skipped_states_from_pod_times(sim, engine):
    run_id = "training-aaaaaaa3"
    engine.submit_run(fx.manifest(), run_id=run_id)
    sim.add_workload(run_id)
    sim.admit(run_id, 50)
    sim.add_pod(run_id, "p1", 51)
    sim.schedule("p1", "n1", 70)
    sim.learner_running("p1", 90, "dlaas: gpus: none")
    sim.learner_ended("p1", 200, 3, {"exit_code": 3, "timed_out": False, "oom": False, "stored": True})
    sim.finish_job(run_id, 201, ok=False, reason="BackoffLimitExceeded")
    engine.sync_once()  # first look: everything already happened
    run = engine.get_run(run_id)
    assert run.state == RunState.FAILED and run.error_code == "C201" and "exited with 3" in run.message
    evs = [e for e in engine.events(run_id) if e.state]
    assert [e.state for e in evs][:2] == [RunState.QUEUED, RunState.PENDING]
    assert evs[1].at == kube_sim.T0 + timedelta(seconds=70)  # PodScheduled's own time


def test_eviction_goes_back_to_queued_and_opens_a_new_interval(sim, engine):
    run_id = "training-aaaaaaa4"
    engine.submit_run(fx.manifest(), run_id=run_id)
    sim.add_workload(run_id)
    sim.admit(run_id, 10)
    sim.add_pod(run_id, "p1", 11)
    sim.schedule("p1", "n1", 20)
    sim.learner_running("p1", 30, "dlaas: gpus: none", "step 1")
    engine.sync_once()
    assert engine.get_run(run_id).state == RunState.PROCESSING

    sim.evict(run_id, 100)
    engine.sync_once()
    run = engine.get_run(run_id)
    assert run.state == RunState.QUEUED and "Preempted" in run.message

    sim.pods.pop("p1")
    sim.admit(run_id, 200)
    sim.add_pod(run_id, "p2", 201)
    sim.schedule("p2", "n2", 210)
    sim.learner_running("p2", 220, "dlaas: gpus: none", "step 1 again")
    engine.sync_once()
    assert engine.get_run(run_id).state == RunState.PROCESSING
    spans = billed_intervals(engine.events(run_id), kube_sim.T0 + timedelta(hours=1))
    # the first span closed at the eviction; the second opened when the new pod got its node
    at = lambda seconds: kube_sim.T0 + timedelta(seconds=seconds)  # noqa: E731
    assert spans == [(at(20), at(100)), (at(210), at(3600))]
    states = _states(engine, run_id)
    assert states.count(RunState.QUEUED) == 2 and states.count(RunState.PENDING) == 2


def test_list_then_watch_with_bookmark_and_410_relist(sim):
    api = KubeApi.for_host(sim.url)
    sim.jobs["old"] = {"metadata": {"name": "old", "namespace": NS, "labels": {render.LABEL_RUN: "old"}}}
    seen = []
    r = Reflector(api, f"/apis/batch/v1/namespaces/{NS}/jobs", label_selector=render.LABEL_RUN,
                  keep=lambda o: render.LABEL_RUN in o["metadata"].get("labels", {}),
                  on_event=lambda kind, obj: seen.append((kind, obj["metadata"]["name"])))
    r.list()
    first_rv = r.resource_version
    new = {"metadata": {"name": "new", "namespace": NS, "resourceVersion": "500", "labels": {render.LABEL_RUN: "new"}}}
    foreign = {"metadata": {"name": "foreign", "namespace": NS, "resourceVersion": "501", "labels": {}}}
    sim.watch_scripts["jobs"].extend([
        [{"type": "ADDED", "object": new}, {"type": "ADDED", "object": foreign},
         {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "777"}}}],
        [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                      "message": "too old resource version: 777 (900)"}}],
    ])
    r.watch_once(timeout_seconds=5)
    assert r.resource_version == "777" and r.stats.bookmarks == 1
    watch_query = [q for m, p, q in sim.requests if q.get("watch") == "true"][0]
    assert watch_query["resourceVersion"] == first_rv and watch_query["allowWatchBookmarks"] == "true"
    # the cluster moved on while the watch was cut: "old" deleted, "new" changed
    sim.jobs.pop("old")
    sim.jobs["new"] = dict(new, spec={"suspend": False})
    r.watch_once(timeout_seconds=5)
    assert r.stats.gone == 1 and r.stats.lists == 2
    assert seen == [("ADDED", "old"), ("ADDED", "new"), ("MODIFIED", "new"), ("DELETED", "old")]
    assert set(r.objects) == {f"{NS}/new"}


def test_forbidden_gives_a_clear_message(sim, engine):
    sim.workloads_forbidden = True
    sim.visibility["v1beta2"] = "forbidden"
    with pytest.raises(KubeForbidden) as err:
        KubeApi.for_host(sim.url).request("GET", f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{NS}/workloads")
    text = str(err.value)
    assert "forbidden (403)" in text and "cluster setup" in text and "Traceback" not in text
    assert isinstance(err.value, EngineError)  # the CLI turns it into one line and exit 1


def test_visibility_positions_v1beta2_then_v1beta1_then_approximation(sim, engine):
    api = engine.api
    for i, (rid, prio) in enumerate([("training-bbbbbbb1", 0), ("training-bbbbbbb2", 1000), ("training-bbbbbbb3", 0)]):
        engine.submit_run(fx.manifest(), run_id=rid)
        sim.add_workload(rid, priority=prio, created=10 + i, uid_in_label=(rid == "training-bbbbbbb3"))
    uids = {sim.jobs[r]["metadata"]["uid"]: r for r in sim.jobs}
    pos = kueue.queue_positions(api, NS, "team-a-queue", uids)
    assert pos.source == "visibility/v1beta2" and not pos.approximate
    assert pos.by_job == {"training-bbbbbbb2": 1, "training-bbbbbbb1": 2, "training-bbbbbbb3": 3}

    sim.visibility = {"v1beta2": "missing", "v1beta1": "serve"}
    assert kueue.queue_positions(api, NS, "team-a-queue", uids).source == "visibility/v1beta1"

    sim.visibility = {"v1beta2": "forbidden", "v1beta1": "missing"}
    approx = kueue.queue_positions(api, NS, "team-a-queue", uids)
    assert approx.approximate and approx.source == "workloads/v1beta2"
    assert approx.by_job["training-bbbbbbb2"] == 1 and approx.by_job["training-bbbbbbb3"] == 3

    engine.sync_once()
    run = engine.get_run("training-bbbbbbb3")
    assert run.queue_position == 3 and run.queue_position_approximate is True
    assert run.to_json()["queue_position_approximate"] is True


def test_kueue_pending_reasons_read_as_the_local_engines_words_and_follow_the_queue(sim, engine):
    ids = ["training-wwwwwww1", "training-wwwwwww2", "training-wwwwwww3"]
    for i, rid in enumerate(ids):
        engine.submit_run(fx.manifest(), run_id=rid)
        sim.add_workload(rid, created=10 + i)
    # Kueue has looked at the head only; the others carry no reason of their own yet
    for rid in ids[1:]:
        sim.workloads[rid]["status"]["conditions"] = []
    engine.sync_once()
    engine.sync_once()  # the second pass words the queue places the first one learned
    said = {rid: engine.get_run(rid).message for rid in ids}
    assert said == {ids[0]: "GPUs busy: needs 2, 0 free (quota of flavor h100 in use, 2 more needed)",
                    ids[1]: "behind 1 run", ids[2]: "behind 2 runs"}
    notes_before = [e.message for e in engine.events(ids[2]) if e.state is None]
    # the head leaves the queue (admitted): the others move up, and that is no event of theirs
    sim.admit(ids[0], at=60)
    engine.sync_once()
    assert engine.get_run(ids[2]).message == "behind 1 run"
    assert engine.get_run(ids[1]).message == "waiting for Kueue to admit it"
    assert [e.message for e in engine.events(ids[2]) if e.state is None] == notes_before
    # the LocalQueue removed, a Workload deactivated, a preemption: each said in those words, as an event
    sim.set_conditions(ids[1], kube_sim.cond("QuotaReserved", False, 70, "Inadmissible",
                                             "LocalQueue team-a-queue doesn't exist"))
    sim.workloads[ids[2]]["spec"]["active"] = False
    engine.sync_once()
    run = engine.get_run(ids[1])
    assert run.message.startswith("queue missing: LocalQueue team-a-queue does not exist")
    assert any(e.message == run.message for e in engine.events(ids[1]))
    assert engine.get_run(ids[2]).message.startswith("held (its Workload is deactivated")


def test_log_follow_moves_to_the_next_pod_after_a_restart(sim, engine):
    run_id = "training-aaaaaaa5"
    engine.submit_run(fx.manifest(), run_id=run_id)
    sim.add_pod(run_id, "p1", 10)
    sim.schedule("p1", "n1", 11)
    sim.learner_running("p1", 20, "dlaas: gpus: none", "first pod line")
    sim.learner_ended("p1", 30, 143, {"exit_code": 143})
    sim.add_pod(run_id, "p2", 40)
    sim.schedule("p2", "n2", 41)
    sim.learner_running("p2", 50, "dlaas: gpus: none", "second pod line")
    sim.learner_ended("p2", 60, 0, {"exit_code": 0})
    lines = list(logs.follow(engine.api, NS, run_id, finished=lambda: True, poll=0.01))
    assert lines == ["dlaas: gpus: none", "first pod line", "dlaas: gpus: none", "second pod line"]
    tail = list(logs.follow(engine.api, NS, run_id, tail=1, finished=lambda: True, poll=0.01))
    assert tail == ["second pod line"]
    follows = [q for m, p, q in sim.requests if q.get("follow") == "true"]
    assert all(q["container"] == "learner" for q in follows)


def test_halt_deletes_foreground_and_records_halted(sim, engine):
    run_id = "training-aaaaaaa6"
    engine.submit_run(fx.manifest(), run_id=run_id)
    run = engine.halt(run_id)
    assert run.state == RunState.HALTED
    assert sim.deleted == [(run_id, "Foreground")]
    assert engine.halt(run_id).state == RunState.HALTED  # halting twice is harmless
    with pytest.raises(NotFound, match="training-zzzzzzzz"):
        engine.halt("training-zzzzzzzz")


def test_finished_run_logs_come_from_the_results_bucket(sim, engine):
    run_id = "training-aaaaaaa7"
    engine.submit_run(fx.manifest(), run_id=run_id)
    engine.halt(run_id)
    engine.store.put_bytes("mnist-results", f"{run_id}/learner-0/training-log.txt", b"a\nb\nc\n")
    assert list(engine.logs(run_id, tail=2)) == ["b", "c"]


def test_a_job_that_vanished_is_reported_lost(sim, engine):
    run_id = "training-aaaaaaa8"
    engine.submit_run(fx.manifest(), run_id=run_id)
    sim.jobs.clear()
    engine.sync_once()
    run = engine.get_run(run_id)
    assert run.state == RunState.FAILED and run.error_code == "S401"


def test_runs_found_on_the_cluster_are_caught_up(sim, engine):
    run_id = "training-aaaaaaa9"
    engine.submit_run(fx.manifest(), run_id=run_id, experiment="exp-1")
    fresh = KubernetesEngine(engine.api, engine.profile, engine.config)  # a restarted agent, empty ledger
    sim.add_workload(run_id)
    fresh.sync_once()
    run = fresh.get_run(run_id)
    assert run.name == "mnist CNN (v2)" and run.experiment == "exp-1" and run.gpus == 2
    assert run.state == RunState.QUEUED and run.priority == "high"


def test_watch_loop_follows_changes_and_relists_after_410(sim, engine):
    import threading
    import time

    run_id = "training-aaaaaab1"
    engine.submit_run(fx.manifest(), run_id=run_id)
    sim.add_workload(run_id)
    stop = threading.Event()
    loop = threading.Thread(target=engine.watch_loop, args=(stop,), kwargs={"timeout_seconds": 1, "positions_every": 0.2},
                            daemon=True)
    loop.start()

    def until(pred, what):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if pred(engine.get_run(run_id)):
                return
            time.sleep(0.05)
        pytest.fail(f"{what}: run is {engine.get_run(run_id).state}")

    try:
        until(lambda r: r.queue_position == 1, "initial list")
        sim.admit(run_id, 60)
        sim.add_pod(run_id, "p1", 61)
        sim.schedule("p1", "n1", 70)
        sim.loader_running("p1", 71)
        sim.watch_scripts["workloads"].append([{"type": "MODIFIED", "object": sim.workloads[run_id]}])
        sim.watch_scripts["jobs"].append([{"type": "MODIFIED", "object": sim.jobs[run_id]}])
        sim.watch_scripts["pods"].append([{"type": "ADDED", "object": sim.pods["p1"]}])
        until(lambda r: r.state == RunState.DOWNLOADING, "watch events")
        # the pod watch is cut with 410 Gone; the change made meanwhile arrives through the relist
        sim.learner_running("p1", 90, "dlaas: gpus: none")
        sim.watch_scripts["pods"].append([{"type": "ERROR", "object": {"kind": "Status", "code": 410}}])
        until(lambda r: r.state == RunState.PROCESSING, "relist after 410")
    finally:
        stop.set()
        loop.join(10)
    assert not loop.is_alive()
    watches = [q for m, p, q in sim.requests if q.get("watch") == "true"]
    assert watches and all(q.get("allowWatchBookmarks") == "true" for q in watches)


def test_profile_with_kubeconfig_through_the_facade_and_cli(sim, dlaas_home, tmp_path, cli, monkeypatch):
    """open_backend -> KubernetesEngine.from_backend -> kubeconfig -> the API; and `runs --json`."""
    import json

    monkeypatch.setenv("DLAAS_AGENT_AUTOSTART", "0")  # this process and the CLI catch up themselves

    fx.write_sim_profile(sim.url, NS, dlaas_home, tmp_path)
    from backend.facade import open_backend

    backend = open_backend("lab")
    engine = backend.engine
    assert isinstance(engine, KubernetesEngine)
    other = KubernetesEngine(KubeApi.for_host(sim.url), backend.profile, backend.config, store=FakeStore())
    other.submit_run(fx.manifest(), run_id="training-cccccc01", experiment="exp")
    sim.add_workload("training-cccccc01")
    runs = engine.list_runs()  # a fresh process: the run is learned from the cluster
    assert [r.id for r in runs] == ["training-cccccc01"] and runs[0].queue_position == 1
    backend.close()
    out = cli("--profile", "lab", "runs", "--json")
    assert out.returncode == 0, out.stderr
    assert [r["id"] for r in json.loads(out.stdout)] == ["training-cccccc01"]


def test_logs_of_one_learner_of_an_indexed_job(sim, engine):
    run_id = "training-aaaaaab2"
    engine.submit_run(fx.manifest(learners=2), run_id=run_id)
    for index in (0, 1):
        pod = f"p{index}"
        sim.add_pod(run_id, pod, 10, index=index)
        sim.schedule(pod, f"n{index}", 11)
        sim.learner_running(pod, 20, "dlaas: gpus: none", f"rank {index} says hello")
        sim.learner_ended(pod, 30, 0, {"exit_code": 0})
    assert list(engine.logs(run_id, learner=1)) == ["dlaas: gpus: none", "rank 1 says hello"]
    assert list(engine.logs(run_id, learner=0, tail=1)) == ["rank 0 says hello"]
    assert sim.owned[-1]["kind"] == "Service"  # the rendezvous Service, owned by the Job


def test_a_bundled_sample_submitted_to_the_cluster_finds_its_data_in_the_s3_store(sim, engine, tmp_path):
    """The sample that runs locally runs here unedited: its first submit seeds `dlaas-samples` (and
    `dlaas-results`) in the profile's store, where the loader reads it."""
    from pathlib import Path

    from backend.runs import SubmitRequest
    from backend.store.local import LocalStore

    engine._store = store = LocalStore(tmp_path / "store")
    sample = Path(__file__).resolve().parents[2] / "samples" / "pytorch-digits" / "manifest.yml"
    run, = engine.submit(SubmitRequest(manifests=[sample]))
    assert store.stat("dlaas-samples", "pytorch-digits/digits.csv.gz").size > 0
    assert store.bucket_exists("dlaas-results")
    assert store.stat("dlaas-results", f"{run.id}/_submitted_code/model.zip").size > 0
    job = sim.jobs[run.id]
    loader = job["spec"]["template"]["spec"]["initContainers"][0]["command"][2]
    assert "dlaas:dlaas-samples/pytorch-digits" in loader

    own = tmp_path / "own" / "manifest.yml"  # not a bundled sample: its data is the user's to upload
    own.parent.mkdir()
    own.write_text(sample.read_text().replace("dlaas-samples", "my-data"))
    (own.parent / "train.py").write_text("print('hi')\n")
    engine._store = other = LocalStore(tmp_path / "other")
    other.make_bucket("dlaas-results")
    engine.submit(SubmitRequest(manifests=[own]))
    assert not other.bucket_exists("dlaas-samples")


# -- what a real cluster does that the happy path does not (issue: the engine as a cluster behaves) --

def _watch_threads():
    import threading

    return [t for t in threading.enumerate() if t.name.startswith("watch-") and t.is_alive()]


@pytest.mark.parametrize("mode", ["unavailable", "throttled"])
def test_visibility_api_503_or_429_approximates_and_never_fails_a_sync(sim, engine, mode):
    run_id = "training-vis00001"
    engine.submit_run(fx.manifest(), run_id=run_id)
    sim.add_workload(run_id)
    sim.visibility["v1beta2"] = mode
    engine.sync_once()  # raised KubeError (503/429) out of apply() before
    run = engine.get_run(run_id)
    assert run.queue_position == 1 and run.queue_position_approximate is True
    pending = [p for m, p, q in sim.requests if p.endswith("/pendingworkloads")]
    assert pending  # it was asked, and answered 503/429


def test_keeper_marks_its_first_listing_done_and_leaks_no_watches_while_visibility_is_down(sim, engine):
    import time

    from backend.engines.kubernetes import keeper

    sim.visibility["v1beta2"] = "unavailable"
    run_id = "training-vis00002"
    engine.submit_run(fx.manifest(), run_id=run_id)
    sim.add_workload(run_id)
    marks = []
    engine.ledger.mark = lambda run, what: marks.append((run, what)) or True
    engine.release_held = lambda: []
    before = len(_watch_threads())
    w = keeper._Watcher(engine)
    w.start()
    try:
        deadline = time.monotonic() + 15
        while ("", keeper.SYNCED) not in marks and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ("", keeper.SYNCED) in marks
        # several watch rounds with the visibility API down: each opens its three watches again
        def watches() -> int:
            return sum(1 for m, p, q in list(sim.requests) if q.get("watch") == "true")

        target = watches() + 6
        deadline = time.monotonic() + 30
        while watches() < target and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watches() >= target, "the watch loop did not go round again"
        assert len(_watch_threads()) - before <= 3
        assert engine.get_run(run_id).queue_position_approximate is True
    finally:
        w.stop.set()
        w.kick.set()
        for t in w.threads:
            t.join(10)


def test_watch_loop_stops_its_watches_when_it_fails(sim, engine):
    """A watch loop that ends by an error (here: the ledger refuses a write) takes its three watch
    threads with it, so the agent's retry does not add three more each time."""
    import threading
    import time

    run_id = "training-vis00003"
    engine.submit_run(fx.manifest(), run_id=run_id)
    calls = {"n": 0}
    real_apply = engine.apply

    def apply(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise RuntimeError("disk full")
        return real_apply(*args, **kwargs)

    engine.apply = apply
    before = len(_watch_threads())
    for _ in range(3):  # the agent's retries
        with pytest.raises(RuntimeError):
            engine.watch_loop(threading.Event(), timeout_seconds=1, positions_every=0.05)
        calls["n"] = 0
    deadline = time.monotonic() + 60
    while len(_watch_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_watch_threads()) == before


@pytest.mark.parametrize("served", [["v1beta1"], ["v1beta2"], ["v1beta1", "v1beta2"]])
def test_the_served_kueue_version_is_discovered_and_read(sim, engine, served):
    sim.kueue_served = served
    sim.visibility = {v: "serve" for v in served}
    run_id = "training-disc0001"
    engine.submit_run(fx.manifest(), run_id=run_id)
    sim.add_workload(run_id)
    sim.admit(run_id, 10)
    engine.sync_once()
    assert engine.workload_version == ("v1beta2" if "v1beta2" in served else "v1beta1")
    assert engine.get_run(run_id).message != "waiting for Kueue to create the Workload"
    wl_reads = [p for m, p, q in sim.requests if p.endswith("/workloads")]
    assert all(f"/{engine.workload_version}/" in p for p in wl_reads)  # no 404 probing
    assert any(p == "/apis/kueue.x-k8s.io" for m, p, q in sim.requests)


def test_no_kueue_api_at_all_still_follows_jobs(sim, engine):
    sim.kueue_served = []
    sim.visibility = {"v1beta2": "missing", "v1beta1": "missing"}
    run_id = "training-disc0002"
    engine.submit_run(fx.manifest(), run_id=run_id)
    engine.sync_once()
    assert engine.get_run(run_id).state == RunState.QUEUED


def test_submit_works_where_owner_reference_permissions_are_enforced(sim, engine):
    """OpenShift: the API server refuses blockOwnerDeletion without update on jobs/finalizers."""
    assert sim.owner_refs_enforced
    run = engine.submit_run(fx.manifest(learners=2), run_id="training-ocp00001")
    assert run.state == RunState.QUEUED
    assert [o["kind"] for o in sim.owned] == ["ConfigMap", "Secret", "Service"]
    assert all("blockOwnerDeletion" not in ref for o in sim.owned for ref in o["metadata"]["ownerReferences"])


def test_a_refused_owned_object_deletes_the_job_and_says_why(sim, engine):
    sim.refuse_kinds = {"secrets"}
    with pytest.raises(KubeForbidden) as err:
        engine.submit_run(fx.manifest(), run_id="training-ocp00002")
    assert "forbidden (403)" in str(err.value) and "secrets" in str(err.value) and "cluster setup" in str(err.value)
    assert "training-ocp00002" not in sim.jobs and sim.deleted == [("training-ocp00002", "Foreground")]
    with pytest.raises(NotFound):
        engine.get_run("training-ocp00002")


def test_cluster_setup_auto_asks_the_cluster_for_its_kueue_version(sim, dlaas_home, tmp_path, cli):
    import yaml

    sim.kueue_served = ["v1beta1"]
    fx.write_sim_profile(sim.url, NS, dlaas_home, tmp_path)
    out = cli("--profile", "lab", "cluster", "setup", "--gpus", "1", "--kueue-api", "auto")
    assert out.returncode == 0, out.stderr
    versions = {d["apiVersion"] for d in yaml.safe_load_all(out.stdout) if d["apiVersion"].startswith("kueue")}
    assert versions == {"kueue.x-k8s.io/v1beta1"}
    sim.kueue_served = []
    out = cli("--profile", "lab", "cluster", "setup", "--gpus", "1", "--kueue-api", "auto")
    assert out.returncode != 0 and "install Kueue" in out.stderr and "Traceback" not in out.stderr


def _to_processing(sim, engine, run_id, *, at=0, pod="p1"):
    engine.submit_run(fx.manifest(), run_id=run_id)
    sim.add_workload(run_id)
    sim.admit(run_id, at + 1)
    sim.add_pod(run_id, pod, at + 2)
    sim.schedule(pod, "n1", at + 3)
    sim.learner_running(pod, at + 10, "dlaas: gpus: none", "step 1")
    engine.sync_once()
    assert engine.get_run(run_id).state == RunState.PROCESSING


def test_failure_target_before_failed_waits_for_the_pods_and_reads_the_deadline(sim, engine):
    run_id = "training-ft000001"
    _to_processing(sim, engine, run_id)
    sim.failure_target(run_id, 500, "DeadlineExceeded", "Job was active longer than specified deadline")
    engine.sync_once()
    run = engine.get_run(run_id)
    assert run.state == RunState.STORING and "DeadlineExceeded" in run.message  # not terminal yet
    assert ("mnist-results", f"{run_id}/run.json") not in engine.store.objects
    sim.learner_ended("p1", 505, 143, {"exit_code": 143, "terminated": True, "stored": True})
    sim.finish_job(run_id, 506, ok=False, reason="DeadlineExceeded")
    engine.sync_once()
    run = engine.get_run(run_id)
    assert run.state == RunState.FAILED and run.error_code == "C203" and "deadline" in run.message
    assert run.finished_at == kube_sim.T0 + timedelta(seconds=506)


def test_a_node_drain_does_not_fail_the_run(sim, engine):
    run_id = "training-dt000001"
    _to_processing(sim, engine, run_id)
    assert sim.jobs[run_id]["spec"]["podFailurePolicy"]["rules"][0]["action"] == "Ignore"
    sim.disrupt("p1", 100)  # DisruptionTarget, exit 137: the Job's podFailurePolicy ignores it
    engine.sync_once()
    run = engine.get_run(run_id)
    assert run.state == RunState.QUEUED and "DeletionByTaintManager" in run.message and run.error_code is None
    sim.add_pod(run_id, "p2", 120)  # the Job controller's replacement
    sim.schedule("p2", "n2", 130)
    sim.learner_running("p2", 140, "dlaas: gpus: none", "step 1 again")
    sim.learner_ended("p2", 300, 0, {"exit_code": 0, "stored": True})
    sim.finish_job(run_id, 301, ok=True)
    engine.sync_once()
    run = engine.get_run(run_id)
    assert run.state == RunState.COMPLETED
    at = lambda seconds: kube_sim.T0 + timedelta(seconds=seconds)  # noqa: E731
    assert billed_intervals(engine.events(run_id), at(3600)) == [(at(3), at(100)), (at(130), at(301))]


def test_an_image_that_cannot_be_pulled_fails_the_run_after_the_wait_and_frees_the_quota(sim, engine):
    limit = engine.profile.kubernetes.start_failure_seconds
    fresh, old = "training-ip000001", "training-ip000002"
    for run_id, at in ((fresh, 0), (old, -limit - 100)):
        engine.submit_run(fx.manifest(), run_id=run_id)
        sim.add_workload(run_id)
        sim.admit(run_id, at)
        pod = f"{run_id}-p"
        sim.add_pod(run_id, pod, at + 1)
        sim.schedule(pod, "n1", at + 2)
        sim.learner_waiting(pod, at + 10, "ErrImagePull",
                            'rpc error: code = NotFound desc = failed to pull image "pytorch/pytorch:9.9": not found')
    engine.sync_once()
    waiting = engine.get_run(fresh)
    assert waiting.state == RunState.DOWNLOADING and "ErrImagePull" in waiting.message  # still within the wait
    run = engine.get_run(old)
    assert run.state == RunState.FAILED and run.error_code == "S302"
    assert "ErrImagePull" in run.message and "pytorch/pytorch:9.9" in run.message  # the cluster's reason
    assert (old, "Foreground") in sim.deleted and fresh in sim.jobs  # its Job deleted: Kueue frees the quota


def test_an_invalid_image_name_fails_at_once(sim, engine):
    run_id = "training-ip000003"
    engine.submit_run(fx.manifest(), run_id=run_id)
    sim.add_workload(run_id)
    sim.admit(run_id, 0)
    sim.add_pod(run_id, "p1", 1)
    sim.schedule("p1", "n1", 2)
    sim.learner_waiting("p1", 5, "InvalidImageName", 'Failed to apply default image tag "Bad Image": invalid reference format')
    engine.sync_once()
    run = engine.get_run(run_id)
    assert run.state == RunState.FAILED and run.error_code == "S302" and "invalid reference format" in run.message


def test_pods_the_job_controller_cannot_create_fail_the_run_with_its_reason(sim, engine):
    limit = engine.profile.kubernetes.start_failure_seconds
    run_id = "training-fc000001"
    engine.submit_run(fx.manifest(), run_id=run_id)
    sim.add_workload(run_id)
    sim.admit(run_id, -limit - 100)
    engine.sync_once()  # no refusal on record: a slow controller is not a stuck one
    assert engine.get_run(run_id).state == RunState.QUEUED
    refusal = ('Error creating: pods "training-fc000001-x7k2p" is forbidden: violates PodSecurity '
               '"restricted:latest": unrestricted capabilities')
    sim.job_event(run_id, "FailedCreate", refusal, -limit - 90)
    sim.job_event("someone-else", "FailedCreate", "not ours", -limit - 90)
    engine.sync_once()
    run = engine.get_run(run_id)
    assert run.state == RunState.FAILED and run.error_code == "S302" and "PodSecurity" in run.message
    assert "not ours" not in run.message and (run_id, "Foreground") in sim.deleted
    events_query = [q for m, p, q in sim.requests if p.endswith("/events")][-1]
    assert events_query["fieldSelector"] == f"involvedObject.kind=Job,involvedObject.name={run_id}"


def test_storing_comes_from_readiness_not_from_reading_logs_each_sync(sim, engine):
    run_id = "training-st000001"
    _to_processing(sim, engine, run_id)
    log_reads = lambda: [p for m, p, q in sim.requests if p.endswith("/log")]  # noqa: E731
    before = len(log_reads())
    assert before == 1  # the device line, read once
    for _ in range(5):
        engine.sync_once()
    assert len(log_reads()) == before
    sim.storing("p1", 200)
    engine.sync_once()
    run = engine.get_run(run_id)
    assert run.state == RunState.STORING and len(log_reads()) == before
    storing = next(e for e in engine.events(run_id) if e.state == RunState.STORING)
    assert storing.at == kube_sim.T0 + timedelta(seconds=200)  # the kubelet's Ready transition
    with sim.lock:
        sim._ready("p1", True, 210)  # a probe that passes again cannot take the run back to PROCESSING
    engine.sync_once()
    assert engine.get_run(run_id).state == RunState.STORING
    assert [e.state for e in engine.events(run_id) if e.state].count(RunState.QUEUED) == 1


def _gone_by_ttl(sim, run_id):
    """ttlSecondsAfterFinished passed while no agent ran: the Job, its Workload and pods are deleted."""
    sim.jobs.pop(run_id)
    sim.workloads.pop(run_id, None)
    for name in [p for p, o in sim.pods.items() if o["metadata"]["labels"]["batch.kubernetes.io/job-name"] == run_id]:
        sim.pods.pop(name)


@pytest.mark.parametrize("report,state,code", [
    ({"exit_code": 0, "stored": True}, RunState.COMPLETED, None),
    ({"exit_code": 3, "stored": True}, RunState.FAILED, "C201"),
    ({"exit_code": 143, "timed_out": True, "stored": True}, RunState.FAILED, "C203"),
])
def test_a_job_deleted_by_ttl_while_the_agent_was_down_is_read_from_the_bucket(sim, engine, report, state, code):
    import json

    run_id = "training-ttl00001"
    _to_processing(sim, engine, run_id)
    finished = {**report, "finished_at": ts(400)}
    engine.store.put_bytes("mnist-results", f"{run_id}/learner-0/status.json", json.dumps(finished).encode())
    _gone_by_ttl(sim, run_id)
    engine.sync_once()
    run = engine.get_run(run_id)
    assert (run.state, run.error_code) == (state, code) and "results bucket" in run.message
    assert run.finished_at == kube_sim.T0 + timedelta(seconds=400)
    assert run.cost_micro_usd == round((400 - 3) * 2 * 6.88 * 1_000_000 / 3600)  # billed to the learner's end


def test_a_job_gone_with_nothing_in_the_bucket_is_lost_and_run_json_wins_when_there(sim, engine):
    import json

    lost, seen = "training-ttl00002", "training-ttl00003"
    _to_processing(sim, engine, lost, pod="p1")
    _to_processing(sim, engine, seen, pod="p2")
    engine.store.put_bytes("mnist-results", f"{seen}/run.json", json.dumps(
        {"state": "FAILED", "error_code": "C202", "message": "out of memory (exit 137)", "finished_at": ts(300)}).encode())
    _gone_by_ttl(sim, lost)
    _gone_by_ttl(sim, seen)
    engine.sync_once()
    assert engine.get_run(lost).error_code == "S401"
    run = engine.get_run(seen)
    assert run.state == RunState.FAILED and run.error_code == "C202" and "out of memory" in run.message


@pytest.mark.parametrize("how", ["drop_follow", "break_follow"])
def test_log_follow_resumes_when_the_stream_ends_while_the_pod_runs(sim, engine, how):
    """A proxy's idle timeout ends the stream cleanly, a reset connection cuts it mid-line: either
    way the follow reads on from the last timestamp, with no line lost or given twice."""
    import threading
    import time

    run_id = "training-lf000001"
    _to_processing(sim, engine, run_id)  # "dlaas: gpus: none", "step 1" at t=10
    sim.append_log("p1", "step 2", 10)  # the same second as the lines before it
    getattr(sim, how)["p1"] = 2
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(logs.follow(engine.api, NS, run_id, finished=lambda: True,
                                                                    poll=0.01, deadline=time.monotonic() + 20)),
                              daemon=True)
    reader.start()

    def follow_requests() -> int:
        return len([q for m, p, q in list(sim.requests) if q.get("follow") == "true"])

    deadline = time.monotonic() + 60
    while follow_requests() < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert follow_requests() >= 2, "the log stream did not reconnect (follow=true requested once)"
    sim.append_log("p1", "step 3", 11)
    sim.learner_ended("p1", 12, 0, {"exit_code": 0, "stored": True})
    reader.join(20)
    assert not reader.is_alive()
    assert got == ["dlaas: gpus: none", "step 1", "step 2", "step 3"]
    follows = [q for m, p, q in sim.requests if q.get("follow") == "true"]
    assert len(follows) >= 2 and "sinceTime" not in follows[0]
    assert follows[1]["sinceTime"] == ts(10) and follows[1]["timestamps"] == "true"


def test_a_broken_stream_is_one_kube_error(sim, engine):
    from backend.engines.kubernetes.client import KubeError

    run_id = "training-lf000002"
    _to_processing(sim, engine, run_id)
    sim.break_follow["p1"] = 1
    with pytest.raises(KubeError, match="the stream broke"):
        list(engine.api.stream_lines(f"/api/v1/namespaces/{NS}/pods/p1/log", query={"follow": "true"}))


def test_positions_are_approximated_from_the_workload_version_the_cluster_serves(sim, engine):
    """The visibility API at one version, the Workloads at another (mid-upgrade): each as discovered."""
    sim.kueue_served = ["v1beta2"]
    sim.visibility = {"v1beta1": "unavailable", "v1beta2": "missing"}
    run_id = "training-disc0003"
    engine.submit_run(fx.manifest(), run_id=run_id)
    sim.add_workload(run_id)
    engine.sync_once()
    run = engine.get_run(run_id)
    assert run.queue_position == 1 and run.queue_position_approximate
    assert any(p.endswith("/v1beta1/namespaces/team-a/localqueues/team-a-queue/pendingworkloads")
               for m, p, q in sim.requests)
    assert not any("/kueue.x-k8s.io/v1beta1/" in p for m, p, q in sim.requests)
    uids = {sim.jobs[run_id]["metadata"]["uid"]: run_id}
    pos = kueue.queue_positions(engine.api, NS, "team-a-queue", uids, engine.served(kueue.VISIBILITY_GROUP),
                                engine.served())
    assert pos.source == "workloads/v1beta2" and pos.by_job == {run_id: 1}


def test_a_job_gone_while_the_store_cannot_be_read_is_not_declared_lost_yet(sim, engine):
    import json

    from backend.errors import StoreError

    run_id = "training-ttl00004"
    _to_processing(sim, engine, run_id)
    _gone_by_ttl(sim, run_id)
    store = engine.store
    engine._store = type("Down", (), {"read_range": lambda *a, **k: (_ for _ in ()).throw(StoreError("connection refused")),
                                      "put_bytes": store.put_bytes})()
    engine.sync_once()
    assert engine.get_run(run_id).state == RunState.PROCESSING  # no evidence either way: ask again later
    engine._store = store
    store.put_bytes("mnist-results", f"{run_id}/learner-0/status.json",
                    json.dumps({"exit_code": 0, "stored": True, "finished_at": ts(50)}).encode())
    engine.sync_once()
    assert engine.get_run(run_id).state == RunState.COMPLETED


def test_a_queued_runs_priority_is_its_jobs_priority_class_and_kueue_reorders_the_queue(sim, engine):
    ids = ["training-ppppppp1", "training-ppppppp2"]
    for i, rid in enumerate(ids):
        engine.submit_run(fx.manifest(), run_id=rid)  # priority "high"
        sim.add_workload(rid, created=10 + i, priority=1000)
    engine.sync_once()
    assert [engine.get_run(r).queue_position for r in ids] == [1, 2]
    run = engine.set_priority(ids[0], "low")
    assert run.priority == "low"
    # one JSON merge patch of the Job's label; Kueue reads the WorkloadPriorityClass from it
    assert sim.patches == [(ids[0], {"metadata": {"labels": {render.PRIORITY_LABEL: "low"}}})]
    job = sim.jobs[ids[0]]
    assert job["metadata"]["labels"][render.PRIORITY_LABEL] == "low"
    assert job["metadata"]["labels"][render.QUEUE_LABEL] == "team-a-queue"  # the other labels kept
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for version in fx.K8S_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    assert any(e.message == "priority changed from high to low (-100)" for e in engine.events(ids[0]))
    # Kueue gives the Workload its new class's value and reorders; the ledger keeps the name
    sim.workloads[ids[0]]["spec"]["priority"] = -100
    engine.sync_once()
    assert [engine.get_run(r).queue_position for r in ids] == [2, 1]
    assert [r.priority for r in engine.list_runs() if r.id == ids[0]] == ["low"]
    # unchanged: nothing sent, no event
    events = len(engine.events(ids[0]))
    assert engine.set_priority(ids[0], "low").priority == "low" and len(sim.patches) == 1
    assert len(engine.events(ids[0])) == events


def test_a_priority_change_on_kubernetes_takes_a_named_class_and_a_queued_run_only(sim, engine):
    from backend.errors import BadInput

    rid = "training-ppppppp3"
    engine.submit_run(fx.manifest(), run_id=rid)
    sim.add_workload(rid, created=10, priority=1000)
    engine.sync_once()
    with pytest.raises(BadInput, match="WorkloadPriorityClass, one of high, normal, low"):
        engine.set_priority(rid, "5")  # no class on the cluster stands for a bare number
    assert engine.set_priority(rid, "0").priority == "normal"  # a number a name stands for is that name
    engine.halt(rid)
    with pytest.raises(BadInput, match=f"{rid}: run is HALTED"):
        engine.set_priority(rid, "low")
    assert [name for name, _ in sim.patches] == [rid]
