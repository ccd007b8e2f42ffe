"""Why a queued run waits on the Kubernetes engine: Kueue's pending reasons in the local engine's words.

A Workload says why it is not admitted in its conditions (the shapes of Kueue's own controllers):

  QuotaReserved False, reason Pending / WaitingForQuota / WaitingForPreemptedWorkloads, message
      "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in
      flavor h100, 2 more needed[, ...][. Pending the preemption of 1 workload(s)]"   -> GPUs busy
      "... insufficient quota for nvidia.com/gpu in flavor h100, request > maximum capacity (8 > 4)"
      (or Kueue 0.14's "previously considered podsets requests (4) + current podset request (4) >
      maximum capacity (4)")                                                           -> tier limit
      the same for cpu / memory                                    -> CPUs busy / memory busy, tier limit
  QuotaReserved False, reason Inadmissible (Misconfigured, Suspended in newer Kueue):
      "LocalQueue team-a doesn't exist", "ClusterQueue cq not found" / "doesn't exist"   -> queue missing
      "ClusterQueue cq is inactive", "LocalQueue team-a is inactive"                      -> queue stopped
  QuotaReserved True, Admitted False (UnsatisfiedChecks)                          -> admission checks pending
  Evicted True: Preempted (a `Preempted` condition says InClusterQueue / InCohort...), PodsReadyTimeout,
      ClusterQueueStopped / LocalQueueStopped, AdmissionCheck, InactiveWorkload / Deactivated
  spec.active false                                                                   -> held
  nothing of the above                                          -> behind N runs (Kueue's queue position)

The words are the local engine's (backend/engines/local/scheduler.py, agent.py): `GPUs busy: needs 2,
0 free (...)`, `tier limit: ...`, `CPUs busy`, `memory busy`, `held (...)`, `behind N runs`; the
Kueue detail follows in parentheses, built with backend/waits.py's phrases.
"""
from __future__ import annotations

import re
from typing import Any

from backend.waits import behind, busy


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def is_true(obj: dict[str, Any] | None, ctype: str) -> bool:
    c = condition(obj, ctype)
    return bool(c) and c.get("status") == "True"

GPU_RESOURCE = "nvidia.com/gpu"
NO_WORKLOAD = "waiting for Kueue to create the Workload"
AT_HEAD = "waiting for Kueue to admit it"

_UNUSED = re.compile(r"insufficient unused quota for (?P<res>[^\s,]+) in flavor (?P<flavor>[^\s,]+), "
                     r"(?P<more>[0-9.]+[A-Za-z]*) more needed")
_MAXCAP = re.compile(r"insufficient quota for (?P<res>[^\s,]+) in flavor (?P<flavor>[^\s,]+), "
                     r"request > maximum capacity \((?P<asked>[^\s)]+) > (?P<most>[^\s)]+)\)")
# Kueue 0.14 on: what earlier pod sets of the same Workload took counts too.
_MAXCAP_SUM = re.compile(r"insufficient quota for (?P<res>[^\s,]+) in flavor (?P<flavor>[^\s,]+), "
                         r"previously considered podsets requests \((?P<prev>[^\s)]+)\) \+ current podset "
                         r"request \((?P<req>[^\s)]+)\) > maximum capacity \((?P<most>[^\s)]+)\)")
_QUEUE_MISSING = re.compile(r"(?P<kind>LocalQueue|ClusterQueue) (?P<name>\S*) (?:doesn't exist|not found)")
_QUEUE_STOPPED = re.compile(r"(?P<kind>LocalQueue|ClusterQueue) (?P<name>\S*) is (?:inactive|stopped)")
_PREEMPTING = re.compile(r"Pending the preemption of (\d+) workload")




def is_behind(message: str) -> bool:
    """A message that only says where the run stands in the queue (it changes as the queue moves)."""
    return message == AT_HEAD or bool(re.fullmatch(r"behind \d+ runs?", message or ""))


# -- reading a Workload ----------------------------------------------------------------------------------
def _number(text: str | None) -> float | None:
    if not text:
        return None
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text)
    if not m:
        return None
    value = float(m.group(1))
    return value / 1000 if m.group(2) == "m" else value


