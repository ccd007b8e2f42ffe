"""Run states from Job, Workload and Pod objects (pure), following Kueue's documented conditions."""
from __future__ import annotations

import json
from datetime import timedelta

from backend.engines.kubernetes import states
from backend.runs import RunState
from tests.fixtures import kube_sim
from tests.fixtures.kube_sim import cond, ts


def job(suspend=True, conditions=()):
    return {"metadata": {"name": "training-x"}, "spec": {"suspend": suspend}, "status": {"conditions": list(conditions)}}


def workload(*conditions):
    return {"metadata": {"name": "wl"}, "status": {"conditions": list(conditions)}}


def pod(scheduled=True, loader=None, learner=None, node="n1"):
    status = {"conditions": [cond("PodScheduled", scheduled, 10, "" if scheduled else "Unschedulable",
                                  "" if scheduled else "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")]}
    if loader is not None:
        status["initContainerStatuses"] = [{"name": "loader", "state": loader}]
    if learner is not None:
        status["containerStatuses"] = [{"name": "learner", "state": learner}]
    return {"metadata": {"name": "p", "creationTimestamp": ts(5)}, "spec": {"nodeName": node if scheduled else None},
            "status": status}


def test_no_workload_yet_is_queued():
    obs = states.observe(job(), None, [])
    assert obs.state == RunState.QUEUED and "Workload" in obs.message


def test_waiting_for_quota_reason_is_the_message():
    wl = workload(cond("QuotaReserved", False, 1, "Pending", "couldn't assign flavors: insufficient quota for nvidia.com/gpu"))
    obs = states.observe(job(), wl, [])
    assert obs.state == RunState.QUEUED and "insufficient quota" in obs.message


def test_admitted_but_unschedulable_is_still_queued_and_unbilled():
    wl = workload(cond("QuotaReserved", True, 1), cond("Admitted", True, 1))
    obs = states.observe(job(suspend=False), wl, [pod(scheduled=False)])
    assert obs.state == RunState.QUEUED and "Insufficient nvidia.com/gpu" in obs.message
    assert not obs.state.billed


def test_scheduled_then_loader_then_learner_then_marker():
    wl = workload(cond("QuotaReserved", True, 1), cond("Admitted", True, 1))
    j = job(suspend=False)
    assert states.observe(j, wl, [pod(loader={"waiting": {"reason": "PodInitializing"}})]).state == RunState.PENDING
    assert states.observe(j, wl, [pod(loader={"running": {"startedAt": ts(11)}})]).state == RunState.DOWNLOADING
    done_loader = {"terminated": {"exitCode": 0, "startedAt": ts(11), "finishedAt": ts(20)}}
    pulling = states.observe(j, wl, [pod(loader=done_loader, learner={"waiting": {"reason": "ImagePullBackOff",
                                                                                  "message": "back-off pulling"}})])
    assert pulling.state == RunState.DOWNLOADING and "ImagePullBackOff" in pulling.message
    running = pod(loader=done_loader, learner={"running": {"startedAt": ts(21)}})
    obs = states.observe(j, wl, [running])
    assert obs.state == RunState.PROCESSING and obs.node == "n1"
    assert set(obs.timeline) == {RunState.PENDING, RunState.DOWNLOADING, RunState.PROCESSING}
    assert states.observe(j, wl, [running], storing=True).state == RunState.STORING


def test_eviction_is_queued_with_its_reason():
    wl = workload(cond("Evicted", True, 50, "Preempted", "Preempted to accommodate a higher priority Workload"),
                  cond("QuotaReserved", False, 50), cond("Admitted", False, 50))
    obs = states.observe(job(suspend=True), wl, [])
    assert obs.state == RunState.QUEUED and obs.evicted and "Preempted" in obs.message


def _failed_with(report, reason="BackoffLimitExceeded", container_reason="Error"):
    learner = {"terminated": {"exitCode": report.get("exit_code", 1), "message": json.dumps(report),
                              "finishedAt": ts(99), "reason": container_reason}}
    p = pod(loader={"terminated": {"exitCode": 0}}, learner=learner)
    return states.observe(job(False, [cond("Failed", True, 100, reason)]), None, [p])


def test_failure_codes_from_the_termination_message():
    assert _failed_with({"exit_code": 3}).error_code == "C201"
    assert _failed_with({"exit_code": 143, "timed_out": True}).error_code == "C203"
    killed = _failed_with({"exit_code": 137})  # any SIGKILL: an eviction is not out of memory
    assert killed.error_code == "C201" and "not out of memory" in killed.message
    assert _failed_with({"exit_code": 137}, container_reason="OOMKilled").error_code == "C202"
    assert _failed_with({"exit_code": 1, "oom": True}).error_code == "C202"
    assert _failed_with({"exit_code": 0, "stored": False}).error_code == "S303"
    loader_failed = pod(loader={"terminated": {"exitCode": 1}})
    obs = states.observe(job(False, [cond("Failed", True, 100)]), None, [loader_failed])
    assert obs.error_code == "S301"
    deadline = states.observe(job(False, [cond("Failed", True, 100, "DeadlineExceeded")]), None, [])
    assert deadline.error_code == "C203"


def test_complete_job_is_completed_at_its_completion_time():
    j = job(False, [cond("Complete", True, 300)])
    j["status"]["completionTime"] = ts(300)
    obs = states.observe(j, None, [])
    assert obs.state == RunState.COMPLETED and obs.at == kube_sim.T0 + timedelta(seconds=300)


