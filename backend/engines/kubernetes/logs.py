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


def _stamp_key(stamp: str) -> tuple[int, int] | None:
    """A kubelet timestamp (RFC 3339, nanoseconds) as (epoch seconds, nanoseconds), for ordering."""
    from datetime import datetime

    body, _, frac = stamp.partition(".")
    zone = ""
    if frac:
        digits = "".join(c for c in frac if c.isdigit())
        zone = frac[len(digits):]
    else:
        digits = ""
    try:
        when = datetime.fromisoformat((body + zone).replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return int(when.timestamp()), int((digits + "000000000")[:9])


def _since_time(key: tuple[int, int]) -> str:
    """sinceTime for a resume: the API takes whole seconds, so lines from that second come again
    and are skipped by their own timestamps."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(key[0], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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

    A stream that ends while the pod's learner still runs (a dropped connection, an idle timeout in a
    proxy, a kubelet restart) or that breaks mid-way is resumed from the last line's timestamp
    (`sinceTime`; the lines of that second already given are skipped by their own timestamps).
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
        yield from _follow_pod(api, ns, run_id, learner, name, tail, timestamps, poll, deadline)
        tail = None
        done_pods.add(name)


def _follow_pod(api: KubeApi, ns: str, run_id: str, learner: int, name: str, tail: int | None, timestamps: bool,
                poll: float, deadline: float | None) -> Iterator[str]:
    last: tuple[int, int] | None = None  # the newest timestamp given, and how many lines carried it
    same = 0
    fruitless = 0  # resumes in a row that brought nothing: a log the node no longer has ends it
    while (deadline is None or time.monotonic() < deadline) and fruitless < 5:
        given = (last, same)
        query = {"container": LEARNER, "follow": "true", "timestamps": "true",
                 "tailLines": tail if tail is not None and last is None else None,
                 "sinceTime": _since_time(last) if last else None}
        skip_same = same
        broke = False
        try:
            for line in api.stream_lines(f"{pods_path(ns, name)}/log", query=query, read_timeout=None):
                stamp, _, text = line.partition(" ")
                key = _stamp_key(stamp)
                if key is None:  # no timestamp on it: pass it on as it is
                    yield line
                    continue
                if last is not None and key < last:
                    continue  # given before the resume
                if last is not None and key == last and skip_same > 0:
                    skip_same -= 1
                    continue
                same = same + 1 if key == last else 1
                last = key
                yield line if timestamps else text
        except KubeNotFound:
            return  # the pod went away while we read it
        except KubeError:
            broke = True  # cut mid-way: read on from the last line
        try:
            pod = next((p for p in learner_pods(api, ns, run_id, learner) if p["metadata"]["name"] == name), None)
        except KubeError:
            pod = {}  # cannot tell: try the stream again
        if pod is None:
            return
        if pod and _ended(pod) and not broke:
            return  # the kubelet closed it because the container ended: all was given
        fruitless = fruitless + 1 if (last, same) == given else 0
        time.sleep(min(poll, 1.0))