def _whole(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def requested_gpus(workload: dict[str, Any]) -> int | None:
    """GPUs the Workload's pod sets ask for in all (count x the containers' nvidia.com/gpu), or None."""
    total, seen = 0, False
    for ps in (workload.get("spec") or {}).get("podSets") or []:
        count = int(ps.get("count") or 1)
        spec = (ps.get("template") or {}).get("spec") or {}
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            res = c.get("resources") or {}
            amount = (res.get("requests") or {}).get(GPU_RESOURCE) or (res.get("limits") or {}).get(GPU_RESOURCE)
            if amount is not None:
                seen = True
                total += count * int(float(amount))
    return total if seen else None


def _kind(resource: str) -> str:
    if "gpu" in resource.lower():
        return "GPUs"
    if resource == "cpu":
        return "CPUs"
    if resource == "memory":
        return "memory"
    return resource


def _quota_reason(message: str, need: int | None, queue: str) -> str | None:
    """GPUs busy / tier limit / CPUs busy / memory busy from a flavor assigner's message, or None."""
    unused = [m.groupdict() for m in _UNUSED.finditer(message)]
    maxcap = [m.groupdict() for m in _MAXCAP.finditer(message)]
    for m in _MAXCAP_SUM.finditer(message):
        d = m.groupdict()
        d["asked"] = _whole((_number(d["prev"]) or 0) + (_number(d["req"]) or 0))
        maxcap.append(d)
    preempting = _PREEMPTING.search(message)
    tail = f"; preempting {preempting.group(1)} run(s) to make room" if preempting else ""

    def gpu_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(items, key=lambda d: _kind(d["res"]) != "GPUs")

    # A flavor where the run could never fit only matters when no flavor has room in time.
    if maxcap and not unused:
        d = gpu_first(maxcap)[0]
        kind = _kind(d["res"])
        asked, most = d["asked"], d["most"]
        unit = "GPU(s)" if kind == "GPUs" else ("core(s)" if kind == "CPUs" else "")
        what = f"{most} {unit}".strip() if unit else f"{most} of {d['res']}"
        needs = f"{asked} {unit}".strip() if unit else f"{asked} of {d['res']}"
        return (f"tier limit: queue {queue or '?'} may take {what} at most, this run needs {needs} "
                f"(Kueue: quota of flavor {d['flavor']})")
    if unused:
        d = gpu_first(unused)[0]
        kind = _kind(d["res"])
        note = f"quota of flavor {d['flavor']} in use, {d['more']} more needed{tail}"
        if kind == "GPUs" and need:
            more = int(_number(d["more"]) or 0)
            return busy("GPUs", need, max(0, need - more), note)
        if kind == "CPUs":
            return f"CPUs busy: {note}"
        return f"{kind} busy: {note}"
    return None


def _eviction(workload: dict[str, Any], cond: dict[str, Any]) -> str:
    reason = cond.get("reason") or ""
    text = cond.get("message") or ""
    if reason == "Preempted":
        pre = condition(workload, "Preempted") or {}
        where = {"InClusterQueue": "in its ClusterQueue", "InCohortReclamation": "by its cohort reclaiming quota",
                 "InCohortFairSharing": "by fair sharing in its cohort",
                 "InCohortReclaimWhileBorrowing": "by its cohort while borrowing"}.get(pre.get("reason") or "", "")
        return (f"evicted: preempted by a higher-priority run{' ' + where if where else ''}; queued again"
                + (f" (Kueue: {text})" if text else ""))
    if reason == "PodsReadyTimeout":
        return "evicted: its pods were not ready in time; queued again" + (f" (Kueue: {text})" if text else "")
    if reason in ("ClusterQueueStopped", "LocalQueueStopped"):
        which = "ClusterQueue" if reason.startswith("Cluster") else "LocalQueue"
        return f"queue stopped: its {which} was stopped" + (f" (Kueue: {text})" if text else "")
    if reason in ("InactiveWorkload", "Deactivated", "DeactivatedDueToRequeuingLimitExceeded"):
        return "held (its Workload is deactivated: set spec.active to true to let it start)"
    if reason == "AdmissionCheck":
        return "evicted: an admission check failed; queued again" + (f" (Kueue: {text})" if text else "")
    return "evicted: " + (": ".join(p for p in (reason, text) if p) or "by Kueue")


def workload_wait_reason(workload: dict[str, Any] | None, *, need_gpus: int | None = None,
                         position: int | None = None) -> str:
    """Why the Workload's run waits, in the local engine's words.

    need_gpus: the run's GPUs in all (else read from the Workload's pod sets); position: its 1-based
    place in the LocalQueue, for `behind N runs` when Kueue names no other reason."""
    if workload is None:
        return NO_WORKLOAD
    spec = workload.get("spec") or {}
    if spec.get("active") is False:
        return "held (its Workload is deactivated: set spec.active to true to let it start)"
    evicted = condition(workload, "Evicted")
    if evicted and evicted.get("status") == "True":
        return _eviction(workload, evicted)
    queue = spec.get("queueName") or ""
    need = need_gpus if need_gpus is not None else requested_gpus(workload)
    reserved = condition(workload, "QuotaReserved")
    if reserved and reserved.get("status") == "False":
        text = reserved.get("message") or ""
        if m := _QUEUE_MISSING.search(text):
            fix = " (`dlaas-tui cluster setup` prints the objects to create)"
            return f"queue missing: {m.group('kind')} {m.group('name') or '(none)'} does not exist{fix}"
        if m := _QUEUE_STOPPED.search(text):
            return f"queue stopped: {m.group('kind')} {m.group('name')} is inactive (Kueue: {text})"
        if "failed admission checks" in text:
            return f"admission checks failed (Kueue: {text})"
        found = _quota_reason(text, need, queue)
        if found:
            return found
        if text and text not in ("Preempted",) and "no longer fits" not in text:
            return f"waiting for quota (Kueue: {text})"
    elif is_true(workload, "QuotaReserved") and not is_true(workload, "Admitted"):
        admitted = condition(workload, "Admitted") or {}
        detail = admitted.get("message") or ""
        return "admission checks pending" + (f" (Kueue: {detail})" if detail else "")
    return behind(position) or AT_HEAD
