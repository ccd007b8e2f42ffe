"""A run's state from what the cluster shows: the Job, its Kueue Workload and its Pods (pure functions).

The mapping (DESIGN.md's lifecycle):
  QUEUED       no Workload yet, or not admitted (QuotaReserved/Admitted False: WaitingForQuota,
               NoMatchingFlavor...), or evicted/preempted (Evicted True; Kueue suspends the Job again),
               or admitted while the pod waits for a node (Unschedulable: Insufficient nvidia.com/gpu)
  PENDING      the pod is scheduled on a node (PodScheduled True): the run holds GPUs, billing starts
  DOWNLOADING  the init container (loader) runs, or the learner image is being pulled
  PROCESSING   the learner container runs the command
  STORING      the wrapper printed its "storing results" marker, or the learner has ended and the Job
               has not been marked finished yet
  COMPLETED / FAILED   the Job's Complete / Failed condition; the error code from the wrapper's
               termination message (C201 C202 C203 S303), the loader's failure (S301) or the Job's reason
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

from .render import LEARNER, LOADER

STORING_MARKER = "dlaas: storing results"
_ORDER = [RunState.QUEUED, RunState.PENDING, RunState.DOWNLOADING, RunState.PROCESSING, RunState.STORING]
_PULL_ERRORS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                "CreateContainerError"}


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


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return None


def is_true(obj: dict[str, Any] | None, ctype: str) -> bool:
    cond = condition(obj, ctype)
    return bool(cond and cond.get("status") == "True")


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


def failure(job: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[str, str]:
    """(error code, message) for a failed Job."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("initContainerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated")
            if cs.get("name") == LOADER and term and term.get("exitCode"):
                return ErrorCode.LOAD_FAILED.value, f"loading model/data failed (exit {term.get('exitCode')})"
        report = termination_report(pod)
        if report:
            code = report.get("exit_code")
            if report.get("timed_out"):
                return ErrorCode.MAX_DURATION.value, "max_duration exceeded"
            if report.get("oom") or report.get("reason") == "OOMKilled" or code == 137:
                return ErrorCode.OUT_OF_MEMORY.value, f"out of memory (exit {code})"
            if code == 0 and report.get("stored") is False:
                return ErrorCode.STORE_FAILED.value, "storing results failed"
            if code:
                return ErrorCode.COMMAND_FAILED.value, f"command exited with {code}"
    cond = condition(job, "Failed") or {}
    reason = cond.get("reason", "")
    if reason == "DeadlineExceeded":
        return ErrorCode.MAX_DURATION.value, "max_duration exceeded (the Job's deadline)"
    return ErrorCode.COMMAND_FAILED.value, cond.get("message") or reason or "the Job failed"


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
        if storing:
            return Observation(RunState.STORING, node=node, message="storing results and logs")
        return Observation(RunState.PROCESSING, at=started, node=node)
    if loader_state.get("running"):
        return Observation(RunState.DOWNLOADING, at=parse_time(loader_state["running"].get("startedAt")), node=node,
                           message="loading model and data")
    if (loader_state.get("terminated") or {}).get("exitCode") == 0:
        waiting = learner_state.get("waiting") or {}
        msg = waiting.get("reason", "starting the learner")
        if waiting.get("reason") in _PULL_ERRORS:
            msg = f"{waiting.get('reason')}: {waiting.get('message', '')}".rstrip(": ")
        at = parse_time(loader_state["terminated"].get("finishedAt"))
        return Observation(RunState.DOWNLOADING, at=at, node=node, message=msg)
    waiting = loader_state.get("waiting") or {}
    msg = ""
    if waiting.get("reason") in _PULL_ERRORS:
        msg = f"{waiting.get('reason')}: {waiting.get('message', '')}".rstrip(": ")
    return Observation(RunState.PENDING, at=scheduled_at, node=node, message=msg or f"scheduled on {node}")


def workload_wait_reason(workload: dict[str, Any] | None) -> str:
    if workload is None:
        return "waiting for Kueue to create the Workload"
    for ctype in ("Evicted", "QuotaReserved", "Admitted"):
        cond = condition(workload, ctype)
        if cond and (ctype == "Evicted") == (cond.get("status") == "True"):
            parts = [cond.get("reason") or "", cond.get("message") or ""]
            text = ": ".join(p for p in parts if p)
            if text:
                return text
    return "waiting for quota"


def observe(job: dict[str, Any], workload: dict[str, Any] | None, pods: list[dict[str, Any]],
            *, storing: bool = False) -> Observation:
    """The run's state now. `storing`: the wrapper's STORING_MARKER was seen in the learner's log."""
    obs = _observe(job, workload, pods, storing)
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")] or pods
    if live and not obs.evicted:
        newest = max(live, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
        obs.timeline = pod_timeline(newest)
        obs.node = obs.node or (newest.get("spec") or {}).get("nodeName")
    return obs


def _observe(job: dict[str, Any], workload: dict[str, Any] | None, pods: list[dict[str, Any]],
             storing: bool) -> Observation:
    if is_true(job, "Complete") or is_true(job, "SuccessCriteriaMet"):
        at = parse_time((job.get("status") or {}).get("completionTime")) or _cond_time(job, "Complete")
        return Observation(RunState.COMPLETED, at=at)
    if is_true(job, "Failed") or is_true(job, "FailureTarget"):
        code, msg = failure(job, pods)
        return Observation(RunState.FAILED, at=_cond_time(job, "Failed") or _cond_time(job, "FailureTarget"),
                           error_code=code, message=msg)
    suspended = bool((job.get("spec") or {}).get("suspend"))
    if is_true(workload, "Evicted") and (suspended or not is_true(workload, "Admitted")):
        return Observation(RunState.QUEUED, at=_cond_time(workload, "Evicted"), evicted=True,
                           message=f"evicted: {workload_wait_reason(workload)}")
    admitted = is_true(workload, "Admitted") or (workload is None and not suspended)
    if not admitted or suspended:
        return Observation(RunState.QUEUED, message=workload_wait_reason(workload))
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    if not live:
        return Observation(RunState.QUEUED, at=_cond_time(workload, "Admitted"), message="admitted; creating pods")
    # With several learners the run is as far along as its slowest learner.
    observations = [_pod_state(p, storing) for p in live]
    slowest = min(observations, key=lambda o: _ORDER.index(o.state))
    if slowest.node is None:
        slowest.node = next((o.node for o in observations if o.node), None)
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
