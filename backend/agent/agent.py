"""The agent: one detached process per DLAAS_HOME that admits QUEUED runs and runs them.

Started on demand (`ensure_agent`, backend/agentlink/control.py) by any command or the TUI as
`python -m backend.agent` (__main__.py): it double-forks into its own session
with no controlling terminal, so it outlives the TUI and a dropped SSH connection; its output goes to
`agent.log` in the state dir. An exclusive flock on `agent.lock` makes a second agent exit at once.
It wakes on a datagram to `agent.sock` (sent after a submit or a halt) and otherwise checks every
half second. On start it recovers: runs caught mid-flight carry on from their ledger state.
When a run or a sweep ends it sends the config's `[notify]` command and webhook (backend/notify.py).
The same agent serves the home's kubernetes profiles (backend/engines/kubernetes/keeper.py): it
watches their clusters into their ledgers and creates the Jobs of runs held back for it.
"""
from __future__ import annotations

import json
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from backend import clock
from ..cost import BILLED_SQL
from ..runs import ErrorCode, RunState, attempt_started_message, iso, utcnow
from .. import waits as wait_words
from ..engines.local.gpulock import held_by, hold_device
from ..engines.local.nvml import process_memory, read_inventory
from ..engines.local.procs import pids_by_group, pids_in_groups
from ..engines.local.scheduler import Box, FreeDevice, SharedGpu, plan
from ..engines.local.stores import run_store
from ..ledger import db
from ..store.base import LeftoverReclaim
from ..agentlink.control import wake

log = logging.getLogger("dlaas.agent")
TICK = 0.5
INVENTORY_TTL = 5.0
GPU_WATCH_S = 1.0  # how often the GPU memory of runs with a gpu_memory cap is read


