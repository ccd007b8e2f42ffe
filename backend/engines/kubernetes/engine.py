"""KubernetesEngine: runs as Kueue-queued Jobs, observed into a ledger.

The engine runs inside the per-user agent (DESIGN.md; keeper.py is the agent's part): the CLI or
TUI accepts runs into the profile's SQLite ledger (sqlite_ledger.py) without creating Jobs; the agent
releases them (`release_held`: sweeps `parallel` at a time, via `submit_run`) and keeps `watch_loop`
going, plus a periodic relist; every transition lands in the ledger, and `run.json` is written to the
results bucket when a run ends. The CLI and TUI read the same ledger (`from_backend`), start the agent
when none runs (DLAAS_AGENT_AUTOSTART=0 turns that off: the process then catches up from the cluster
and releases held runs itself). Tests may pass a `MemoryLedger` and call `sync_once` themselves.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from backend.errors import BadInput, NotFound, ReadOnly
from backend.runs import (
    ChangeSet,
    ErrorCode,
    Inventory,
    MetricPoint,
    Run,
    RunEvent,
    RunState,
    attempt_of,
    attempt_started_message,
    utcnow,
)

from . import kueue, logs, render
from .client import MERGE_PATCH, KubeApi, KubeError, KubeNotFound, jobs_path, pods_path, workloads_path
from .ledger import SYNCED, AgentLedger, Ledger, MemoryLedger, last_state
from .runview import assigned_label, canonical_gpu, flavor_gpu, inventory_from_nodes, run_from_job
from .kueue_waits import AT_HEAD, behind, is_behind
from .states import PERMANENT_ERRORS, Observation, gpu_line, observe, parse_time, report_outcome
from .submission import Submitting, new_run_id  # noqa: F401
from .watch import Reflector

if TYPE_CHECKING:
    from backend.config import Config, Profile

log = logging.getLogger("dlaas.kubernetes")
NO_POD_GRACE_SECONDS = 30  # admitted without pods this long: look for the Job controller's refusal
SKEW_NOISE = timedelta(seconds=2)  # creationTimestamp's resolution, plus a round trip
_FORWARD = [RunState.QUEUED, RunState.PENDING, RunState.DOWNLOADING, RunState.PROCESSING, RunState.STORING]


def _ours(obj: dict[str, Any]) -> bool:
    return render.LABEL_RUN in ((obj.get("metadata") or {}).get("labels") or {})


def _owner_job(workload: dict[str, Any]) -> str | None:
    return kueue.owner_job(workload)


def _pod_run(pod: dict[str, Any]) -> str | None:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get(render.LABEL_RUN) or labels.get(render.JOB_NAME_LABEL)


class KubernetesEngine(Submitting):
    name = "kubernetes"

    def __init__(self, api: KubeApi | None, profile: Profile, config: Config, *, ledger: Ledger | None = None,
                 store: Any = None, user: str | None = None, backend: Any = None) -> None:
        self._api = api
        # The profile's backend (facade), when one opened this engine: its store (for run.json), its budget.
        self._backend = backend
        self._paths: Any = None  # the home's paths, for the CLI/TUI's engine that reads the agent's ledger
        self._catch_up = False  # that engine looks once for runs submitted while no agent ran
        self._as_of: datetime | None = None  # when the last cluster listing was read
        self._eta_capacity: tuple[float, int] = (0.0, 0)
        self.profile = profile
        self.config = config
        self.ledger: Ledger = ledger or MemoryLedger()
        self._store = store
        self.user = user
        self.ns = profile.kubernetes.namespace
        self.queue = profile.kubernetes.queue
        self.workload_version = "v1beta2"  # settled by discovery on the first read (`_workloads`)
        self._served: dict[str, tuple[str, ...]] = {}  # API group -> versions served, from discovery
        self._manifests: dict[str, str] = {}
        self._meter: Any = None
        self._submitting: set[str] = set()
        self._devices_read: set[str] = set()
        self._registered: dict[str, datetime] = {}  # when a run entered the ledger (its Job existed by then)
        # The cluster's clock minus ours, learnt from the creationTimestamp the API server stamps on each
        # Job we create. The ledger and the bill are in the cluster's time: see `cluster_now`.
        self._skew = timedelta(0)
        self._uids: dict[str, str] = {}
        self._lock = threading.RLock()
        self._release_lock = threading.Lock()  # one releaser of held runs per process

    @classmethod
    def from_backend(cls, backend: Any) -> KubernetesEngine:
        """The engine the CLI and TUI use: the profile's SQLite ledger, which the agent keeps."""
        from backend.ledger.files import ledger_path

        from .sqlite_ledger import SqliteLedger

        ledger = SqliteLedger(ledger_path(backend.paths, backend.profile.name), backend.profile.name)
        engine = cls(None, backend.profile, backend.config, ledger=ledger, backend=backend)
        engine._paths = backend.paths
        engine._catch_up = True
        return engine

    def _agent_running(self) -> bool:
        from backend.agentlink.control import agent_pid

        paths = self._paths
        return bool(paths is not None and (agent_pid(paths.state_dir) or 0) > 0)

    def _wake_agent(self) -> bool:
        """Start the agent unless it runs (DLAAS_AGENT_AUTOSTART=0 turns that off), then nudge it;
        False when no agent serves this home, so the caller does the agent's part itself."""
        import os

        from backend.agentlink.control import ensure_agent, wake

        paths = self._paths
        if paths is None:
            return False
        if not self._agent_running():
            if os.environ.get("DLAAS_AGENT_AUTOSTART", "1") == "0":
                return False
            ensure_agent(paths, wait=False)
        wake(paths.state_dir)
        return True

    def _wait_for_agent_listing(self, timeout: float = 5.0) -> None:
        """A profile the running agent has never listed (its ledger was just created): wake the agent
        and give it a moment, so a first `runs` does not show an empty cluster."""
        import time

        ledger = self.ledger
        if not isinstance(ledger, AgentLedger) or ledger.has_mark("", SYNCED):
            return
        self._wake_agent()
        deadline = time.monotonic() + timeout
        while not ledger.has_mark("", SYNCED) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _ensure_synced(self) -> None:
        """First read in a process: an agent keeps the ledger current; without one (not started
        yet, or auto-start turned off) this process catches up from the cluster itself."""
        if self._catch_up:
            self._catch_up = False
            if self._agent_running():
                self._wait_for_agent_listing()
                return
            self.sync_once()
            release = getattr(self, "release_held", None)
            if release is not None and isinstance(self.ledger, AgentLedger):
                release()
            self._wake_agent()

    # -- plumbing ------------------------------------------------------------------------------------
    @property
    def api(self) -> KubeApi:
        if self._api is None:
            k8s = self.profile.kubernetes
            self._api = KubeApi.from_kubeconfig(k8s.kubeconfig, k8s.context)
        return self._api

    @property
    def store(self) -> Any:
        if self._store is None and self._backend is not None:
            self._store = self._backend.store
        return self._store

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
        if isinstance(self.ledger, AgentLedger):
            self.ledger.close()

    def _list(self, path: str, selector: str | None = None) -> list[dict[str, Any]]:
        return self.api.request("GET", path, query={"labelSelector": selector}).get("items") or []

    def served(self, group: str = kueue.GROUP) -> tuple[str, ...]:
        """The versions of a Kueue API group this cluster serves (discovery, read once; forgotten
        when a read of them answers 404, as after a Kueue upgrade)."""
        if group not in self._served:
            self._served[group] = kueue.served_versions(self.api, group)
        return self._served[group]

    def _workloads(self) -> list[dict[str, Any]]:
        for version in self.served():
            try:
                items = self._list(workloads_path(self.ns, version))
                self.workload_version = version
                return items
            except KubeNotFound:
                self._served.pop(kueue.GROUP, None)
                continue
        return []

    def cluster_now(self) -> datetime:
        """Now on the cluster's clock: ours plus the skew seen on the Jobs we created."""
        return utcnow() + self._skew

    def _learn_skew(self, created: dict[str, Any], sent_at: datetime, answered_at: datetime) -> None:
        """Read the cluster's clock from a Job it has just created.

        creationTimestamp has whole seconds, so a skew under SKEW_NOISE is taken as none."""
        stamp = parse_time((created.get("metadata") or {}).get("creationTimestamp"))
        if stamp is None:
            return
        ours = sent_at + (answered_at - sent_at) / 2
        skew = stamp - ours
        self._skew = skew if abs(skew) >= SKEW_NOISE else timedelta(0)

    def sync_once(self) -> list[RunEvent]:
        """Read Jobs, Workloads and Pods once and record what changed; returns the new events."""
        listed_at = self.cluster_now()
        jobs = [j for j in self._list(jobs_path(self.ns), render.LABEL_RUN) if _ours(j)]
        workloads = self._workloads()
        pods = [p for p in self._list(pods_path(self.ns), render.LABEL_RUN) if _ours(p)]
        return self.apply(jobs, workloads, pods, listed_at=listed_at)

    def apply(self, jobs: list[dict[str, Any]], workloads: list[dict[str, Any]], pods: list[dict[str, Any]],
              *, listed_at: datetime | None = None) -> list[RunEvent]:
        """Observe every run from these objects. A run missing from `jobs` counts as lost only if it
        was submitted before `listed_at` (a run created during the listing is simply not in it)."""
        by_job_wl = {name: w for w in workloads if (name := _owner_job(w))}
        pods_by_run: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            if run_id := _pod_run(pod):
                pods_by_run.setdefault(run_id, []).append(pod)
        new: list[RunEvent] = []
        seen = set()
        with self._lock:
            # What the cluster said holds as of the listing: a live cost runs to then, not to later,
            # when the Job may already have ended at a time the next listing will report.
            self._as_of = listed_at
            for job in jobs:
                run_id = job["metadata"]["name"]
                seen.add(run_id)
                if run_id in self._submitting:
                    continue
                if uid := job["metadata"].get("uid"):
                    self._uids[run_id] = uid
                new += self._observe_run(job, by_job_wl.get(run_id), pods_by_run.get(run_id, []))
            held = self.ledger.held_ids() if isinstance(self.ledger, AgentLedger) else set()
            for run in self.ledger.runs():
                if run.id in held or run.id in self._submitting:  # its Job not created yet: nothing to miss
                    continue
                known_since = self._registered.get(run.id, run.submitted_at)
                if run.id not in seen and not run.state.terminal and listed_at and known_since < listed_at:
                    outcome = self._outcome_from_bucket(run)
                    if outcome is not None:  # None: the store cannot say now; the next sync asks again
                        new += self._transition(run, outcome)
            self._refresh_positions()
        return new

    def _observe_run(self, job: dict[str, Any], workload: dict[str, Any] | None, pods: list[dict[str, Any]]
                     ) -> list[RunEvent]:
        run_id = job["metadata"]["name"]
        run = self.ledger.get_run(run_id)
        if run is None:  # submitted elsewhere, or before this agent started: catch up from the cluster
            run = run_from_job(job, self.config)
            self.ledger.put_run(run)
            self.ledger.record(RunEvent(run_id, run.submitted_at, RunState.QUEUED, "found on the cluster"))
        if run.state.terminal:
            return []
        # STORING from the learner's readiness: no log read per pod
        obs = observe(job, workload, pods, need_gpus=run.gpus, position=run.queue_position)
        if run.state == RunState.STORING and obs.state == RunState.PROCESSING:
            obs.state, obs.at, obs.message = RunState.STORING, None, run.message  # a probe that passed again
        if obs.stuck and not obs.state.terminal:
            obs = self._start_failure(run_id, obs)
        unread = [p for p in pods if p["metadata"]["name"] not in self._devices_read]
        if obs.state in (RunState.PROCESSING, RunState.STORING) and unread:
            # the wrapper's first line names the devices; read once per pod
            run.assigned = self._devices(run, unread) or run.assigned
        if obs.node and obs.node != run.node:
            run.node = obs.node
            gpu_type, _ = self._node_gpu(obs.node)
            # node labels say the product; where nodes cannot be read, the Kueue flavor often does
            run.gpu_type = gpu_type or flavor_gpu(workload) or run.gpu_type
            if not any(a.startswith("GPU-") for a in run.assigned):
                run.assigned = [assigned_label(obs.node, run.gpus, run.gpu_type)]
        return self._transition(run, obs)

    def _transition(self, run: Run, obs: Observation) -> list[RunEvent]:
        before = self.ledger.get_run(run.id)
        events = self.ledger.events(run.id)
        prev = last_state(events) or RunState.QUEUED
        # The ledger's order is the run's order, so a state never lands before the one it follows. The
        # first event (submitted, accepted or found) is the one time stamped on this side before the
        # cluster had said anything: a cluster time is never moved to fit it, so a cluster whose clock
        # is behind ours still bills from its own PodScheduled time.
        last_at = max((e.at for e in events[1:]), default=None)
        now = self.cluster_now()
        steps: list[RunState] = []
        if obs.state != prev:
            if obs.state in _FORWARD and prev in _FORWARD:
                lo, hi = _FORWARD.index(prev), _FORWARD.index(obs.state)
                steps = _FORWARD[lo + 1: hi + 1] if hi > lo else [RunState.QUEUED, *_FORWARD[1: hi + 1]]
            elif obs.state in (RunState.COMPLETED, RunState.FAILED) and prev in _FORWARD:
                # the states a late look skipped, so that billing starts when the pod got its node
                later = _FORWARD[_FORWARD.index(prev) + 1:]
                if obs.state == RunState.FAILED:
                    later = [s for s in later if s in obs.timeline]
                steps = [*later, obs.state]
            else:
                steps = [obs.state]
        out: list[RunEvent] = []
        for state in steps:
            at = obs.at if state == obs.state and obs.at else obs.timeline.get(state) or obs.at or now
            at = max(at, last_at) if last_at else at
            last_at = at
            final = state == obs.state
            message = obs.message if final else ""
            if state == RunState.PENDING and not message and (attempt := attempt_of(events)) > 1:
                message = attempt_started_message(attempt)
            ev = RunEvent(run.id, at, state, message, obs.error_code if final else None)
            self.ledger.record(ev)
            out.append(ev)
            if state == RunState.PENDING and (run.admitted_at is None or obs.evicted is False):
                run.admitted_at = run.admitted_at or at
            if state == RunState.PROCESSING:
                run.started_at = run.started_at or at
        # A queued run's place in the queue (`behind N runs`) moves with others' runs: not an event.
        if not steps and obs.message and obs.message != run.message and not is_behind(obs.message):
            note = RunEvent(run.id, now, None, obs.message)
            self.ledger.record(note)
            out.append(note)
        run.state = obs.state
        run.message = obs.message
        run.error_code = obs.error_code
        if obs.state.terminal:
            run.finished_at = run.finished_at or (out[-1].at if out else now)
            run.queue_position = None
        if obs.state != RunState.QUEUED:
            run.queue_position = None
            run.eta, run.eta_bound = None, False
        as_of = self._as_of
        run.cost_micro_usd = self._cost(run, min(now, as_of) if as_of else now)
        if obs.state.terminal and obs.state != RunState.HALTED:
            self._final_metrics(run)
        # Only real changes reach the ledger, so `changes(cursor)` stays quiet for quiet runs.
        if out or before is None or before.to_json() != run.to_json() or before.node != run.node:
            run.updated_at = now
            self.ledger.put_run(run)
        if obs.state.terminal:
            self._write_run_json(run)
        return out

    def _cost(self, run: Run, now: Any) -> int | None:
        from backend.cost import Meter

        if self._meter is None:
            self._meter = Meter.from_config(self.config)
        return self._meter.bill_run(run, self.ledger.events(run.id), now).total_micro

    def _final_metrics(self, run: Run) -> None:
        from backend.metrics import last_values, primary_metric

        try:
            points = [p for p in self.metrics(run.id) if p.learner == 0]
        except (KubeError, NotFound):
            return
        run.metrics = last_values(points)
        run.primary_metric = primary_metric(list(run.metrics))

    def _outcome_from_bucket(self, run: Run) -> Observation | None:
        """A Job that is gone before this engine saw it end (its ttlSecondsAfterFinished passed while
        no agent ran, or someone deleted it): what the results bucket says, else S401. The bucket
        holds `run.json` when another agent saw the end, and each learner's `status.json` (the
        wrapper's report) when the learners ended. None when the store cannot be read now."""
        lost = Observation(RunState.FAILED, message="the Job vanished from the cluster",
                           error_code=ErrorCode.RUN_LOST.value)
        if self.store is None or not run.results_bucket:
            return lost
        try:
            doc = self._bucket_json(run.results_bucket, f"{run.id}/run.json")
            if doc and doc.get("state") in (RunState.COMPLETED.value, RunState.FAILED.value):
                return Observation(RunState(doc["state"]), at=parse_time(doc.get("finished_at")),
                                   message=doc.get("message") or "", error_code=doc.get("error_code"))
            reports = [self._bucket_json(run.results_bucket, f"{run.id}/learner-{i}/status.json")
                       for i in range(run.learners)]
        except Exception as exc:  # the store down, credentials refused: no evidence either way yet
            log.warning("%s: its Job is gone and the results bucket cannot be read: %s", run.id, exc)
            return None
        if not all(reports):
            return lost
        outcome = report_outcome([r for r in reports if r])
        outcome.message = f"{outcome.message} (read from the results bucket: the Job was already gone)".lstrip()
        return outcome

    def _bucket_json(self, bucket: str, key: str) -> dict[str, Any] | None:
        """A JSON object from the bucket; None when it is not there (or not JSON). Other errors raise."""
        try:
            doc = json.loads(self.store.read_range(bucket, key))
        except (NotFound, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def _start_failure(self, run_id: str, obs: Observation) -> Observation:
        """A start-up error the cluster keeps retrying: after `start_failure_seconds` (at once when no
        retry can cure it) the run fails with S302 and its Job is deleted, so Kueue takes its quota
        back. A Job whose pods cannot be created says why only in its Events (FailedCreate:
        PodSecurity, ResourceQuota, a webhook); they are read while it waits, not on every sync."""
        reason, message, since = obs.stuck or ("", "", None)
        now = self.cluster_now()
        waited = (now - since).total_seconds() if since else 0.0
        limit = self.profile.kubernetes.start_failure_seconds
        if reason == "NoPods":
            if waited < min(limit, NO_POD_GRACE_SECONDS):
                return obs
            event = self._failed_create(run_id)
            if event is None:
                return obs  # no refusal on record: the Job controller is slow, not stuck
            reason, message = "FailedCreate", event
            obs.message = f"admitted; the Job controller cannot create its pods: {message}"
        if reason not in PERMANENT_ERRORS and waited < limit:
            return obs
        text = f"{reason}: {message}".rstrip(": ")
        log.info("%s: failing after %.0f s of %s", run_id, waited, reason)
        try:
            self._delete_job(run_id)
        except KubeError as exc:  # refused or unreachable: the run stays as it is and the next sync tries again
            log.warning("%s: could not delete the Job of a run that cannot start: %s", run_id, exc)
            return obs
        return Observation(RunState.FAILED, message=f"the cluster could not start the run: {text}",
                           error_code=ErrorCode.START_FAILED.value)

    def _failed_create(self, run_id: str) -> str | None:
        """The newest FailedCreate event of the run's Job, if any."""
        try:
            events = self._list_events(run_id)
        except KubeError:
            return None
        refused = [e for e in events if e.get("reason") == "FailedCreate"]
        if not refused:
            return None
        newest = max(refused, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        return newest.get("message") or "FailedCreate"

    def _list_events(self, run_id: str) -> list[dict[str, Any]]:
        query = {"fieldSelector": f"involvedObject.kind=Job,involvedObject.name={run_id}"}
        return self.api.request("GET", f"/api/v1/namespaces/{self.ns}/events", query=query).get("items") or []

    def _devices(self, run: Run, pods: list[dict[str, Any]]) -> list[str]:
        """Device labels from each pod's first log line; a pod whose line is there is not read again."""
        found: list[str] = []
        for pod in pods:
            name = pod["metadata"]["name"]
            try:
                head = "\n".join(logs.read_log(self.api, self.ns, name, limit_bytes=4096))
            except KubeError:
                continue
            if "dlaas: gpus:" in head:
                self._devices_read.add(name)
            node = (pod.get("spec") or {}).get("nodeName")
            found += [f"{node}/{d}" if node and len(pods) > 1 else d for d in gpu_line(head)]
        return found

    def _node_gpu(self, node: str) -> tuple[str | None, int]:
        try:
            obj = self.api.request("GET", f"/api/v1/nodes/{node}")
        except KubeError:
            return None, 0
        labels = (obj.get("metadata") or {}).get("labels") or {}
        product = labels.get(self.profile.kubernetes.gpu_product_label)
        return canonical_gpu(product), int(labels.get("nvidia.com/gpu.count", "0") or 0)

    def _refresh_positions(self) -> None:
        queued = [r for r in self.ledger.runs() if r.state == RunState.QUEUED]
        if not queued:
            return
        uid_to_name = {uid: name for name, uid in self._uids.items()}
        try:
            positions = kueue.queue_positions(self.api, self.ns, self.queue, uid_to_name,
                                              self.served(kueue.VISIBILITY_GROUP) or kueue.VERSIONS,
                                              self.served(kueue.GROUP))
        except KubeError as exc:  # positions are a nicety: a sync never fails for want of them
            log.info("queue positions unavailable: %s", exc)
            return
        for run in queued:
            pos, approximate = positions.by_job.get(run.id), positions.approximate
            if pos is None:
                # Not in Kueue's pending list: its Workload is not there yet, or it is admitted and
                # waits for a node. Either way nothing known is behind it.
                pos, approximate = positions.total + 1, True
            message = (behind(pos) or AT_HEAD) if is_behind(run.message) else run.message
            if (pos != run.queue_position or approximate != run.queue_position_approximate
                    or message != run.message):
                run.queue_position = pos
                run.queue_position_approximate = approximate
                run.message = message
                self.ledger.put_run(run)
        self._refresh_etas()

    def _refresh_etas(self) -> None:
        """Queue ETAs by backend/eta.py's model, as every engine gives them: Kueue's order, the
        tier's GPUs (else the nodes'), learned durations. No capacity known: no ETAs."""
        from time import monotonic

        from backend.eta import queue_etas

        at, capacity = self._eta_capacity
        if monotonic() - at > 60:
            capacity = self.config.tier_gpus(self.profile)
            if not capacity:
                try:
                    capacity = self.inventory().gpu_count
                except Exception:
                    capacity = 0
            self._eta_capacity = (monotonic(), capacity)
        runs = self.ledger.runs()
        # The ClusterQueue setup.py renders queues BestEffortFIFO: Kueue admits a workload that fits
        # past one that does not, and the estimate simulates that rule.
        etas = queue_etas(runs, capacity=capacity, now=self.cluster_now(), best_effort=True) if capacity else {}
        for run in runs:
            if run.state != RunState.QUEUED:
                continue
            got = etas.get(run.id)
            eta, bound = (got.at, got.bound) if got else (None, False)
            moved = (eta is None) != (run.eta is None) or (
                eta is not None and run.eta is not None and abs((eta - run.eta).total_seconds()) >= 1)
            if moved or bound != run.eta_bound:
                run.eta, run.eta_bound = eta, bound
                self.ledger.put_run(run)

    def _write_run_json(self, run: Run) -> None:
        if not run.results_bucket or self.store is None or not self.ledger.mark(run.id, "run.json"):
            return
        doc = {**run.to_json(), "events": [e.to_json() for e in self.ledger.events(run.id)]}
        try:
            self.store.put_bytes(run.results_bucket, f"{run.id}/run.json", json.dumps(doc, indent=2).encode())
        except Exception as exc:  # the run is over either way; the ledger still has everything
            self.ledger.record(RunEvent(run.id, self.cluster_now(), None, f"could not write run.json: {exc}"))

    def watch_loop(self, stop: threading.Event, *, timeout_seconds: int = 60, positions_every: float = 10) -> None:
        """List, then watch Jobs, Workloads and Pods until `stop`; each change re-observes its run."""
        dirty: set[str] = set()
        cond = threading.Condition()

        def mark(run_id: str | None) -> None:
            if run_id:
                with cond:
                    dirty.add(run_id)
                    cond.notify()

        self._workloads()  # settles which Workload API version the cluster serves
        reflectors = {
            "jobs": Reflector(self.api, jobs_path(self.ns), label_selector=render.LABEL_RUN, keep=_ours,
                              on_event=lambda k, o: mark(o["metadata"].get("name"))),
            "workloads": Reflector(self.api, workloads_path(self.ns, self.workload_version),
                                   on_event=lambda k, o: mark(_owner_job(o))),
            "pods": Reflector(self.api, pods_path(self.ns), label_selector=render.LABEL_RUN, keep=_ours,
                              on_event=lambda k, o: mark(_pod_run(o))),
        }
        if not self.served():  # no Kueue API at all: Jobs and Pods still tell most of the story
            del reflectors["workloads"]

        def caches() -> tuple[list[dict[str, Any]], ...]:
            wl = reflectors.get("workloads")
            return (list(reflectors["jobs"].objects.values()), list(wl.objects.values()) if wl else [],
                    list(reflectors["pods"].objects.values()))

        listed_at = self.cluster_now()
        for r in reflectors.values():
            r.list()
        self.apply(*caches(), listed_at=listed_at)

        # The pumps end with this loop, however it ends: a caller that retries after an error must
        # not leave three watches per try running behind it.
        done = threading.Event()

        def pump(r: Reflector) -> None:
            while not (stop.is_set() or done.is_set()):
                try:
                    r.watch_once(timeout_seconds)
                except KubeError:
                    done.wait(2)

        threads = [threading.Thread(target=pump, args=(r,), daemon=True, name=f"watch-{n}-{self.profile.name}")
                   for n, r in reflectors.items()]
        for t in threads:
            t.start()
        try:
            # Each wake-up (a change, or the positions timer) re-applies the caches: observing a run is
            # cheap, and queue positions move when other people's runs move.
            while not stop.is_set():
                with cond:
                    if not dirty:
                        cond.wait(timeout=positions_every)
                    dirty.clear()
                try:
                    self.apply(*caches())
                except KubeError as exc:  # the next wake-up tries again; the watches go on
                    log.warning("kubernetes profile %s: sync failed: %s", self.profile.name, exc)
        finally:
            done.set()
            for t in threads:
                t.join(timeout=0.1)

    # -- the Engine protocol -------------------------------------------------------------------------
    def list_runs(self, *, states: Sequence[RunState] | None = None, experiment: str | None = None,
                  limit: int | None = None) -> list[Run]:
        self._ensure_synced()
        runs = sorted(self.ledger.runs(), key=lambda r: r.submitted_at, reverse=True)
        if states:
            runs = [r for r in runs if r.state in states]
        if experiment:
            runs = [r for r in runs if r.experiment == experiment]
        return runs[:limit] if limit else runs

    def get_run(self, run_id: str) -> Run:
        self._ensure_synced()
        run = self.ledger.get_run(run_id)
        if run is None:
            raise NotFound(f"{run_id}: no such run")
        return run

    def changes(self, cursor: int | None = None) -> ChangeSet:
        now = getattr(self.ledger, "cursor", 0)
        since = getattr(self.ledger, "changes_since", None)
        if cursor is None or since is None or cursor > now or cursor < 0:
            return ChangeSet(runs=self.list_runs(), deleted=[], cursor=now, full=True)
        runs, deleted = since(cursor)
        return ChangeSet(runs=runs, deleted=deleted, cursor=now)

    def events(self, run_id: str) -> list[RunEvent]:
        self.get_run(run_id)
        return self.ledger.events(run_id)

    def metrics(self, run_id: str) -> list[MetricPoint]:
        from backend.metrics import points_from_lines

        run = self.get_run(run_id)
        points: list[MetricPoint] = []
        for learner in range(run.learners):
            try:
                lines = list(self.logs(run_id, learner=learner))
            except (KubeError, NotFound):
                continue
            points += points_from_lines((ln for ln in lines if not ln.startswith("dlaas: ")), learner)
        return points

    def manifest_text(self, run_id: str) -> str:
        self.get_run(run_id)
        if run_id not in self._manifests:
            stored = self.ledger.manifest_text(run_id) if isinstance(self.ledger, AgentLedger) else None
            if stored:
                return stored
            raise NotFound(f"{run_id}: its manifest was not submitted from here")
        return self._manifests[run_id]

    def logs(self, run_id: str, *, learner: int = 0, tail: int | None = None, follow: bool = False
             ) -> Iterator[str]:
        run = self.get_run(run_id)
        if not run.state.terminal or self._job_exists(run_id):
            if follow:
                return logs.follow(self.api, self.ns, run_id, learner=learner, tail=tail,
                                   finished=lambda: self.get_run(run_id).state.terminal)
            lines: list[str] = []
            for pod in logs.learner_pods(self.api, self.ns, run_id, learner):
                lines += logs.pod_lines(self.api, self.ns, pod, tail=None, timestamps=False)
            return iter(lines[-tail:] if tail else lines)
        return self._stored_log(run, learner, tail)

    def _stored_log(self, run: Run, learner: int, tail: int | None) -> Iterator[str]:
        if self.store is None or not run.results_bucket:
            raise NotFound(f"{run.id}: the Job is gone and no results bucket holds its log")
        data = self.store.read_range(run.results_bucket, f"{run.id}/learner-{learner}/training-log.txt")
        lines = data.decode("utf-8", "replace").splitlines()
        return iter(lines[-tail:] if tail else lines)

    def _job_exists(self, run_id: str) -> bool:
        try:
            self.api.request("GET", jobs_path(self.ns, run_id))
            return True
        except KubeNotFound:
            return False

    def _delete_job(self, run_id: str) -> bool:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}
        try:
            self.api.request("DELETE", jobs_path(self.ns, run_id), body=body)
            return True
        except KubeNotFound:
            return False

    def halt(self, run_id: str) -> Run:
        """Delete the Job (foreground: pods get their grace period to store logs) and record HALTED."""
        run = self.get_run(run_id)
        if run.state.terminal:
            return run
        self._delete_job(run_id)
        with self._lock:
            self._transition(run, Observation(RunState.HALTED, message="halted by the user"))
        return self.get_run(run_id)

    def set_priority(self, run_id: str, priority: str) -> Run:
        """Change a queued run's priority to a name from [priorities]: the Job's priority-class label
        (Kueue gives its Workload the new WorkloadPriorityClass and reorders the queue), or the held
        manifest of a run whose Job is not created yet. A bare number has no WorkloadPriorityClass
        on the cluster, so only names are taken. The change is an event."""
        from backend.runs import resolve_priority

        if self.profile.read_only:
            raise ReadOnly(f"profile {self.profile.name!r} is read-only: priority is not allowed")
        priorities = self.config.all_priorities()
        name, value = resolve_priority(priorities, priority)
        if name not in priorities:
            raise BadInput(f"priority {priority!r}: on Kubernetes a priority is a WorkloadPriorityClass, "
                           f"one of {', '.join(priorities)}")
        run = self.get_run(run_id)
        if run.state != RunState.QUEUED:
            raise BadInput(f"{run_id}: run is {run.state.value}; only a queued run's priority can be changed")
        if run.priority == name:
            return run
        held = isinstance(self.ledger, AgentLedger) and run_id in self.ledger.held_ids()
        if not (held and self.ledger.reprioritize_held(run_id, name)):  # released meanwhile: its Job
            patch = {"metadata": {"labels": {render.PRIORITY_LABEL: render.priority_class(name)}}}
            try:
                self.api.request("PATCH", jobs_path(self.ns, run_id), body=patch, content_type=MERGE_PATCH)
            except KubeNotFound:
                raise NotFound(f"{run_id}: its Job is gone from the cluster") from None
        with self._lock:
            before = run.priority
            run = self.ledger.get_run(run_id) or run
            run.priority = name
            self.ledger.put_run(run)
            self.ledger.record(RunEvent(run_id, self.cluster_now(), None,
                                        f"priority changed from {before} to {name} ({value})"))
        return self.get_run(run_id)

    def resume(self, run_id: str) -> Run:
        """A HALTED or FAILED run as its next attempt: the same Job name again, whose loader restores
        `<run-id>/checkpoints/` from the results bucket into CHECKPOINT_DIR before the command starts."""
        from .resume import resume_run

        return resume_run(self, run_id)

    def delete(self, run_id: str) -> None:
        """Forget a finished run (its results stay in the bucket); an active run must be halted first."""
        run = self.get_run(run_id)
        if not run.state.terminal:
            raise BadInput(f"{run_id} is {run.state.value}: halt it first")
        self._delete_job(run_id)  # a finished Job not yet collected by its TTL
        self.ledger.forget(run_id)
        self._manifests.pop(run_id, None)

    def inventory(self) -> Inventory:
        try:
            nodes = self.api.request("GET", "/api/v1/nodes").get("items") or []
        except KubeError as exc:
            return Inventory(devices=(), nvml_available=False, message=f"cannot list the cluster's nodes: {exc}")
        held = {r.node: r.id for r in self.ledger.runs() if r.state.billed and r.node}
        return inventory_from_nodes(nodes, self.profile.kubernetes.gpu_product_label, held,
                                    self.config.tier_gpus(self.profile))
