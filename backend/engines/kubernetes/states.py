"""A run's state from what the cluster shows: the Job, its Kueue Workload and its Pods (pure functions).

The mapping (DESIGN.md's lifecycle):
  QUEUED       no Workload yet, or not admitted (QuotaReserved/Admitted False: WaitingForQuota,
               NoMatchingFlavor...), or evicted/preempted (Evicted True; Kueue suspends the Job again),
               or admitted while the pod waits for a node (Unschedulable: Insufficient nvidia.com/gpu)
  PENDING      the pod is scheduled on a node (PodScheduled True): the run holds GPUs, billing starts
  DOWNLOADING  the init container (loader) runs, or the learner image is being pulled
  PROCESSING   the learner container runs the command
  STORING      the running learner turned not Ready (its readiness probe sees the wrapper's storing
               flag), or the
               learner has ended and the Job has not been marked finished yet, or the Job has its
               FailureTarget condition (it is failing; its pods are still ending and storing)
  COMPLETED / FAILED   the Job's Complete / Failed condition; the error code from the Job's reason
               (DeadlineExceeded: C203), the wrapper's termination message (C201 C202 C203 S303) or
               the loader's failure (S301). FailureTarget is not terminal: the pods have not
               written their termination messages yet.
A pod with the DisruptionTarget condition (a node drain, a taint eviction, preemption by the
scheduler) does not fail the run: the Job's podFailurePolicy ignores it and the Job controller
replaces the pod; the run is QUEUED again meanwhile. A pod stuck on a start-up error
(ErrImagePull, InvalidImageName, CreateContainerConfigError...) or a Job whose pods cannot be
created is reported with `stuck`; the engine fails the run (S302) after a bounded wait.
HALTED is never derived: the engine records it when it deletes the Job.
Each observation carries the time the state began, taken from the cluster's own timestamps, so a
watcher that catches up late still records when things happened.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backend.runs import ErrorCode, RunState

from .kueue_waits import condition, is_true, workload_wait_reason
from .render import LEARNER, LOADER

STORING_MARKER = "dlaas: storing results"
_ORDER = [RunState.QUEUED, RunState.PENDING, RunState.DOWNLOADING, RunState.PROCESSING, RunState.STORING]
_PULL_ERRORS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                "CreateContainerError"}
# Waiting reasons no retry cures: the engine fails these at once rather than after its wait.
PERMANENT_ERRORS = {"InvalidImageName"}


@dataclass
class Observation:
    state: RunState
    at: datetime | None = None
    message: str = ""
    error_code: str | None = None
    node: str | None = None
    evicted: bool = False
    # When each state began on the pod, from its own timestamps: fills in states a late watcher skipped.
    timeline: dict[RunState, datetime] = field(default_factory=dict)
    # A start-up error the kubelet or the Job controller keeps retrying: (reason, message, since when).
    stuck: tuple[str, str, datetime | None] | None = None


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _cond_time(obj: dict[str, Any] | None, ctype: str) -> datetime | None:
    cond = condition(obj, ctype)
    return parse_time(cond.get("lastTransitionTime")) if cond else None


def termination_report(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The wrapper's JSON termination message of the learner container, if it ended."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") != LEARNER:
            continue
        term = ((cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated"))
        if not term:
            return None
        report: dict[str, Any] = {"exit_code": term.get("exitCode"), "reason": term.get("reason")}
        try:
            report.update(json.loads((term.get("message") or "").strip().splitlines()[-1]))
        except (ValueError, IndexError):
            pass
        return report
    return None


def disrupted(pod: dict[str, Any]) -> bool:
    """The pod was evicted, drained or preempted (DisruptionTarget): not the run's own failure."""
    return is_true(pod, "DisruptionTarget")