class Agent:
    """`open_backend(profile=None)` opens a profile's backend (backend.facade.open_backend, passed in by
    the agent's entry point, backend/agent/__main__.py): for runs of other profiles and config reloads."""

    def __init__(self, backend, open_backend: Callable[..., Any]) -> None:
        self.backend = backend
        self.open_backend = open_backend
        self.paths = backend.paths
        self.config = backend.config
        self.conn = db.connect(self.paths.db_file)
        self.workers: dict[str, Any] = {}
        self.locks: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._backends: dict[str, Any] = {backend.profile.name: backend}
        self._stores: dict[str, Any] = {}
        self._inventory: tuple[float, list] = (0.0, [])
        self.halt_grace = float(os.environ.get("DLAAS_HALT_GRACE", "10"))
        self.stopping = threading.Event()
        self._passed = -1  # the change sequence the last admission pass had seen
        self._limit_errors: set[str] = set()  # limits that could not be read, logged once each
        self._gates_seen, self._gates_next = -1, 0.0  # when gated runs were last looked at
        self._gated: set[str] = set()  # queued runs held back by a gate (spec.wait)
        from ..engines.local.limits import capacity

        self.capacity = capacity(backend.profile)  # the cores and memory runs may hold
        self.cores: dict[str, tuple[int, ...]] = {}  # run id -> the cores its learners are pinned to
        # run id -> the reason last written to a queued run's message; at start, what an earlier
        # agent wrote, so the first pass clears what no longer holds
        self._why: dict[str, str] = dict(self.conn.execute(
            "SELECT id, message FROM runs WHERE state = 'QUEUED' AND message != '' "
            "AND json_extract(spec, '$.wait') IS NULL").fetchall())
        self._foreign: dict[str, dict] = {}  # device -> who holds its lock (another user's agent)
        self._gpu_watch_next = 0.0
        from ..engines.local.sweeps import SweepGovernor

        self.sweeps = SweepGovernor(self.conn, self.halt_for_policy)
        from ..engines.kubernetes.keeper import KubeKeeper

        # The same agent serves kubernetes profiles: their watch loops and held sweep runs.
        self.kube = KubeKeeper(self.paths, open_backend)
        from ..notify import EndNotices

        self.notices = EndNotices(self.paths)  # [notify]: word when runs and sweeps end

    # -- helpers the workers use ------------------------------------------------------------------
    def backend_for(self, profile: str):
        if profile not in self._backends:
            self._backends[profile] = self.open_backend(profile)
        return self._backends[profile]

    def store_for(self, profile: str, connection: dict | None = None):
        """The store a run reads and writes: its profile's, or its manifest's own connection."""
        key = (profile, json.dumps(connection, sort_keys=True) if connection else "")
        with self._lock:
            if key not in self._stores:
                self._stores[key] = run_store(self.backend_for(profile), connection)
            return self._stores[key]

    def resolve_env(self, env: dict[str, Any]) -> dict[str, str]:
        out = {}
        for name, value in env.items():
            if isinstance(value, dict):
                secret = self.config.secrets.get(value.get("secret", ""))
                out[name] = secret.reveal() if secret is not None else ""
            else:
                out[name] = str(value)
        return out

    def cores_for(self, run_id: str) -> tuple[int, ...]:
        with self._lock:
            return self.cores.get(run_id, ())

    def _pick_cores(self, run_id: str, count: int, procs: list | None = None) -> None:
        """Give the run `count` cores nobody holds (or, for a run whose learners already run, the
        cores they are pinned to)."""
        if count <= 0:
            return
        mine: tuple[int, ...] = ()
        for p in procs or ():
            try:
                mine += tuple(sorted(os.sched_getaffinity(p["pid"])))
            except (OSError, KeyError, TypeError):
                continue
        with self._lock:
            taken = {c for cs in self.cores.values() for c in cs}
            if mine and len(set(mine)) < len(self.capacity.cores):
                self.cores[run_id] = tuple(dict.fromkeys(mine))
                return
            free = [c for c in self.capacity.cores if c not in taken]
            # More asked than free can only follow a config edit or a restart: share, never refuse.
            pick = (free + [c for c in self.capacity.cores if c in taken])[:count]
            self.cores[run_id] = tuple(pick)

    def lock_fds(self, run_id: str) -> list[int]:
        with self._lock:
            return [lk.fd for lk in self.locks.get(run_id, []) if lk.fd is not None]

    def release(self, run_id: str) -> None:
        with self._lock:
            self.workers.pop(run_id, None)
            self.cores.pop(run_id, None)
            locks = self.locks.pop(run_id, [])
        for lk in locks:
            lk.release()
        self._inventory = (0.0, [])  # the devices' users changed: read them again
        self.wake_self()

    def cost_micro(self, row: dict, events: list[tuple[float, str | None]], now: float) -> int | None:
        """The run's cost up to `now`, by the same rule as the live table (backend/cost.py)."""
        from ..engines.local.rows import row_cost

        return row_cost(self.config, row, events, now)

    def run_document(self, conn, run_id: str, outcome: dict) -> dict:
        from ..engines.local.rows import row_to_run

        row = db.get_row(conn, run_id)
        evs = db.events(conn, run_id)
        now = clock.time()
        cost = self.cost_micro(row, [(e["at"], e["state"]) for e in evs], now)
        run = row_to_run(row, cost=cost)
        doc = run.to_json()
        # Written while STORING: the document states the outcome it is being stored for.
        doc.update(state=outcome.get("state", doc["state"]), error_code=outcome.get("code"),
                   message=outcome.get("message", ""), finished_at=iso(utcnow()))
        doc["events"] = [
            {"at": e["at"], "state": e["state"], "message": e["message"], "error_code": e["error_code"]}
            for e in evs
        ]
        doc["cost_micro_usd"] = cost
        return doc

    def halt_for_policy(self, run_id: str, code: str, message: str) -> bool:
        """Halt a running run for its sweep's sake (early stop): it ends HALTED with `code`."""
        with self._lock:
            worker = self.workers.get(run_id)
        if worker is None:
            return False
        worker.stop_reason = (code, message)
        worker.halt_requested.set()
        return True

    def wake_self(self) -> None:
        wake(self.paths.state_dir)

    # -- devices ----------------------------------------------------------------------------------
    def devices(self) -> list:
        """The inventory, read again every few seconds (NVML calls are not free)."""
        at, devs = self._inventory
        if time.monotonic() - at > INVENTORY_TTL or not devs:
            pgids: set[int] = set()
            for (procs,) in self.conn.execute(
                f"SELECT procs FROM runs WHERE state IN {BILLED_SQL}"
            ):
                pgids.update(p["pid"] for p in json.loads(procs))
            inv = read_inventory(cpu_slots=self.backend.profile.cpu_slots,
                                 our_pids=pids_in_groups(pgids) if pgids else frozenset())
            devs = list(inv.devices)
            self._inventory = (time.monotonic(), devs)
        return devs

    def _holders(self, devices: list) -> tuple[dict[str, str], dict[str, SharedGpu]]:
        """(device -> a run holding it, the GPUs a new sharing run may join with the room left on each:
        their memory less the caps of the sharing runs on them). Only GPUs whose lock this agent
        holds for sharing runs can be joined: one whose lock only older runs' processes hold (they
        inherited it before an agent restart) is not offered, since a run placed there would hold
        nothing once those processes end."""
        held: dict[str, str] = {}
        caps: dict[str, int] = {}
        exclusive: set[str] = set()
        for rid, assigned, share, cap in self.conn.execute(
            "SELECT id, assigned, COALESCE(json_extract(spec, '$.share'), 0), json_extract(spec, '$.gpu_memory') "
            f"FROM runs WHERE state IN {BILLED_SQL}"
        ):
            for uuid in json.loads(assigned):
                held[uuid] = rid
                if share and cap:
                    caps[uuid] = caps.get(uuid, 0) + int(cap)
                else:
                    exclusive.add(uuid)
        with self._lock:
            joinable = {lk.uuid for lks in self.locks.values() for lk in lks if lk.fd is not None and lk.shared}
        shared = {}
        for d in devices:
            if d.uuid in caps and d.uuid in joinable and d.uuid not in exclusive and not d.busy_foreign:
                total = d.memory_total
                shared[d.uuid] = SharedGpu(d.uuid, d.gpu_type, None if total is None else total - caps[d.uuid],
                                           total)
        return held, shared

    def _lock_for(self, uuid: str, rid: str, sharing: bool) -> tuple[bool, Any]:
        """(got it, the lock to hold or None). A sharing run joins the lock another sharing run here
        holds on the device; otherwise it takes the device's lock like an exclusive run."""
        if sharing:
            with self._lock:
                mine = next((lk for lks in self.locks.values() for lk in lks
                             if lk.uuid == uuid and lk.fd is not None and lk.shared), None)
            if mine is not None:
                return True, mine.join()
        lk = hold_device(uuid, self.paths.state_dir, owner=rid)
        if lk is None:
            return False, None
        lk.shared = sharing
        return True, lk

    # -- the loop -----------------------------------------------------------------------------------
    def reclaim_leftovers(self) -> None:
        """At start: temp files and open multipart uploads that killed writers left in our stores."""
        stores: dict[int, Any] = {}
        try:
            stores[id(self.backend.store)] = self.backend.store
        except Exception as exc:  # a profile whose store cannot open: nothing to tidy there
            log.warning("leftovers not reclaimed: %s", exc)
        for rid, profile, spec in self.conn.execute(
            f"SELECT id, profile, spec FROM runs WHERE state IN {BILLED_SQL}"
        ).fetchall():
            try:
                store = self.store_for(profile, json.loads(spec).get("connection"))
            except Exception as exc:
                log.warning("run %s: leftovers not reclaimed: %s", rid, exc)
                continue
            stores[id(store)] = store
        for store in stores.values():
            if not isinstance(store, LeftoverReclaim):  # a store with nothing to tidy
                continue
            try:
                done = store.reclaim_leftovers()
            except Exception as exc:  # an unreachable server: the next start tries again
                log.warning("leftovers in %s not reclaimed: %s", store.describe(), exc)
                continue
            if done:
                log.info("%s", done)

    def recover(self) -> None:
        rows = self.conn.execute(
            "SELECT id, state, assigned, COALESCE(json_extract(spec, '$.cpus_total'), 0), procs, "
            "COALESCE(json_extract(spec, '$.share'), 0) AND json_extract(spec, '$.gpu_memory') IS NOT NULL "
            f"FROM runs WHERE state IN {BILLED_SQL} ORDER BY submitted_at"
        ).fetchall()

        for rid, state, assigned, ncores, procs, sharing in rows:
            fds: list | None = []
            for uuid in json.loads(assigned):
                _got, lk = self._lock_for(uuid, rid, bool(sharing))
                if lk is not None:
                    fds.append(lk)
                elif state == RunState.PENDING.value:
                    # Someone took the device while no agent held it: wait in the queue again.
                    for f in fds:
                        f.release()
                    fds = None
                    break
                # else: the run's own processes hold the lock they inherited.
            if fds is None:
                db.transition(self.conn, rid, RunState.QUEUED, message="devices lost during agent restart",
                              assigned=[], labels=[])
                continue
            db.note(self.conn, rid, f"agent restarted; resuming from {state}")
            self._pick_cores(rid, int(ncores), json.loads(procs or "[]"))
            self._start_worker(rid, fds)

    def _start_worker(self, rid: str, fds: list) -> None:
        from ..engines.local.executor import RunWorker

        worker = RunWorker(self, rid)
        with self._lock:
            self.locks[rid] = fds
            self.workers[rid] = worker
        worker.start()

    def handle_control(self) -> None:
        for rid, action in db.take_control(self.conn):
            if action != "halt":
                continue
            with self._lock:
                worker = self.workers.get(rid)
            if worker is not None:
                worker.halt_requested.set()
            else:
                from ..engines.local.rows import queued_end_cost, seal_run

                if db.transition(self.conn, rid, RunState.HALTED, message="halted while queued",
                                 finished_at=clock.time(), expect=frozenset({RunState.QUEUED}),
                                 **queued_end_cost(self.config, self.conn, rid)):

                    seal_run(self.conn, rid)

    def open_gates(self) -> None:
        """Queued runs held back by a gate: a prerequisite that must complete (one that failed, was
        halted or is gone fails the run with C206), a hold, a begin time. Opened gates are removed
        from the spec, so admission sees the run; the rest say why they wait."""
        seq = db.current_seq(self.conn)
        now = time.monotonic()
        if seq == self._gates_seen and now < self._gates_next:
            return
        # Only runs changed since the last look can have become gated (runs_by_seq), so a queue
        # of 10,000 is not read again each pass; the gated ones are then read by id.
        for (rid,) in self.conn.execute(
                "SELECT id FROM runs WHERE seq > ? AND state = 'QUEUED' AND json_extract(spec, '$.wait') "
                "IS NOT NULL", (self._gates_seen,)):
            self._gated.add(rid)
        self._gates_seen, self._gates_next = seq, now + 1.0
        if not self._gated:
            return
        ids = sorted(self._gated)
        rows = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows += self.conn.execute(
                f"SELECT id, json_extract(spec, '$.wait'), message, state FROM runs "
                f"WHERE id IN ({', '.join('?' for _ in chunk)})", chunk).fetchall()
        self._gated = {r[0] for r in rows if r[1] is not None and r[3] == RunState.QUEUED.value}
        rows = [r[:3] for r in rows if r[0] in self._gated]
        for rid, raw, message in rows:
            try:
                gate = json.loads(raw)
            except (TypeError, ValueError):
                gate = {}
            failed, reason = self._gate(gate)
            if failed:
                if db.transition(self.conn, rid, RunState.FAILED, message=failed,
                                 error_code=ErrorCode.DEPENDENCY_FAILED.value, finished_at=clock.time(),
                                 expect=frozenset({RunState.QUEUED})):
                    from ..engines.local.rows import seal_run

                    seal_run(self.conn, rid)
                continue
            if reason is None or reason != message:
                with db.write(self.conn):
                    row = self.conn.execute("SELECT spec, state FROM runs WHERE id = ?", (rid,)).fetchone()
                    if row is None or row[1] != RunState.QUEUED.value:
                        continue
                    spec = json.loads(row[0])
                    if reason is None:  # every gate open (re-read: a hold may have just been set)
                        if spec.get("wait") != gate:
                            continue
                        spec.pop("wait", None)
                        db.set_fields(self.conn, rid, {"spec": spec, "message": ""})
                    else:
                        db.set_fields(self.conn, rid, {"message": reason})

    def _gate(self, gate: dict) -> tuple[str | None, str | None]:
        """(why the run fails, why it waits); (None, None) when every gate is open."""
        waits = []
        if gate.get("hold"):
            waits.append(wait_words.HELD)
        after = gate.get("after") or []
        if after:
            states = dict(self.conn.execute(
                f"SELECT id, state FROM runs WHERE id IN ({', '.join('?' for _ in after)})", after).fetchall())
            codes = dict(self.conn.execute(
                f"SELECT id, error_code FROM runs WHERE id IN ({', '.join('?' for _ in after)})", after).fetchall())
            for dep in after:
                st = states.get(dep)
                if st is None:
                    return wait_words.dependency_gone(dep), None
                if st in (RunState.FAILED.value, RunState.HALTED.value):
                    return wait_words.dependency_ended(dep, st, codes.get(dep)), None
            pending = [(d, states[d]) for d in after if states[d] != RunState.COMPLETED.value]
            if pending:
                waits.append(wait_words.waiting_for(pending))
        begin = gate.get("begin_at")
        if begin and clock.time() < begin:
            waits.append(wait_words.begins_at(begin))
        return None, (wait_words.join(waits) or None)

    def admit(self) -> int:
        """One admission pass; returns how many runs were admitted."""
        seen = db.current_seq(self.conn)
        devices = self.devices()
        held, _ = self._holders(devices)
        free = [FreeDevice(d.uuid, d.gpu_type, d.memory_total) for d in devices
                if d.uuid not in held and not d.busy_foreign]
        nvml_gpus = any(not d.is_cpu_slot for d in devices)
        self._foreign = {}  # learned again below, when a lock another agent holds is met
        best_effort = self.backend.profile.queue_policy == "best-effort"
        admitted = 0
        why: dict[str, str] = {}
        for _attempt in range(3):
            room = _Room(self)
            box = self._box()
            why = {}
            held, shared = self._holders(devices)
            cur = self.sweeps.queue(best_effort=best_effort, free=len(free) + len(shared))  # parallel caps
            todo = plan(cur, free, room, best_effort=best_effort, match_type=nvml_gpus,
                        cpu_slots=bool(devices) and not nvml_gpus, slot_count=len(devices), box=box, why=why,
                        busy_note=self._busy_note(devices, held), shared=shared)
            cur.close()
            retry = False
            for adm in todo:
                with self._lock:
                    finishing = adm.run_id in self.workers
                if finishing:  # resumed while its last attempt's worker is still letting go: next pass
                    continue
                fds, lost = [], None
                for uuid in adm.devices:
                    got, lk = self._lock_for(uuid, adm.run_id, adm.shared)
                    if not got:
                        lost = uuid
                        break
                    if lk is not None:
                        fds.append(lk)
                if lost is not None:
                    for lk in fds:
                        lk.release()
                    free = [f for f in free if f.uuid != lost]  # another user's agent holds it
                    self._foreign[lost] = held_by(lost) or {}
                    retry = True
                    break
                labels = [self._label(devices, u) for u in adm.devices]
                gtype = next((d.gpu_type for d in devices if d.uuid in adm.devices), None)
                n = db.attempt(self.conn, adm.run_id)
                message = "devices assigned" if n == 1 else attempt_started_message(n)
                ok = db.transition(self.conn, adm.run_id, RunState.PENDING, message=message,
                                   admitted_at=clock.time(), assigned=list(adm.devices), labels=labels,
                                   gpu_type=gtype or "cpu", expect=frozenset({RunState.QUEUED}))
                if not ok:
                    for lk in fds:
                        lk.release()
                    continue
                free = [f for f in free if f.uuid not in adm.devices]
                admitted += 1
                self._pick_cores(adm.run_id, self._cores_needed(adm.run_id))
                self._start_worker(adm.run_id, fds)
            if not retry:
                break
        self._say_why(why)
        if seen != self._passed:
            db.mark_pass(self.conn, seen)
            self._passed = seen
        return admitted

    def watch_gpu_memory(self) -> list[str]:
        """Stop each running run a learner of which uses more GPU memory on one of its GPUs than its
        `gpu_memory` cap (NVML's per-process figure): it ends FAILED with C207 and the figure.
        Returns the runs stopped. Costs nothing while no running run has a cap."""
        now = time.monotonic()
        if now < self._gpu_watch_next:
            return []
        self._gpu_watch_next = now + GPU_WATCH_S
        rows = self.conn.execute(
            "SELECT id, assigned, procs, json_extract(spec, '$.gpu_memory') FROM runs "
            "WHERE state = 'PROCESSING' AND json_extract(spec, '$.gpu_memory') IS NOT NULL").fetchall()
        if not rows:
            return []
        used = process_memory()
        if not used:
            return []
        procs = {rid: json.loads(raw or "[]") for rid, _, raw, _ in rows}
        groups = pids_by_group({p["pid"] for ps in procs.values() for p in ps if p.get("pid")})
        stopped = []
        for rid, assigned, _, cap in rows:
            cap = int(cap)
            over = None
            for p in procs[rid]:
                pids = groups.get(p.get("pid"), set())
                for uuid in json.loads(assigned):
                    figure = sum(b for pid, b in used.get(uuid, {}).items() if pid in pids)
                    if figure > cap and (over is None or figure > over[2]):
                        over = (p.get("learner", 1), uuid, figure)
            if over is None:
                continue
            index, uuid, figure = over
            message = (f"learner {index} used {_gib(figure)} of its {_gib(cap)} gpu_memory cap on {uuid} "
                       "and was stopped")
            with self._lock:
                worker = self.workers.get(rid)
            if worker is None or worker.fail_reason is not None:
                continue
            log.warning("run %s: %s", rid, message)
            worker.fail_reason = (ErrorCode.GPU_MEMORY_CAP.value, message)
            worker.halt_requested.set()
            stopped.append(rid)
        return stopped

    def _cores_needed(self, run_id: str) -> int:
        row = self.conn.execute("SELECT COALESCE(json_extract(spec, '$.cpus_total'), 0) FROM runs "
                                "WHERE id = ?", (run_id,)).fetchone()
        return int(row[0]) if row else 0

    def _box(self) -> Box:
        """The cores and memory not held by this home's running runs."""
        used_cpus, used_mem = self.conn.execute(
            "SELECT COALESCE(SUM(json_extract(spec, '$.cpus_total')), 0), "
            "COALESCE(SUM(json_extract(spec, '$.memory_total')), 0) FROM runs "
            f"WHERE state IN {BILLED_SQL}").fetchone()
        cap = self.capacity
        return Box(cpus=len(cap.cores) - int(used_cpus), memory=cap.memory - int(used_mem) if cap.memory else None,
                   cpus_total=len(cap.cores), memory_total=cap.memory or None)

    def _busy_note(self, devices: list, held: dict[str, str]) -> str:
        """Who holds the GPUs a waiting run cannot have: our runs, another user's agent, or a
        process we did not start."""
        parts = []
        ours = sum(1 for d in devices if d.uuid in held and not d.is_cpu_slot)
        if ours:
            parts.append(wait_words.held_here(ours))
        for d in devices:
            if d.is_cpu_slot or d.uuid in held:
                continue
            if d.uuid in self._foreign:
                info = self._foreign[d.uuid]
                parts.append(wait_words.held_by_agent(d.label, info.get("user"), info.get("pid")))
            elif d.busy_foreign:
                parts.append(wait_words.not_ours(d.label))
        return "; ".join(parts)

    def _say_why(self, why: dict[str, str]) -> None:
        """Write each waiting run's reason into its message, only where it changed; a run no longer
        looked at goes back to an empty message (readers then say "behind N runs")."""
        changes = {rid: text for rid, text in why.items() if self._why.get(rid) != text}
        changes.update({rid: "" for rid in self._why if rid not in why})
        if not changes:
            return
        with db.write(self.conn):
            for rid, text in changes.items():
                if self.conn.execute("SELECT 1 FROM runs WHERE id = ? AND state = 'QUEUED'", (rid,)).fetchone():
                    db.set_fields(self.conn, rid, {"message": text})
        self._why = dict(why)

    def tier_room(self, profile: str) -> int | None:
        """Devices `profile` may still take under its tier; None = no limit.

        Fails closed: when the limit cannot be read (a profile since removed from the config, an
        unknown tier, a broken config) the profile gets no room, and the reason is logged."""
        try:
            limit = self.config.tier_gpus(self.backend_for(profile).profile)
        except Exception as exc:
            self._limit_error(f"profile {profile!r}: tier limit unreadable ({exc}); admitting none of its runs")
            return 0
        if not limit:
            return None
        used = self.conn.execute(
            "SELECT COALESCE(SUM(gpus * learners), 0) FROM runs WHERE profile = ? AND state IN "
            f"{BILLED_SQL}", (profile,)).fetchone()[0]
        return max(0, limit - used)

    def _limit_error(self, message: str) -> None:
        """Log a limit that could not be read: once per distinct reason, not on every pass."""
        if message not in self._limit_errors:
            self._limit_errors.add(message)
            log.error("%s", message)

    @staticmethod
    def _label(devices: list, uuid: str) -> str:
        for d in devices:
            if d.uuid == uuid:
                return d.label
        return uuid

    def _config_stamp(self) -> float | None:
        try:
            return self.paths.config_file.stat().st_mtime
        except OSError:
            return None

    def reload_config_if_changed(self) -> None:
        """Tiers, prices, priorities and slots edited while the agent runs apply from the next pass."""
        stamp = self._config_stamp()
        if stamp == self._stamp:
            return
        try:
            backend = self.open_backend(self.backend.profile.name)
        except Exception as exc:  # a broken edit: keep the last good config, say why
            log.warning("config not reloaded: %s", exc)
        else:
            from ..engines.local.limits import capacity

            with self._lock:
                self.backend, self.config = backend, backend.config
                self.capacity = capacity(backend.profile)
                self._backends = {backend.profile.name: backend}
                self._stores = {}
            self._inventory = (0.0, [])
            log.info("config reloaded")
        self._stamp = stamp

    def loop(self, sock: socket.socket | None, still_home: Callable[[], bool] | None = None) -> None:
        """Passes until told to stop, or until `still_home()` says the home it serves is gone."""
        self._stamp = self._config_stamp()
        while not self.stopping.is_set():
            if still_home is not None and not still_home():
                log.warning("the state directory this agent serves is gone: stopping")
                break
            try:
                self.reload_config_if_changed()
                self.handle_control()
                self.sweeps.tick()
                self.open_gates()
                self.admit()
                self.watch_gpu_memory()
            except Exception:
                log.exception("agent pass failed")
            try:
                self.kube.tick()
            except Exception:
                log.exception("kubernetes pass failed")
            try:
                self.notices.tick(self.config.notify)
            except Exception:
                log.exception("notify pass failed")
            if sock is not None:
                ready, _, _ = select.select([sock], [], [], TICK)
                if ready:
                    try:
                        while True:
                            sock.recv(64, socket.MSG_DONTWAIT)
                    except (BlockingIOError, OSError):
                        pass
            else:
                time.sleep(TICK)


def _gib(n: int) -> str:
    """Bytes as GiB with one decimal where it matters: 23.1 GiB, 20 GiB."""
    text = f"{n / 2**30:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + " GiB"


class _Room(dict):
    """Tier room per profile, looked up only for profiles the pass actually meets."""

    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self.agent = agent

    def __missing__(self, profile: str) -> int | None:
        value = self[profile] = self.agent.tier_room(profile)
        return value
