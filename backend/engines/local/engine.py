"""LocalEngine: the Engine protocol over the agent's SQLite state.

The CLI and TUI read the database directly (WAL: they never block the agent) and reach the agent
through two small channels: rows in the `control` table (halt requests survive an agent restart)
and a wake-up datagram on the agent's socket. Anything that needs the agent starts it (best-effort,
without waiting: a recorded submit or halt stands whether or not the agent is up yet).
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence

from backend import clock
from ...errors import BadInput, NotFound
from ...runs import (
    BILLED_SQL,
    BILLED_STATES,
    RESUMABLE_STATES,
    ChangeSet,
    MetricPoint,
    Run,
    RunEvent,
    RunLine,
    RunState,
    SubmitRequest,
    resolve_priority,
)
from ...agentlink.control import ensure_agent, wake
from ...ledger import db
from .rows import (
    I_ADMITTED,
    I_COST,
    I_ID,
    I_PRICED,
    I_STATE,
    JSON_SHAPE,
    L_ADMITTED,
    L_ID,
    L_STATE,
    LINE_COLUMNS,
    LIST_COLUMNS,
    QUEUE_SQL,
    line_rows_to_lines,
    listed_cost,
    listing_row_to_run,
    queued_end_cost,
    row_cost,
    seal_run,
    utc_from_epoch,
)
from ...waits import HELD

BILLED_VALUES = frozenset(s.value for s in BILLED_STATES)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~2.5 ms) on the CLI's path
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any
    from ...devices import Inventory


class LocalEngine:
    name = "local"

    def __init__(self, backend) -> None:
        self.backend = backend
        self.paths = backend.paths
        self._conn = None

    @classmethod
    def from_backend(cls, backend) -> LocalEngine:
        return cls(backend)

    @property
    def conn(self):
        if self._conn is None:
            self._conn = db.connect(self.paths.db_file_str)
            # Any use of the engine brings the agent back (after a reboot or a kill -9).
            ensure_agent(self.paths, wait=False)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- the agent --------------------------------------------------------------------------------
    def ensure_agent(self) -> int:
        return ensure_agent(self.paths)

    def settled(self, timeout: float = 10.0) -> bool:
        """Wait until the agent's admission has seen every change recorded so far (tests, scripts
        that need "queued or admitted" to be decided); False on timeout."""
        target = db.current_seq(self.conn)
        deadline = time.monotonic() + timeout
        while db.passed(self.conn) < target:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _nudge(self) -> None:
        """Tell the agent to look now; start it if none runs. Never waits and never fails: what
        was asked is already recorded, and the agent reads it from the database when it is up."""
        ensure_agent(self.paths, wait=False)
        wake(self.paths.state_dir)

    # -- submit -----------------------------------------------------------------------------------
    def check_fits(self, manifest) -> None:
        """C104 (BadInput) when the tier or the machine could never hold the request."""
        from .submit import check_fits

        check_fits(self, manifest)

    def submit(self, request: SubmitRequest) -> list[Run]:
        return self.submit_checked(request)

    def submit_checked(self, request: SubmitRequest, before_record=None) -> list[Run]:
        """`submit`, calling `before_record()`, when given, just before the runs are written (the
        agent's submission worker checks there that its CLI still waits; it raises to record nothing)."""
        from .submit import prepare_and_record

        runs = prepare_and_record(self, request, before_record=before_record)
        if not request.dry_run and runs:
            self._nudge()
        return runs

    def recorded_submit(self, request_id: str) -> list[Run]:
        """The runs recorded by the submit with this `SubmitRequest.request_id` ([] if none), as
        `submit` returns them, the agent woken for them: what the CLI reads when the agent's
        submission worker ended before it answered (backend/agentlink/handoff.py)."""
        from .submit import recorded_submit

        runs = recorded_submit(self, request_id)
        if runs:
            self._nudge()
        return runs

    def rerun(self, run_id: str) -> list[Run]:
        from .submit import rerun

        runs = rerun(self, run_id)
        self._nudge()
        return runs

    # -- reading ----------------------------------------------------------------------------------
    def _positions(self) -> dict[str, int]:
        """Queue position by run id, in the queue's order."""
        return {row[0]: i for i, row in enumerate(self.conn.execute(QUEUE_SQL), start=1)}

    def _costs(self, rows) -> dict[str, int | None]:
        """Live cost of billed runs (from the ledger); finished runs carry their final cost."""
        # A QUEUED run that was admitted before (requeued, or resumed) has paid for earlier attempts.
        live = [r for r in rows if r[I_STATE] in BILLED_VALUES
                or (r[I_STATE] == "QUEUED" and r[I_ADMITTED] is not None)]
        out: dict[str, int | None] = {}
        if not live:
            return out
        from ...cost import Meter

        meter = Meter.from_config(self.backend.config)
        now = clock.time()
        for r in live:
            evs = [(e["at"], e["state"]) for e in db.events(self.conn, r[I_ID])]
            out[r[I_ID]] = row_cost(self.backend.config, r, evs, now, meter)
        return out

    def runs_from_rows(self, rows) -> list[Run]:
        """Runs from rows of the listing's columns (LIST_COLUMNS), with queue positions, live costs
        and ETAs."""
        best_effort = self.backend.profile.queue_policy == "best-effort"
        positions = self._positions() if any(r[I_STATE] == "QUEUED" for r in rows) else {}
        costs = self._costs(rows)
        out = []
        for r in rows:
            rid = r[I_ID]
            cost = listed_cost(costs, rid, r[I_STATE], r[I_COST] if r[I_PRICED] else None)
            out.append(listing_row_to_run(r, cost, positions.get(rid), best_effort))
        self._set_etas(out, positions)
        return out

    def _set_etas(self, runs: list, positions: dict[str, int]) -> None:
        """Each queued run's ETA onto it (a Run or a RunLine), from the queue as read for `positions`."""
        if not positions:
            return
        from .eta import engine_etas

        # The queue up to the last queued run among these.
        last = max(positions.get(run.id, 0) for run in runs)
        etas = engine_etas(self, order=list(positions)[:last])
        for run in runs:
            got = etas.get(run.id) if run.state == RunState.QUEUED else None
            if got:
                run.eta, run.eta_bound = got.at, got.bound

    @staticmethod
    def _listing_query(columns: str, states: Sequence[RunState] | None, experiment: str | None,
                       limit: int | None) -> tuple[str, list[Any]]:
        """The one listing query (filters, newest first) that `list_runs` and `list_runs_json` share."""
        where, args = [], []
        if states:
            # With a limit, `+state` keeps SQLite off the state index: it walks runs_by_submitted
            # newest first and stops at the limit (0.5-3 ms on 10,000 runs), rather than sorting every
            # run in those states, all columns, to keep the first few (18 ms for 9,000 finished runs).
            where.append(f"{'+' if limit else ''}state IN ({', '.join('?' for _ in states)})")
            args += [RunState(s).value for s in states]
        if experiment is not None:
            where.append("experiment = ?")
            args.append(experiment)
        sql = f"SELECT {columns} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY submitted_at DESC, id DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(int(limit))
        return sql, args

    def list_runs(self, *, states: Sequence[RunState] | None = None, experiment: str | None = None,
                  limit: int | None = None) -> list[Run]:
        sql, args = self._listing_query(LIST_COLUMNS, states, experiment, limit)
        return self.runs_from_rows(self.conn.execute(sql, args).fetchall())

    def list_lines(self, *, states: Sequence[RunState] | None = None, experiment: str | None = None,
                   limit: int | None = None) -> list[RunLine]:
        """`list_runs` as the runs listing shows them (RunLine): the line's columns alone, read as plain
        tuples; only the runs billed now are read whole, for their live cost."""
        sql, args = self._listing_query(LINE_COLUMNS, states, experiment, limit)
        cursor = self.conn.cursor()
        cursor.row_factory = None
        rows = cursor.execute(sql, args).fetchall()
        # As `_costs` picks them: billed now, or queued again after an admission (earlier attempts).
        live = [r[L_ID] for r in rows
                if r[L_STATE] in BILLED_VALUES or (r[L_STATE] == "QUEUED" and r[L_ADMITTED] is not None)]
        costs = self._costs(self._listing_rows(live)) if live else {}
        positions = self._positions() if any(r[L_STATE] == "QUEUED" for r in rows) else {}
        lines = line_rows_to_lines(rows, costs, positions)
        self._set_etas(lines, positions)
        return lines

    def _listing_rows(self, ids: list[str]) -> list:
        """The listing's rows (LIST_COLUMNS) of the runs `ids`, read 500 at a time."""
        got: list = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            got += self.conn.execute(
                f"SELECT {LIST_COLUMNS} FROM runs WHERE id IN ({', '.join('?' for _ in chunk)})", chunk).fetchall()
        return got

    def queue_head(self, limit: int) -> list[Run]:
        """The first `limit` queued runs in the order they will be admitted (a screenful for the TUI
        without building every queued run)."""
        rows = self.conn.execute(
            f"SELECT {LIST_COLUMNS} FROM runs WHERE state = 'QUEUED' "
            "ORDER BY prio DESC, submitted_at, id LIMIT ?", (int(limit),)).fetchall()
        return self.runs_from_rows(rows)

    def list_runs_json(self, *, states: Sequence[RunState] | None = None, experiment: str | None = None,
                       limit: int | None = None) -> list[str]:
        """`list_runs` as encoded JSON objects, in the same order: finished runs from their sealed
        document, the rest built live (queue positions, ticking cost)."""
        sql, args = self._listing_query("id, final_json, json_shape", states, experiment, limit)
        rows = self.conn.execute(sql, args).fetchall()
        got = self._listing_rows([r[0] for r in rows if r[1] is None or r[2] != JSON_SHAPE])
        # One build for all of them: queue positions and ETAs are worked out once, not per chunk.
        live = {run.id: json.dumps(run.to_json()) for run in self.runs_from_rows(got)}
        return [live[r[0]] if r[0] in live else r[1] for r in rows]

    def get_run(self, run_id: str) -> Run:
        row = self.conn.execute(f"SELECT {LIST_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no run {run_id!r}")
        return self.runs_from_rows([row])[0]

    def changes(self, cursor: int | None = None) -> ChangeSet:
        with db.snapshot(self.conn):  # rows and the cursor from one view of the database
            seq = db.current_seq(self.conn)
            if cursor is None or cursor < 0 or cursor > seq:  # a cursor we never gave out: resync
                rows = self.conn.execute(f"SELECT {LIST_COLUMNS} FROM runs").fetchall()
                deleted: list[str] = []
                full = True
            else:
                rows = self.conn.execute(
                    f"SELECT {LIST_COLUMNS} FROM runs WHERE seq > ?", (cursor,)).fetchall()
                deleted = [r[0] for r in self.conn.execute(
                    "SELECT run_id FROM deleted WHERE seq > ?", (cursor,))]
                full = False
        runs = self.runs_from_rows(rows)
        # A queue position moves when a run ahead of it leaves the queue: report the queue too.
        if not full and rows:
            have = {r.id for r in runs}
            queued = [r for r in self.list_runs(states=[RunState.QUEUED]) if r.id not in have]
            runs += queued
        return ChangeSet(runs=runs, deleted=deleted, cursor=seq, full=full)

    def events(self, run_id: str) -> list[RunEvent]:
        self.get_run(run_id)
        return [RunEvent(r["run_id"], utc_from_epoch(r["at"]), RunState(r["state"]) if r["state"] else None,
                         r["message"], r["error_code"]) for r in db.events(self.conn, run_id)]

    def metrics(self, run_id: str) -> list[MetricPoint]:
        self.get_run(run_id)
        rows = self.conn.execute(
            "SELECT name, value, step, at, learner FROM metrics WHERE run_id = ? ORDER BY rowid", (run_id,))
        return [MetricPoint(n, v, s, utc_from_epoch(a), lr - 1) for n, v, s, a, lr in rows]  # 0-based learners

    def manifest_text(self, run_id: str) -> str:
        row = self.conn.execute("SELECT manifest_text FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no run {run_id!r}")
        return row[0]

    def _log_path(self, run_id: str, learner: int) -> Path:
        """learner is 0-based as in the Engine protocol; folders are learner-1.. as FfDL's."""
        return self.paths.runs_dir / run_id / "logs" / f"learner-{learner + 1}" / "training-log.txt"

    def _check_learner(self, run: Run, learner: int) -> None:
        if not 0 <= learner < run.learners:
            raise BadInput(f"run {run.id} has {run.learners} learner(s); no learner {learner}")

    def log_path(self, run_id: str, *, learner: int = 0) -> Path | None:
        """The log file itself (the TUI tails it): the run's own while it lives, else the stored one."""
        run = self.get_run(run_id)
        self._check_learner(run, learner)
        path = self._log_path(run_id, learner)
        if path.exists():
            return path
        return self._stored_log(run, learner + 1) if run.results_bucket else None

    def logs(self, run_id: str, *, learner: int = 0, tail: int | None = None,
             follow: bool = False) -> Iterator[str]:
        run = self.get_run(run_id)
        self._check_learner(run, learner)
        path = self._log_path(run_id, learner)
        if not path.exists() and run.state.terminal and run.results_bucket:
            path = self._stored_log(run, learner + 1) or path
        return _read_log(self, run_id, path, tail, follow)

    def _stored_log(self, run: Run, n: int) -> Path | None:
        try:
            from .stores import folder_of, run_store

            store = run_store(self.backend)
            p = folder_of(store, run.results_bucket, f"{run.id}/learner-{n}/training-log.txt")
        except Exception:
            return None
        return p if p is not None and p.exists() else None

    def download_results(self, run_id: str, dest: Path) -> int:
        """Copy `<results-bucket>/<run-id>/` into `dest`; returns the number of files."""
        run = self.get_run(run_id)
        if not run.results_bucket:
            raise NotFound(f"{run_id}: no results bucket recorded")
        spec = db.get_row(self.conn, run_id)["spec"]
        from .stores import run_store

        store = run_store(self.backend, spec.get("connection"))
        from pathlib import Path

        return store.get_prefix(run.results_bucket, f"{run.id}/", Path(dest))

    # -- changing ---------------------------------------------------------------------------------
    def halt(self, run_id: str) -> Run:
        self.backend.require_writable("halt")
        run = self.get_run(run_id)
        if run.state.terminal:
            return run
        if run.state == RunState.QUEUED and db.transition(
            self.conn, run_id, RunState.HALTED, message="halted while queued", finished_at=clock.time(),
            expect=frozenset({RunState.QUEUED}), **queued_end_cost(self.backend.config, self.conn, run_id),
        ):
            seal_run(self.conn, run_id)
            wake(self.paths.state_dir)
            return self.get_run(run_id)
        db.request_control(self.conn, run_id, "halt")
        self._nudge()
        return self.get_run(run_id)

    def resume(self, run_id: str) -> Run:
        """A HALTED or FAILED run back to QUEUED as its next attempt. Its folder (checkpoints/,
        results/, logs) was kept, so the command starts again with CHECKPOINT_DIR as it was left."""
        self.backend.require_writable("resume")
        run = self.get_run(run_id)
        if run.state not in RESUMABLE_STATES:
            raise BadInput(f"{run_id} is {run.state.value}: only a HALTED or FAILED run can be resumed")
        if db.reopen(self.conn, run_id) is None:
            raise BadInput(f"{run_id} is {self.get_run(run_id).state.value}: it can no longer be resumed")
        self._nudge()
        return self.get_run(run_id)

    def hold(self, run_id: str) -> Run:
        """Keep a queued run from starting until `release`."""
        self.backend.require_writable("hold")
        self._set_hold(run_id, True)
        return self.get_run(run_id)

    def release(self, run_id: str) -> Run:
        self.backend.require_writable("release")
        self._set_hold(run_id, False)
        self._nudge()
        return self.get_run(run_id)

    def set_priority(self, run_id: str, priority: str) -> Run:
        """Change a queued run's priority: a name from [priorities] or a whole number. Its place in
        the queue (and every queue position) follows at once; the change is an event."""
        self.backend.require_writable("priority")
        name, value = resolve_priority(self.backend.config.all_priorities(), priority)
        with db.write(self.conn):
            row = self.conn.execute("SELECT state, priority, prio FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFound(f"no run {run_id!r}")
            if row[0] != RunState.QUEUED.value:
                raise BadInput(f"{run_id}: run is {row[0]}; only a queued run's priority can be changed")
            if (row[1], row[2]) != (name, value):
                db.set_fields(self.conn, run_id, {"priority": name, "prio": value})
                self.conn.execute(
                    "INSERT INTO run_events (run_id, at, state, message) VALUES (?, ?, NULL, ?)",
                    (run_id, clock.time(), f"priority changed from {row[1]} ({row[2]}) to {name} ({value})"))
        self._nudge()
        return self.get_run(run_id)

    def _set_hold(self, run_id: str, held: bool) -> None:
        with db.write(self.conn):
            row = self.conn.execute("SELECT state, spec FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFound(f"no run {run_id!r}")
            if row[0] != RunState.QUEUED.value:
                raise BadInput(f"{run_id}: run is {row[0]}; only a queued run can be "
                               f"{'held' if held else 'released'}")
            spec = json.loads(row[1])
            gate = dict(spec.get("wait") or {})
            if held:
                gate["hold"] = True
            else:
                gate.pop("hold", None)
            if gate:
                spec["wait"] = gate
            else:
                spec.pop("wait", None)
            db.set_fields(self.conn, run_id, {"spec": spec, "message": HELD if held else ""})
        wake(self.paths.state_dir)

    def delete(self, run_id: str) -> None:
        self.backend.require_writable("delete")
        db.delete_run(self.conn, run_id)

    def inventory(self) -> Inventory:
        from .nvml import read_inventory
        from .procs import pids_in_groups

        held: dict[str, str] = {}
        pgids: set[int] = set()
        for rid, assigned, procs in self.conn.execute(
            "SELECT id, assigned, procs FROM runs WHERE state IN "
            f"{BILLED_SQL}"
        ):
            for uuid in json.loads(assigned):
                # runs sharing a GPU (gpu_memory + share) are all named
                held[uuid] = f"{held[uuid]}, {rid}" if uuid in held else rid
            pgids.update(p["pid"] for p in json.loads(procs))
        return read_inventory(
            cpu_slots=self.backend.profile.cpu_slots, holders=held, our_pids=pids_in_groups(pgids),
            node=_hostname(), tier_gpus=self.backend.config.tier_gpus(self.backend.profile))


def _read_log(engine: LocalEngine, run_id: str, path: Path, tail: int | None,
              follow: bool) -> Iterator[str]:
    from collections import deque

    pos = 0
    if path.exists():
        with open(path, "rb") as fh:
            if tail is not None:
                lines = deque(fh, maxlen=max(0, tail))
            else:
                lines = list(fh)
            pos = fh.tell()
        for raw in lines:
            yield raw.decode("utf-8", "replace").rstrip("\n")
    if not follow:
        return
    buf = b""
    while True:
        done = engine.get_run(run_id).state.terminal
        try:
            with open(path, "rb") as fh:
                fh.seek(pos)
                data = fh.read()
                pos = fh.tell()
        except FileNotFoundError:
            data = b""
        buf += data
        *complete, buf = buf.split(b"\n")
        for raw in complete:
            yield raw.decode("utf-8", "replace")
        if done:
            if buf:
                yield buf.decode("utf-8", "replace")
            return
        time.sleep(0.25)


def _hostname() -> str:
    import socket  # here: a listing never names the host

    return socket.gethostname()
