"""The Kubernetes engine's `Ledger` kept in SQLite, so the history outlives every process.

One file per kubernetes profile (`<state>/kubernetes/<profile>.db`, backend/ledger/files.py) with the ledger schema
(backend/ledger/db.py): `runs` holds each run's latest view (the whole Run as JSON in `spec`,
the columns beside it for queries), `run_events` is the append-only ledger, `counter`/`deleted` serve
`changes(cursor)`. A file of its own keeps the local scheduler from ever seeing these runs as its
queue. Two tables are added here: `k8s_flags` (one-time marks such as "run.json written") and
`k8s_held` (runs accepted but not yet released to the cluster: sweeps wait here, `parallel` at a
time, until the agent creates their Jobs).

The agent and the CLI both open the file; WAL lets them read while the other writes. One connection
is shared by the engine's threads (watch loop, releases), so every use takes the ledger's lock.
"""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from backend.ledger import db
from backend.runs import RESUMABLE_STATES, Run, RunEvent, RunState

EXTRA_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS k8s_flags (run_id TEXT NOT NULL, flag TEXT NOT NULL, PRIMARY KEY (run_id, flag))",
    "CREATE TABLE IF NOT EXISTS k8s_held (run_id TEXT PRIMARY KEY, ord INTEGER NOT NULL, grp TEXT NOT NULL, "
    "parallel INTEGER, max_failed INTEGER, manifest TEXT NOT NULL, experiment TEXT, params TEXT NOT NULL DEFAULT '{}', "
    "manifest_text TEXT NOT NULL DEFAULT '', released INTEGER NOT NULL DEFAULT 0)",
)
_ACTIVE = tuple(s.value for s in RunState if not s.terminal)


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


_TIMES = ("submitted_at", "eta", "admitted_at", "started_at", "finished_at", "updated_at")


def run_to_doc(run: Run) -> dict[str, Any]:
    doc = {name: getattr(run, name) for name in Run._fields}
    doc["state"] = run.state.value
    for name in _TIMES:
        doc[name] = _ts(doc[name])
    return doc


def run_from_doc(doc: dict[str, Any]) -> Run:
    fields = {k: v for k, v in doc.items() if k in Run._fields}
    fields["state"] = RunState(fields["state"])
    for name in _TIMES:
        if name in fields:
            fields[name] = _dt(fields[name])
    return Run(**fields)