def failure(job: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[str, str]:
    """(error code, message) for a failed Job."""
    cond = condition(job, "Failed") if is_true(job, "Failed") else condition(job, "FailureTarget") or {}
    reason = (cond or {}).get("reason", "")
    if reason == "DeadlineExceeded":  # the pods were stopped by the deadline: their exits say only that
        return ErrorCode.MAX_DURATION.value, "max_duration exceeded (the Job's deadline)"
    for pod in [p for p in pods if not disrupted(p)]:
        for cs in (pod.get("status") or {}).get("initContainerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated")
            if cs.get("name") == LOADER and term and term.get("exitCode"):
                return ErrorCode.LOAD_FAILED.value, f"loading model/data failed (exit {term.get('exitCode')})"
        report = termination_report(pod)
        if report:
            code = report.get("exit_code")
            if report.get("timed_out"):
                return ErrorCode.MAX_DURATION.value, "max_duration exceeded"
            # 137 alone is any SIGKILL (an eviction too): memory only when the kubelet or the wrapper says so
            if report.get("oom") or report.get("reason") == "OOMKilled":
                return ErrorCode.OUT_OF_MEMORY.value, f"out of memory (exit {code})"
            if code == 0 and report.get("stored") is False:
                return ErrorCode.STORE_FAILED.value, "storing results failed"
            if code == 137:
                return ErrorCode.COMMAND_FAILED.value, "command was killed (exit 137, not out of memory)"
            if code:
                return ErrorCode.COMMAND_FAILED.value, f"command exited with {code}"
    return ErrorCode.COMMAND_FAILED.value, cond.get("message") or reason or "the Job failed"


def report_outcome(reports: list[dict[str, Any]]) -> Observation:
    """The end of a run from its learners' wrapper reports alone (`learner-N/status.json`), for a
    Job that is gone: COMPLETED when every learner exited 0 and stored, else the first failure."""
    at = max((t for r in reports if (t := parse_time(r.get("finished_at")))), default=None)
    for r in reports:
        code = r.get("exit_code")
        if r.get("timed_out"):
            return Observation(RunState.FAILED, at=at, error_code=ErrorCode.MAX_DURATION.value,
                               message="max_duration exceeded")
        if r.get("oom"):
            return Observation(RunState.FAILED, at=at, error_code=ErrorCode.OUT_OF_MEMORY.value,
                               message=f"out of memory (exit {code})")
        if code == 0 and r.get("stored") is False:
            return Observation(RunState.FAILED, at=at, error_code=ErrorCode.STORE_FAILED.value,
                               message="storing results failed")
        if code:
            return Observation(RunState.FAILED, at=at, error_code=ErrorCode.COMMAND_FAILED.value,
                               message=f"command exited with {code}")
    return Observation(RunState.COMPLETED, at=at)


def pod_timeline(pod: dict[str, Any]) -> dict[RunState, datetime]:
    status = pod.get("status") or {}
    out: dict[RunState, datetime] = {}
    scheduled = _cond_time(pod, "PodScheduled") if is_true(pod, "PodScheduled") else None
    if scheduled:
        out[RunState.PENDING] = scheduled
    for cs in status.get("initContainerStatuses") or []:
        if cs.get("name") == LOADER:
            state = cs.get("state") or {}
            t = parse_time((state.get("running") or state.get("terminated") or {}).get("startedAt"))
            if t:
                out[RunState.DOWNLOADING] = t
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") == LEARNER:
            state = cs.get("state") or {}
            t = parse_time((state.get("running") or state.get("terminated") or {}).get("startedAt"))
            if t:
                out[RunState.PROCESSING] = t
            end = parse_time((state.get("terminated") or {}).get("finishedAt"))
            if end:
                out[RunState.STORING] = end
    return out


def _storing_since(pod: dict[str, Any], learner: dict[str, Any], started: datetime | None) -> datetime | None:
    """When the running learner turned not Ready after its start: its readiness probe found the
    wrapper's storing flag. (Before its first successful probe it is not Ready either, but that
    Ready=False dates from before the container started.)"""
    if learner.get("ready") or started is None:
        return None
    cond = condition(pod, "Ready")
    if not cond or cond.get("status") != "False":
        return None
    at = parse_time(cond.get("lastTransitionTime"))
    return at if at and at > started else None


def _pod_state(pod: dict[str, Any], storing: bool) -> Observation:
    status = pod.get("status") or {}
    node = (pod.get("spec") or {}).get("nodeName")
    if not is_true(pod, "PodScheduled"):
        cond = condition(pod, "PodScheduled") or {}
        why = cond.get("message") or cond.get("reason") or "waiting for a node"
        return Observation(RunState.QUEUED, message=f"admitted; waiting for a node: {why}")
    scheduled_at = _cond_time(pod, "PodScheduled")
    inits = {c.get("name"): c for c in status.get("initContainerStatuses") or []}
    learners = {c.get("name"): c for c in status.get("containerStatuses") or []}
    loader, learner = inits.get(LOADER), learners.get(LEARNER)
    loader_state = (loader or {}).get("state") or {}
    learner_state = (learner or {}).get("state") or {}
    if learner_state.get("terminated"):
        at = parse_time(learner_state["terminated"].get("finishedAt"))
        return Observation(RunState.STORING, at=at, node=node, message="learner ended; finishing")
    if learner_state.get("running"):
        started = parse_time(learner_state["running"].get("startedAt"))
        unready_at = _storing_since(pod, learner or {}, started)
        if storing or unready_at:
            return Observation(RunState.STORING, at=unready_at, node=node, message="storing results and logs")
        return Observation(RunState.PROCESSING, at=started, node=node)
    if loader_state.get("running"):
        return Observation(RunState.DOWNLOADING, at=parse_time(loader_state["running"].get("startedAt")), node=node,
                           message="loading model and data")
    if (loader_state.get("terminated") or {}).get("exitCode") == 0:
        waiting = learner_state.get("waiting") or {}
        msg = waiting.get("reason", "starting the learner")
        at = parse_time(loader_state["terminated"].get("finishedAt"))
        stuck = None
        if waiting.get("reason") in _PULL_ERRORS:
            msg = f"{waiting.get('reason')}: {waiting.get('message', '')}".rstrip(": ")
            stuck = (waiting["reason"], waiting.get("message", ""), at)
        return Observation(RunState.DOWNLOADING, at=at, node=node, message=msg, stuck=stuck)
    waiting = loader_state.get("waiting") or {}
    msg, stuck = "", None
    if waiting.get("reason") in _PULL_ERRORS:
        msg = f"{waiting.get('reason')}: {waiting.get('message', '')}".rstrip(": ")
        stuck = (waiting["reason"], waiting.get("message", ""), scheduled_at)
    return Observation(RunState.PENDING, at=scheduled_at, node=node, message=msg or f"scheduled on {node}",
                       stuck=stuck)


def observe(job: dict[str, Any], workload: dict[str, Any] | None, pods: list[dict[str, Any]],
            *, storing: bool = False, need_gpus: int | None = None, position: int | None = None) -> Observation:
    """The run's state now. `storing`: the wrapper is known to be storing by other means than the
    learner's readiness (which `_pod_state` reads itself). `need_gpus` (the run's GPUs in all) and
    `position` (its place in Kueue's queue) word why a queued run waits (kueue_waits.py)."""
    obs = _observe(job, workload, pods, storing, {"need_gpus": need_gpus, "position": position})
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp") and not disrupted(p)] or pods
    if live and not obs.evicted:
        newest = max(live, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
        obs.timeline = pod_timeline(newest)
        obs.node = obs.node or (newest.get("spec") or {}).get("nodeName")
    return obs


def _observe(job: dict[str, Any], workload: dict[str, Any] | None, pods: list[dict[str, Any]],
             storing: bool, wait: dict[str, Any]) -> Observation:
    if is_true(job, "Complete") or is_true(job, "SuccessCriteriaMet"):
        at = parse_time((job.get("status") or {}).get("completionTime")) or _cond_time(job, "Complete")
        return Observation(RunState.COMPLETED, at=at)
    if is_true(job, "Failed"):
        code, msg = failure(job, pods)
        return Observation(RunState.FAILED, at=_cond_time(job, "Failed"), error_code=code, message=msg)
    if is_true(job, "FailureTarget"):
        # The Job controller has decided (a deadline, a pod failure) and is stopping the pods; they
        # store their results and write their termination messages before the Job turns Failed.
        ft = condition(job, "FailureTarget") or {}
        why = ft.get("reason") or "FailureTarget"
        message = f"the Job is failing ({why}); waiting for its pods to end"
        if any(_learner_started(p) for p in pods):
            return Observation(RunState.STORING, at=_cond_time(job, "FailureTarget"), message=message)
        obs = _pods_observation(pods, storing) if pods else Observation(RunState.QUEUED)
        obs.message, obs.stuck = message, None
        return obs
    suspended = bool((job.get("spec") or {}).get("suspend"))
    if is_true(workload, "Evicted") and (suspended or not is_true(workload, "Admitted")):
        return Observation(RunState.QUEUED, at=_cond_time(workload, "Evicted"), evicted=True,
                           message=workload_wait_reason(workload, **wait))
    admitted = is_true(workload, "Admitted") or (workload is None and not suspended)
    if not admitted or suspended:
        return Observation(RunState.QUEUED, message=workload_wait_reason(workload, **wait))
    current = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    live = [p for p in current if not disrupted(p)]
    if not live and any(disrupted(p) for p in current):
        gone = next(p for p in current if disrupted(p))
        dc = condition(gone, "DisruptionTarget") or {}
        why = ": ".join(x for x in (dc.get("reason"), dc.get("message")) if x) or "disrupted"
        return Observation(RunState.QUEUED, at=_cond_time(gone, "DisruptionTarget"), evicted=True,
                           message=f"pod disrupted ({why}); the Job controller replaces it")
    if not live:
        admitted_at = _cond_time(workload, "Admitted")
        return Observation(RunState.QUEUED, at=admitted_at, message="admitted; creating pods",
                           stuck=("NoPods", "", admitted_at))
    return _pods_observation(live, storing)


def _learner_started(pod: dict[str, Any]) -> bool:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == LEARNER:
            state = cs.get("state") or {}
            return bool(state.get("running") or state.get("terminated"))
    return False


def _pods_observation(pods: list[dict[str, Any]], storing: bool) -> Observation:
    # With several learners the run is as far along as its slowest learner.
    observations = [_pod_state(p, storing) for p in pods]
    slowest = min(observations, key=lambda o: _ORDER.index(o.state))
    if slowest.node is None:
        slowest.node = next((o.node for o in observations if o.node), None)
    if slowest.stuck is None:
        slowest.stuck = next((o.stuck for o in observations if o.stuck), None)
    return slowest


def gpu_line(log_head: str) -> list[str]:
    """Device labels from the wrapper's first line: `dlaas: gpus: 0,GPU-uuid,NAME;1,...` -> ["GPU-uuid NAME"]."""
    for line in log_head.splitlines()[:5]:
        if line.startswith("dlaas: gpus:"):
            body = line.split(":", 2)[2].strip()
            if body == "none" or not body:
                return []
            out = []
            for item in body.split(";"):
                parts = [p.strip() for p in item.split(",", 2)]
                if len(parts) == 3:
                    out.append(f"{parts[1]} {parts[2]}")
            return out
    return []
