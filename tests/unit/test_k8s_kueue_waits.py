"""Kueue's pending reasons in the local engine's words (kueue_waits.py), from Workloads shaped as
Kueue's controllers write them and checked against Kueue's own CRD schema."""
from __future__ import annotations

import functools

import pytest

from backend.engines.kubernetes import states
from backend.engines.kubernetes.kueue_waits import is_behind, requested_gpus, workload_wait_reason
from backend.runs import RunState
from tests.fixtures.k8s_objects import crd_schema, strict
from tests.fixtures.kube_sim import ts

pytest.importorskip("jsonschema")

GPU_UNUSED = ("couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor "
              "h100, 2 more needed")


@functools.cache
def _validator(version: str):
    import jsonschema

    schema = strict(crd_schema("workloads", version))
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta is the API server's to check
    return jsonschema.Draft7Validator(schema)


def validate_kueue(obj: dict) -> None:
    _validator(obj["apiVersion"].split("/")[1]).validate(obj)


def cond(ctype: str, status: bool, reason: str, message: str) -> dict:
    return {"type": ctype, "status": "True" if status else "False", "reason": reason, "message": message,
            "lastTransitionTime": ts(10), "observedGeneration": 1}


def workload(*conditions: dict, gpus: int = 1, count: int = 2, active: bool | None = None,
             version: str = "v1beta2") -> dict:
    container = {"name": "learner", "image": "pytorch/pytorch:2.5.1",
                 "resources": {"requests": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": str(gpus)},
                               "limits": {"nvidia.com/gpu": str(gpus)}}}
    spec: dict = {"queueName": "team-a-queue", "priority": 0,
                  "podSets": [{"name": "main", "count": count, "template": {"spec": {"containers": [container]}}}]}
    if active is not None:
        spec["active"] = active
    wl = {"apiVersion": f"kueue.x-k8s.io/{version}", "kind": "Workload",
          "metadata": {"name": "job-training-aaaa-1a2b3", "namespace": "team-a"},
          "spec": spec, "status": {"conditions": list(conditions)}}
    validate_kueue(wl)  # the shape Kueue's API server accepts
    return wl


def test_insufficient_unused_gpu_quota_is_gpus_busy_with_the_numbers():
    wl = workload(cond("QuotaReserved", False, "Pending", GPU_UNUSED))
    assert requested_gpus(wl) == 2  # 2 pods x 1 GPU
    assert workload_wait_reason(wl) == "GPUs busy: needs 2, 0 free (quota of flavor h100 in use, 2 more needed)"
    # several resources short: the GPUs are named first; Kueue's pending preemptions are said too
    msg = ("couldn't assign flavors to pod set main: insufficient unused quota for cpu in flavor default, 2 more "
           "needed, insufficient unused quota for nvidia.com/gpu in flavor h100, 1 more needed. Pending the "
           "preemption of 1 workload(s)")
    wl = workload(cond("QuotaReserved", False, "WaitingForPreemptedWorkloads", msg), gpus=2, count=2)
    assert workload_wait_reason(wl) == ("GPUs busy: needs 4, 3 free (quota of flavor h100 in use, 1 more needed; "
                                        "preempting 1 run(s) to make room)")


def test_cpu_and_memory_quota_are_cpus_and_memory_busy():
    msg = ("couldn't assign flavors to pod set main: insufficient unused quota for cpu in flavor default, 3 more "
           "needed")
    assert workload_wait_reason(workload(cond("QuotaReserved", False, "Pending", msg), gpus=0)) == \
        "CPUs busy: quota of flavor default in use, 3 more needed"
    msg = ("couldn't assign flavors to pod set main: insufficient unused quota for memory in flavor default, "
           "2Gi more needed")
    assert workload_wait_reason(workload(cond("QuotaReserved", False, "Pending", msg), gpus=0)) == \
        "memory busy: quota of flavor default in use, 2Gi more needed"