class SqliteLedger:
    def __init__(self, path: Path, profile: str = "") -> None:
        self.path = Path(path)
        self.profile = profile
        self._lock = threading.RLock()
        self.conn = db.connect(self.path)
        with self._lock, db.write(self.conn):
            for stmt in EXTRA_SCHEMA:
                self.conn.execute(stmt)

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # -- the Ledger protocol -----------------------------------------------------------------------
    def _ended(self, run_id: str) -> bool:
        row = self.conn.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row is not None and row[0] not in _ACTIVE

    def record(self, event: RunEvent) -> None:
        with self._lock, db.write(self.conn):
            # Two processes write here (the agent observing, a CLI halting): an observation made
            # before another process ended the run must not bring it back to life.
            if event.state is not None and not event.state.terminal and self._ended(event.run_id):
                return
            self.conn.execute(
                "INSERT INTO run_events (run_id, at, state, message, error_code) VALUES (?, ?, ?, ?, ?)",
                (event.run_id, event.at.timestamp(), event.state.value if event.state else None, event.message,
                 event.error_code))

    def reopen(self, run: Run, event: RunEvent, *, manifest: dict[str, Any] | None = None,
               manifest_text: str = "") -> bool:
        """A resume: the ended run back to QUEUED with `event`, the one way a finished run changes
        state, and held again, so the agent creates its Job as it does for any held run (its sweep's
        `parallel` still applies; `max_failed` no longer stops it: the user asked for it). Its one-time
        marks (run.json written) are cleared for the next end. False when the run is not resumable
        any more (someone else resumed it first)."""
        with self._lock, db.write(self.conn):
            row = self.conn.execute("SELECT state FROM runs WHERE id = ?", (run.id,)).fetchone()
            if row is None or RunState(row[0]) not in RESUMABLE_STATES:
                return False
            order = self.conn.execute("SELECT COALESCE(MAX(ord), 0) + 1 FROM k8s_held").fetchone()[0]
            held = self.conn.execute("UPDATE k8s_held SET released = 0, ord = ?, max_failed = NULL WHERE run_id = ?",
                                     (order, run.id))
            if held.rowcount == 0:
                if manifest is None:
                    raise ValueError(f"{run.id}: a run that was never held needs its manifest to be held again")
                self.conn.execute(
                    "INSERT INTO k8s_held (run_id, ord, grp, parallel, max_failed, manifest, experiment, params, "
                    "manifest_text) VALUES (?, ?, ?, NULL, NULL, ?, ?, ?, ?)",
                    (run.id, order, run.experiment or run.id, json.dumps(manifest), run.experiment,
                     json.dumps(run.params, default=str), manifest_text))
            self.conn.execute(
                "INSERT INTO run_events (run_id, at, state, message, error_code) VALUES (?, ?, ?, ?, ?)",
                (event.run_id, event.at.timestamp(), RunState.QUEUED.value, event.message, None))
            self.conn.execute("DELETE FROM k8s_flags WHERE run_id = ?", (run.id,))
            self._put(run, db.next_seq(self.conn))
        return True

    def events(self, run_id: str) -> list[RunEvent]:
        with self._lock:
            rows = db.events(self.conn, run_id)
        return [RunEvent(r["run_id"], _dt(r["at"]), RunState(r["state"]) if r["state"] else None, r["message"] or "",
                         r["error_code"]) for r in rows]

    def put_run(self, run: Run) -> None:
        with self._lock, db.write(self.conn):
            if not run.state.terminal and self._ended(run.id):
                return  # a stale view from another process (see record)
            self._put(run, db.next_seq(self.conn))

    def _put(self, run: Run, seq: int) -> None:
        learners = max(run.learners, 1)
        self.conn.execute(
            "INSERT OR REPLACE INTO runs (id, seq, name, experiment, profile, state, priority, prio, submitted_at, "
            "admitted_at, started_at, finished_at, gpus, learners, gpu_type, error_code, message, metrics, "
            "primary_metric, params, results_bucket, spec, cost_micro, priced, metric_goal) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run.id, seq, run.name, run.experiment, self.profile, run.state.value, run.priority,
             _ts(run.submitted_at), _ts(run.admitted_at), _ts(run.started_at), _ts(run.finished_at),
             run.gpus // learners, learners, run.gpu_type, run.error_code, run.message, json.dumps(run.metrics),
             run.primary_metric, json.dumps(run.params, default=str), run.results_bucket,
             json.dumps(run_to_doc(run), default=str), run.cost_micro_usd, int(run.cost_micro_usd is not None),
             run.metric_goal))
        self.conn.execute("DELETE FROM deleted WHERE run_id = ?", (run.id,))

    def get_run(self, run_id: str) -> Run | None:
        with self._lock:
            row = self.conn.execute("SELECT spec FROM runs WHERE id = ?", (run_id,)).fetchone()
        return run_from_doc(json.loads(row[0])) if row else None

    def runs(self) -> list[Run]:
        with self._lock:
            rows = self.conn.execute("SELECT spec FROM runs").fetchall()
        return [run_from_doc(json.loads(r[0])) for r in rows]

    def forget(self, run_id: str) -> None:
        """The run's row goes (and a tombstone for `changes`); its events stay: the ledger is append-only."""
        with self._lock, db.write(self.conn):
            self.conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            self.conn.execute("DELETE FROM k8s_held WHERE run_id = ?", (run_id,))
            self.conn.execute("INSERT OR REPLACE INTO deleted (run_id, seq) VALUES (?, ?)",
                              (run_id, db.next_seq(self.conn)))

    def mark(self, run_id: str, flag: str) -> bool:
        with self._lock, db.write(self.conn):
            cur = self.conn.execute("INSERT OR IGNORE INTO k8s_flags (run_id, flag) VALUES (?, ?)", (run_id, flag))
            return cur.rowcount == 1

    def has_mark(self, run_id: str, flag: str) -> bool:
        with self._lock:
            return self.conn.execute("SELECT 1 FROM k8s_flags WHERE run_id = ? AND flag = ?",
                                     (run_id, flag)).fetchone() is not None

    # -- changes(cursor) ---------------------------------------------------------------------------
    @property
    def cursor(self) -> int:
        with self._lock:
            return db.current_seq(self.conn)

    def changes_since(self, cursor: int) -> tuple[list[Run], list[str]]:
        with self._lock, db.snapshot(self.conn):
            rows = self.conn.execute("SELECT spec FROM runs WHERE seq > ?", (cursor,)).fetchall()
            gone = self.conn.execute("SELECT run_id FROM deleted WHERE seq > ?", (cursor,)).fetchall()
        return [run_from_doc(json.loads(r[0])) for r in rows], [g[0] for g in gone]

    # -- runs held back until the agent releases them -----------------------------------------------
    def hold(self, run: Run, *, manifest: dict[str, Any], group: str, parallel: int | None,
             max_failed: int | None = None, manifest_text: str = "") -> None:
        """Record an accepted run (QUEUED, its first event) that has no Job yet, in one transaction."""
        with self._lock, db.write(self.conn):
            order = self.conn.execute("SELECT COALESCE(MAX(ord), 0) + 1 FROM k8s_held").fetchone()[0]
            self.conn.execute(
                "INSERT INTO k8s_held (run_id, ord, grp, parallel, max_failed, manifest, experiment, params, "
                "manifest_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run.id, order, group, parallel, max_failed, json.dumps(manifest), run.experiment,
                 json.dumps(run.params, default=str), manifest_text))
            held_note = f"submitted; held back: {parallel} at a time" if parallel else "submitted"
            self.conn.execute(
                "INSERT INTO run_events (run_id, at, state, message) VALUES (?, ?, ?, ?)",
                (run.id, run.submitted_at.timestamp(), RunState.QUEUED.value, held_note))
            self._put(run, db.next_seq(self.conn))

    def held_ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self.conn.execute("SELECT run_id FROM k8s_held WHERE released = 0")}

    def releasable(self) -> list[dict[str, Any]]:
        """Held runs that may go to the cluster now, oldest first: per group, as many as `parallel`
        leaves room for beside the group's released runs that have not ended. Rows with `manifest`
        None are to be dropped: halted while held, or (`failed` set) their group reached max_failed."""
        with self._lock, db.snapshot(self.conn):
            # the manifests are read only for the runs chosen: a big sweep's rows stay light
            rows = self.conn.execute(
                "SELECT h.run_id, h.grp, h.parallel, h.max_failed, h.experiment, h.params, h.released, "
                "r.state AS state FROM k8s_held h LEFT JOIN runs r ON r.id = h.run_id ORDER BY h.ord").fetchall()
        active: dict[str, int] = {}
        failed: dict[str, int] = {}
        for r in rows:
            if r["released"] and r["state"] in _ACTIVE:
                active[r["grp"]] = active.get(r["grp"], 0) + 1
            if r["state"] == RunState.FAILED.value:
                failed[r["grp"]] = failed.get(r["grp"], 0) + 1
        out = []
        for r in rows:
            if r["released"]:
                continue
            if r["state"] not in _ACTIVE:  # halted (or forgotten) while held: nothing to release
                out.append(dict(r, manifest=None, failed=None))
                continue
            if r["max_failed"] and failed.get(r["grp"], 0) >= r["max_failed"]:
                out.append(dict(r, manifest=None, failed=failed[r["grp"]]))
                continue
            used = active.get(r["grp"], 0)
            if r["parallel"] and used >= r["parallel"]:
                continue
            active[r["grp"]] = used + 1
            with self._lock:
                manifest, text = self.conn.execute("SELECT manifest, manifest_text FROM k8s_held WHERE run_id = ?",
                                                   (r["run_id"],)).fetchone()
            out.append(dict(r, manifest=json.loads(manifest), manifest_text=text, params=json.loads(r["params"])))
        return out

    def queued_count(self) -> int:
        with self._lock:
            return self.conn.execute("SELECT COUNT(*) FROM runs WHERE state = 'QUEUED'").fetchone()[0]

    def released(self, run_id: str) -> None:
        with self._lock, db.write(self.conn):
            self.conn.execute("UPDATE k8s_held SET released = 1 WHERE run_id = ?", (run_id,))

    def reprioritize_held(self, run_id: str, priority: str) -> bool:
        with self._lock, db.write(self.conn):
            cur = self.conn.execute(
                "UPDATE k8s_held SET manifest = json_set(manifest, '$.priority', ?) WHERE run_id = ? AND released = 0",
                (priority, run_id))
            return cur.rowcount == 1

    def manifest_text(self, run_id: str) -> str | None:
        with self._lock:
            row = self.conn.execute("SELECT manifest_text FROM k8s_held WHERE run_id = ?", (run_id,)).fetchone()
        return row[0] if row else None
