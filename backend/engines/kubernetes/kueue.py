"""Queue positions from Kueue's visibility API, with an approximation where it is not served.

`GET /apis/visibility.kueue.x-k8s.io/{v1beta2|v1beta1}/namespaces/{ns}/localqueues/{lq}/pendingworkloads`
answers pending Workloads in order with 0-based `positionInLocalQueue` (paged with limit/offset). A
Workload names its Job in `ownerReferences` (uid) and in the `kueue.x-k8s.io/job-uid` label; that is
how positions are matched to runs. Where the API is missing (older Kueue, feature gate off) or
forbidden, positions are approximated from the namespace's pending Workloads ordered by priority,
then creation time, and marked approximate.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .client import KubeApi, KubeError, KubeForbidden, KubeNotFound, pending_workloads_path, workloads_path
from .states import is_true

JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
VERSIONS = ("v1beta2", "v1beta1")  # the versions dlaas-tui speaks, newest first
GROUP = "kueue.x-k8s.io"
VISIBILITY_GROUP = "visibility.kueue.x-k8s.io"
PAGE = 500


def served_versions(api: KubeApi, group: str = GROUP) -> tuple[str, ...]:
    """The versions of an API group that the cluster serves and dlaas-tui speaks, newest first, from
    discovery (`GET /apis/<group>`). Kueue served v1beta1 alone before
    ~0.16, both for a while, and v1beta2 alone from ~0.20. Empty when the group is not served; every
    version we speak when discovery cannot be read (the reads then find out by 404)."""
    try:
        doc = api.request("GET", f"/apis/{group}")
    except KubeNotFound:
        return ()
    except KubeError:
        return VERSIONS
    served = {v.get("version") for v in doc.get("versions") or [] if isinstance(v, dict)}
    return tuple(v for v in VERSIONS if v in served) if served else VERSIONS


@dataclass
class QueuePositions:
    by_job: dict[str, int] = field(default_factory=dict)  # Job name -> 1-based position
    approximate: bool = False
    source: str = ""  # "visibility/v1beta2", "workloads", or why nothing is known
    total: int = 0


def owner_job(workload: dict[str, Any], uid_to_name: dict[str, str] | None = None) -> str | None:
    """The name of the Job that owns a Workload: by uid (ownerReferences, then the job-uid label)."""
    meta = workload.get("metadata") or {}
    uid_to_name = uid_to_name or {}
    owners = [o for o in meta.get("ownerReferences") or [] if o.get("kind") == "Job"]
    for owner in owners:
        if owner.get("uid") in uid_to_name:
            return uid_to_name[owner["uid"]]
    label_uid = (meta.get("labels") or {}).get(JOB_UID_LABEL)
    if label_uid and label_uid in uid_to_name:
        return uid_to_name[label_uid]
    return owners[0].get("name") if owners else None


def _visibility(api: KubeApi, ns: str, queue: str, version: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = api.request("GET", pending_workloads_path(ns, queue, version), query={"limit": PAGE, "offset": offset})
        batch = page.get("items") or []
        items.extend(batch)
        if len(batch) < PAGE:
            return items
        offset += len(batch)


def _approximate(api: KubeApi, ns: str, queue: str, uid_to_name: dict[str, str],
                 versions: tuple[str, ...] = VERSIONS) -> QueuePositions:
    last: KubeError | None = None
    for version in versions:
        try:
            listing = api.request("GET", workloads_path(ns, version))
        except (KubeNotFound, KubeForbidden) as exc:
            last = exc
            continue
        except KubeError as exc:  # 5xx, 429, unreachable: positions are a nicety, never a failure
            return QueuePositions(approximate=True, source=f"unknown: {exc}")
        pending = [
            w for w in listing.get("items") or []
            if (w.get("spec") or {}).get("queueName") == queue
            and not is_true(w, "QuotaReserved") and not is_true(w, "Finished")
        ]
        pending.sort(key=lambda w: (-int((w.get("spec") or {}).get("priority") or 0),
                                    (w.get("metadata") or {}).get("creationTimestamp") or ""))
        out = QueuePositions(approximate=True, source=f"workloads/{version}", total=len(pending))
        for i, w in enumerate(pending):
            job = owner_job(w, uid_to_name)
            if job:
                out.by_job[job] = i + 1
        return out
    return QueuePositions(approximate=True, source=f"unknown: {last}" if last else "unknown")


def queue_positions(api: KubeApi, ns: str, queue: str, uid_to_name: dict[str, str] | None = None,
                    versions: tuple[str, ...] = VERSIONS,
                    workload_versions: tuple[str, ...] = VERSIONS) -> QueuePositions:
    """Positions of the queue's pending runs (1-based), exact where the visibility API answers.

    Where it does not, they are approximated: 404 (the version, or the whole API, not served), 403
    (RBAC), and also 503 (the APIService registered but its server down, or the VisibilityOnDemand
    gate off), 429 (API priority and fairness throttling) and an unreachable server. Nothing here
    raises for want of positions. `versions`: of the visibility API to try; `workload_versions`: of
    kueue.x-k8s.io, for the approximation (each as discovery found them)."""
    uid_to_name = uid_to_name or {}
    for version in versions:
        try:
            items = _visibility(api, ns, queue, version)
        except KubeNotFound:
            continue  # this version (or the whole API) is not served
        except KubeError:
            break  # refused (RBAC: `cluster setup` grants it), unavailable or throttled: approximate
        out = QueuePositions(source=f"visibility/{version}", total=len(items))
        for i, w in enumerate(items):
            job = owner_job(w, uid_to_name)
            if job:
                pos = w.get("positionInLocalQueue")
                out.by_job[job] = (int(pos) if pos is not None else i) + 1  # Kueue's are 0-based
        return out
    return _approximate(api, ns, queue, uid_to_name, workload_versions or VERSIONS)
