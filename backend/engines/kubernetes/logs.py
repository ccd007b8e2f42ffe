"""A learner's log from its pods, across restarts: a run evicted and admitted again gets a new pod,
and `previous=true` reads a container that has already died. Lines are data: returned as they are,
for the presentation layer to make safe.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from .client import KubeApi, KubeError, KubeNotFound, pods_path
from .render import JOB_NAME_LABEL, LEARNER

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def learner_pods(api: KubeApi, ns: str, run_id: str, learner: int = 0) -> list[dict[str, Any]]:
    """The run's pods for one learner, oldest first (the selector is checked here as well)."""
    listing = api.request("GET", pods_path(ns), query={"labelSelector": f"{JOB_NAME_LABEL}={run_id}"})
    out = []
    for pod in listing.get("items") or []:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        if labels.get(JOB_NAME_LABEL) != run_id and labels.get("job-name") != run_id:
            continue
        index = int((meta.get("annotations") or {}).get(INDEX_ANNOTATION, "0") or 0)
        if index == learner:
            out.append(pod)
    out.sort(key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
    return out


def _learner_status(pod: dict[str, Any]) -> dict[str, Any]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == LEARNER:
            return cs
    return {}


def _started(pod: dict[str, Any]) -> bool:
    cs = _learner_status(pod)
    state = cs.get("state") or {}
    return bool(state.get("running") or state.get("terminated") or cs.get("lastState", {}).get("terminated"))


def _ended(pod: dict[str, Any]) -> bool:
    return bool((_learner_status(pod).get("state") or {}).get("terminated")) or \
        (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def read_log(api: KubeApi, ns: str, pod: str, *, tail: int | None = None, timestamps: bool = False,
             previous: bool = False, limit_bytes: int | None = None) -> list[str]:
    query = {"container": LEARNER, "tailLines": tail, "timestamps": "true" if timestamps else None,
             "previous": "true" if previous else None, "limitBytes": limit_bytes}
    text = api.text(f"{pods_path(ns, pod)}/log", query=query)
    return text.splitlines()


def pod_lines(api: KubeApi, ns: str, pod: dict[str, Any], *, tail: int | None, timestamps: bool) -> list[str]:
    """All the log a pod still has: the dead container's (previous) first, then the current one."""
    name = pod["metadata"]["name"]
    lines: list[str] = []
    if _learner_status(pod).get("restartCount"):
        try:
            lines += read_log(api, ns, name, timestamps=timestamps, previous=True)
        except KubeError:
            pass  # the previous container's log may already be gone from the node
    if _started(pod):
        lines += read_log(api, ns, name, timestamps=timestamps)
    return lines[-tail:] if tail else lines


def follow(
    api: KubeApi,
    ns: str,
    run_id: str,
    *,
    learner: int = 0,
    tail: int | None = None,
    timestamps: bool = False,
    finished: Callable[[], bool] = lambda: False,
    poll: float = 1.0,
    deadline: float | None = None,
) -> Iterator[str]:
    """Lines as they come, moving on to the next pod when one replaces another (eviction, requeue).

    Ends when the run is `finished()` and its last pod has ended, or at `deadline` (monotonic time).
    """
    done_pods: set[str] = set()
    first = True
    while deadline is None or time.monotonic() < deadline:
        pods = learner_pods(api, ns, run_id, learner)
        current = [p for p in pods if p["metadata"]["name"] not in done_pods and _started(p)]
        if not current:
            if finished() and all(p["metadata"]["name"] in done_pods or _ended(p) for p in pods):
                return
            time.sleep(poll)
            continue
        # From the start, every pod of this learner in order (evicted ones first); with a tail, only
        # the newest pod's last lines, as `kubectl logs --tail` does.
        pod = current[-1] if first and tail is not None else current[0]
        name = pod["metadata"]["name"]
        if first:
            for old in pods[: pods.index(pod)]:
                done_pods.add(old["metadata"]["name"])
        first = False
        query = {"container": LEARNER, "follow": "true", "timestamps": "true" if timestamps else None,
                 "tailLines": tail if tail is not None else None}
        try:
            yield from api.stream_lines(f"{pods_path(ns, name)}/log", query=query, read_timeout=None)
        except KubeNotFound:
            pass  # the pod went away while we read it
        tail = None
        done_pods.add(name)