def test_more_than_the_queue_can_ever_hold_is_the_tier_limit():
    msg = ("couldn't assign flavors to pod set main: insufficient quota for nvidia.com/gpu in flavor h100, "
           "request > maximum capacity (8 > 4)")
    assert workload_wait_reason(workload(cond("QuotaReserved", False, "Pending", msg), gpus=4)) == \
        "tier limit: queue team-a-queue may take 4 GPU(s) at most, this run needs 8 GPU(s) (Kueue: quota of flavor h100)"
    newer = ("couldn't assign flavors to pod set worker: insufficient quota for nvidia.com/gpu in flavor h100, "
             "previously considered podsets requests (16) + current podset request (8) > maximum capacity (16)")
    assert workload_wait_reason(workload(cond("QuotaReserved", False, "Pending", newer))).startswith(
        "tier limit: queue team-a-queue may take 16 GPU(s) at most, this run needs 24 GPU(s)")


@pytest.mark.parametrize(("message", "words"), [
    ("LocalQueue team-a-queue doesn't exist", "queue missing: LocalQueue team-a-queue does not exist"),
    ("ClusterQueue team-a-cq doesn't exist", "queue missing: ClusterQueue team-a-cq does not exist"),
    ("ClusterQueue team-a-cq not found", "queue missing: ClusterQueue team-a-cq does not exist"),
    ("ClusterQueue team-a-cq is inactive", "queue stopped: ClusterQueue team-a-cq is inactive"),
    ("LocalQueue team-a-queue is inactive", "queue stopped: LocalQueue team-a-queue is inactive"),
])
def test_an_inadmissible_workload_says_which_queue(message, words):
    for reason in ("Inadmissible", "Misconfigured", "Suspended"):
        assert workload_wait_reason(workload(cond("QuotaReserved", False, reason, message))).startswith(words)


def test_evictions_preemption_and_deactivation():
    pre = workload(cond("Evicted", True, "Preempted", "Preempted to accommodate a workload (UID: 1, JobUID: 2) "
                                                      "due to prioritization in the ClusterQueue"),
                   cond("Preempted", True, "InClusterQueue", "Preempted to accommodate a workload (UID: 1, "
                                                             "JobUID: 2) due to prioritization in the ClusterQueue"),
                   cond("QuotaReserved", False, "Pending", "Preempted"),
                   cond("Admitted", False, "NoReservation", "The workload has no reservation"))
    said = workload_wait_reason(pre)
    assert said.startswith("evicted: preempted by a higher-priority run in its ClusterQueue; queued again (Kueue: ")
    obs = states.observe({"spec": {"suspend": True}, "status": {}}, pre, [])
    assert obs.state == RunState.QUEUED and obs.evicted and obs.message == said
    timeout = workload(cond("Evicted", True, "PodsReadyTimeout", "Exceeded the PodsReady timeout default/job"))
    assert workload_wait_reason(timeout).startswith("evicted: its pods were not ready in time")
    stopped = workload(cond("Evicted", True, "ClusterQueueStopped", "The ClusterQueue is stopped"))
    assert workload_wait_reason(stopped).startswith("queue stopped: its ClusterQueue was stopped")
    off = workload(cond("Evicted", True, "Deactivated", "The workload is deactivated"), active=False)
    assert workload_wait_reason(off).startswith("held (")
    assert workload_wait_reason(workload(active=False)).startswith("held (")  # never admitted, deactivated


def test_quota_reserved_but_checks_pending_and_plain_waiting_is_the_queue_place():
    checks = workload(cond("QuotaReserved", True, "QuotaReserved", "Quota reserved in ClusterQueue team-a-cq"),
                      cond("Admitted", False, "UnsatisfiedChecks", "The workload has not all checks ready"))
    assert workload_wait_reason(checks) == "admission checks pending (Kueue: The workload has not all checks ready)"
    fresh = workload()
    assert workload_wait_reason(fresh, position=4) == "behind 3 runs"
    assert workload_wait_reason(fresh, position=1) == "waiting for Kueue to admit it"
    assert workload_wait_reason(None) == "waiting for Kueue to create the Workload"
    assert is_behind("behind 3 runs") and is_behind("behind 1 run") and not is_behind("GPUs busy: needs 2, 0 free")
    # the v1beta1 shape reads the same
    old = workload(cond("QuotaReserved", False, "Pending", GPU_UNUSED), version="v1beta1")
    assert workload_wait_reason(old).startswith("GPUs busy: needs 2, 0 free")