def test_gpu_line():
    assert states.gpu_line("dlaas: gpus: 0,GPU-a,NVIDIA H100;1,GPU-b,NVIDIA H100\nrest") == ["GPU-a NVIDIA H100", "GPU-b NVIDIA H100"]
    assert states.gpu_line("dlaas: gpus: none") == []
    assert states.gpu_line("no wrapper line") == []


def test_gpu_type_from_the_assigned_flavor():
    from backend.engines.kubernetes.runview import flavor_gpu, run_from_job

    wl = {"status": {"admission": {"clusterQueue": "cq", "podSetAssignments": [
        {"name": "main", "flavors": {"cpu": "default", "nvidia.com/gpu": "gpu-nvidia-h100-80gb-hbm3"}, "count": 1}]}}}
    assert flavor_gpu(wl) == "H100"
    assert flavor_gpu({"status": {}}) is None and flavor_gpu(None) is None
    from tests.fixtures import k8s_objects as fx
    from backend.engines.kubernetes import render

    job = render.render_submission(fx.manifest(learners=2), "training-ab12cd34", fx.profile(), fx.config())[0]
    run = run_from_job(job)
    assert (run.gpus, run.learners, run.gpu_type, run.priority, run.results_bucket) == (4, 2, "H100", "high", "mnist-results")


def _admitted():
    return workload(cond("QuotaReserved", True, 1), cond("Admitted", True, 1))


def test_failure_target_is_not_terminal_and_the_deadline_is_c203():
    """The Job controller says FailureTarget first, while the pods still store; Failed comes after."""
    done_loader = {"terminated": {"exitCode": 0, "startedAt": ts(11), "finishedAt": ts(20)}}
    running = pod(loader=done_loader, learner={"running": {"startedAt": ts(21)}})
    failing = job(False, [cond("FailureTarget", True, 500, "DeadlineExceeded", "Job was active longer than specified deadline")])
    obs = states.observe(failing, _admitted(), [running])
    assert obs.state == RunState.STORING and not obs.state.terminal and "DeadlineExceeded" in obs.message
    ended = pod(loader=done_loader, learner={"terminated": {"exitCode": 143, "finishedAt": ts(510), "reason": "Error",
                                                            "message": json.dumps({"exit_code": 143, "terminated": True})}})
    failed = job(False, [cond("FailureTarget", True, 500, "DeadlineExceeded"), cond("Failed", True, 512, "DeadlineExceeded")])
    obs = states.observe(failed, _admitted(), [ended])
    assert obs.state == RunState.FAILED and obs.error_code == "C203"  # not C201 from the SIGTERM's 143
    assert obs.at == kube_sim.T0 + timedelta(seconds=512)


def test_a_disrupted_pod_is_not_a_failure_and_its_replacement_is_followed():
    done_loader = {"terminated": {"exitCode": 0, "startedAt": ts(11), "finishedAt": ts(20)}}
    gone = pod(loader=done_loader, learner={"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": ts(60)}})
    gone["status"]["conditions"].append(cond("DisruptionTarget", True, 59, "DeletionByTaintManager", "NoExecute taint"))
    obs = states.observe(job(False), _admitted(), [gone])
    assert obs.state == RunState.QUEUED and obs.evicted and "DeletionByTaintManager" in obs.message
    fresh = pod(loader={"running": {"startedAt": ts(80)}})
    fresh["metadata"]["name"] = "p2"
    assert states.observe(job(False), _admitted(), [gone, fresh]).state == RunState.DOWNLOADING


def test_start_up_errors_are_reported_stuck_since_the_clusters_time():
    done_loader = {"terminated": {"exitCode": 0, "startedAt": ts(11), "finishedAt": ts(20)}}
    pulling = pod(loader=done_loader, learner={"waiting": {"reason": "ErrImagePull", "message": "not found"}})
    obs = states.observe(job(False), _admitted(), [pulling])
    assert obs.stuck == ("ErrImagePull", "not found", kube_sim.T0 + timedelta(seconds=20))
    no_pods = states.observe(job(False), _admitted(), [])
    assert no_pods.stuck[0] == "NoPods" and no_pods.state == RunState.QUEUED
    running = pod(loader=done_loader, learner={"running": {"startedAt": ts(21)}})
    assert states.observe(job(False), _admitted(), [running]).stuck is None


def test_storing_is_the_learner_turning_not_ready_after_it_started():
    done_loader = {"terminated": {"exitCode": 0, "startedAt": ts(11), "finishedAt": ts(20)}}
    p = pod(loader=done_loader, learner={"running": {"startedAt": ts(21)}})
    p["status"]["conditions"].append(cond("Ready", False, 10, "PodInitializing"))  # not probed yet
    assert states.observe(job(False), _admitted(), [p]).state == RunState.PROCESSING
    p["status"]["containerStatuses"][0]["ready"] = True
    p["status"]["conditions"][-1] = cond("Ready", True, 25)  # training: the probe passes
    assert states.observe(job(False), _admitted(), [p]).state == RunState.PROCESSING
    p["status"]["containerStatuses"][0]["ready"] = False
    p["status"]["conditions"][-1] = cond("Ready", False, 300, "ContainersNotReady")  # the storing flag
    obs = states.observe(job(False), _admitted(), [p])
    assert obs.state == RunState.STORING and obs.at == kube_sim.T0 + timedelta(seconds=300)
