"""The local engine's state: one SQLite file (WAL) shared by the agent and every reader.

Tables: `runs` (one row per run, current state), `run_events` (an append-only ledger of every
transition; triggers refuse updates and deletes), `metrics` (parsed points), `deleted` (tombstones so
`changes(cursor)` reports deletions), `control` (halt requests from other processes) and `counter`
(the change sequence). Every write to a run stamps it with the next sequence number, so a reader asks
"what changed since N" with one indexed query instead of re-reading 10,000 runs.

WAL lets readers run while the agent writes; writers take `BEGIN IMMEDIATE` and wait out each other
through `busy_timeout`. The schema version lives in `PRAGMA user_version`.
"""
from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from backend import clock
from ..errors import BadInput, EngineError, NotFound
from ..paths import exists, parent_of, private_dir
from ..runs import ALLOWED_TRANSITIONS, RESUMABLE_STATES, RESUME_NOTE, RETRY_NOTE, RunState, resume_message

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~2.5 ms) on the CLI's path
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS counter (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
INSERT OR IGNORE INTO counter (k, v) VALUES ('seq', 0);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    experiment TEXT,
    profile TEXT NOT NULL,
    state TEXT NOT NULL,
    priority TEXT NOT NULL,
    prio INTEGER NOT NULL,
    submitted_at REAL NOT NULL,
    admitted_at REAL,
    started_at REAL,
    finished_at REAL,
    gpus INTEGER NOT NULL,
    learners INTEGER NOT NULL,
    gpu_type TEXT,
    assigned TEXT NOT NULL DEFAULT '[]',
    labels TEXT NOT NULL DEFAULT '[]',
    error_code TEXT,
    message TEXT NOT NULL DEFAULT '',
    metrics TEXT NOT NULL DEFAULT '{}',
    primary_metric TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    results_bucket TEXT,
    spec TEXT NOT NULL,
    manifest_text TEXT NOT NULL DEFAULT '',
    procs TEXT NOT NULL DEFAULT '[]',
    cost_micro INTEGER,
    priced INTEGER NOT NULL DEFAULT 1,
    outcome TEXT NOT NULL DEFAULT '{}',
    metric_goal TEXT NOT NULL DEFAULT 'minimize',
    final_json TEXT,
    json_shape TEXT
);
CREATE INDEX IF NOT EXISTS runs_queue ON runs (state, prio DESC, submitted_at, id, gpus, learners,
    profile, gpu_type);
CREATE INDEX IF NOT EXISTS runs_by_seq ON runs (seq);
CREATE INDEX IF NOT EXISTS runs_by_state ON runs (state);
CREATE INDEX IF NOT EXISTS runs_by_submitted ON runs (submitted_at, id);
CREATE TABLE IF NOT EXISTS run_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    at REAL NOT NULL,
    state TEXT,
    message TEXT NOT NULL DEFAULT '',
    error_code TEXT
);
CREATE INDEX IF NOT EXISTS events_by_run ON run_events (run_id, id);
CREATE TRIGGER IF NOT EXISTS run_events_no_update BEFORE UPDATE ON run_events
BEGIN SELECT RAISE(ABORT, 'run_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS run_events_no_delete BEFORE DELETE ON run_events
BEGIN SELECT RAISE(ABORT, 'run_events is append-only'); END;
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL,
    learner INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    step REAL,
    at REAL
);
CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics (run_id);
CREATE TABLE IF NOT EXISTS deleted (run_id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS control (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    action TEXT NOT NULL,
    at REAL NOT NULL
);
"""

RUN_COLUMNS = (
    "id seq name experiment profile state priority prio submitted_at admitted_at started_at "
    "finished_at gpus learners gpu_type assigned labels error_code message metrics primary_metric "
    "params results_bucket spec manifest_text procs cost_micro priced outcome metric_goal"
).split()
JSON_COLUMNS = frozenset({"assigned", "labels", "metrics", "params", "spec", "procs", "outcome"})


def damaged(exc: BaseException) -> bool:
    """True for SQLite's "this file is not a (sound) database" errors, not for a busy or locked one."""
    return isinstance(exc, sqlite3.DatabaseError) and (
        getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB")
        or str(exc) in ("file is not a database", "database disk image is malformed"))


def damaged_error(path: Path | str, exc: BaseException) -> EngineError:
    """What to tell a user whose state database cannot be read, and what to do about it."""
    return EngineError(
        f"{path}: the state database is damaged and cannot be read ({exc}). To start afresh: "
        f"stop the agent (dlaas-tui agent stop), move the file aside (mv {path} {path}.damaged) "
        "and run the command again. The runs recorded in it will no longer be listed; their results "
        "and logs stay in the results bucket.")


def busy(exc: BaseException) -> bool:
    """True when SQLite gave up waiting for another writer (after `busy_timeout`)."""
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED")
        or "database is locked" in str(exc))


def busy_error(path: Path | str, exc: BaseException) -> EngineError:
    return EngineError(
        f"{path}: the state database stayed locked by another process for 30 s ({exc}), so this "
        f"command stopped before recording its change; run it again (`fuser {path}` shows who holds it)")


def connect(path: Path | str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, waiting out writers.

    A file that is not a sound SQLite database is an EngineError naming it and the way out."""
    try:
        return _connect(path)
    except sqlite3.DatabaseError as exc:
        if damaged(exc):
            raise damaged_error(path, exc) from None
        if "unable to open" in str(exc):
            raise EngineError(f"{path}: cannot open the state database ({exc}); is DLAAS_HOME a folder "
                              "this user can write?") from None
        raise
    except OSError as exc:  # the state folder cannot be made (DLAAS_HOME under a file, no permission)
        raise EngineError(f"{parent_of(path)}: cannot create the state folder ({exc.strerror or exc}); "
                          "is DLAAS_HOME a folder this user can write?") from None


def _connect(path: Path | str) -> sqlite3.Connection:
    private_dir(parent_of(path))
    if not exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(os.fspath(path), timeout=30, isolation_level=None, check_same_thread=False)
    try:
        return _prepare(conn, path)
    except BaseException:
        conn.close()
        raise


def _prepare(conn: sqlite3.Connection, path: Path | str) -> sqlite3.Connection:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < SCHEMA_VERSION:
        with write(conn):
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for stmt in _statements(SCHEMA):
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    elif version > SCHEMA_VERSION:
        raise EngineError(
            f"{path}: state schema version {version} is newer than this program ({SCHEMA_VERSION})"
        )
    return conn


def _statements(script: str) -> Iterator[str]:
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            yield buf.strip()
            buf = ""


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken up front so two writers never deadlock on an upgrade."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read transaction: one consistent view (WAL), taking no lock that would block the agent."""
    conn.execute("BEGIN DEFERRED")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def next_seq(conn: sqlite3.Connection) -> int:
    return conn.execute("UPDATE counter SET v = v + 1 WHERE k = 'seq' RETURNING v").fetchone()[0]


def current_seq(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT v FROM counter WHERE k = 'seq'").fetchone()[0]


def mark_pass(conn: sqlite3.Connection, seq: int) -> None:
    """Record that an admission pass has considered every change up to `seq` (for `settled`)."""
    with write(conn):
        conn.execute("INSERT OR REPLACE INTO counter (k, v) VALUES ('pass', ?)", (seq,))


def passed(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT v FROM counter WHERE k = 'pass'").fetchone()
    return -1 if row is None else row[0]


def decode(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for key in JSON_COLUMNS & out.keys():
        out[key] = json.loads(out[key]) if out[key] else ({} if key in ("metrics", "params", "spec", "outcome") else [])
    return out


def insert_run(conn: sqlite3.Connection, row: dict[str, Any], seq: int) -> None:
    """Insert a QUEUED run and its first ledger event (inside the caller's transaction)."""
    values = dict(row, seq=seq)
    for key in JSON_COLUMNS & values.keys():
        values[key] = json.dumps(values[key])
    cols = [c for c in RUN_COLUMNS if c in values]
    conn.execute(
        f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
        [values[c] for c in cols],
    )
    conn.execute(
        "INSERT INTO run_events (run_id, at, state, message) VALUES (?, ?, ?, ?)",
        (row["id"], row["submitted_at"], RunState.QUEUED.value, "submitted"),
    )


def get_row(conn: sqlite3.Connection, run_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise NotFound(f"no run {run_id!r}")
    return decode(row)


def update(conn: sqlite3.Connection, run_id: str, **fields: Any) -> None:
    """Change fields of a run without a state change (metrics, procs); bumps its sequence."""
    with write(conn):
        set_fields(conn, run_id, fields)


def set_fields(conn: sqlite3.Connection, run_id: str, fields: dict[str, Any]) -> None:
    """Change fields of a run inside the caller's write transaction; bumps its sequence."""
    vals = {k: json.dumps(v) if k in JSON_COLUMNS else v for k, v in fields.items()}
    vals["seq"] = next_seq(conn)
    sets = ", ".join(f"{k} = ?" for k in vals)
    conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*vals.values(), run_id])


def transition(
    conn: sqlite3.Connection,
    run_id: str,
    state: RunState,
    *,
    message: str = "",
    error_code: str | None = None,
    at: float | None = None,
    expect: frozenset[RunState] | None = None,
    **fields: Any,
) -> bool:
    """Move a run to `state`, appending the ledger event, in one transaction.

    Returns False (and changes nothing) when the run is not in an allowed state any more - e.g. a
    halt won the race - so two writers can never both move a run.
    """
    at = clock.time() if at is None else at
    with write(conn):
        row = conn.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return False
        current = RunState(row[0])
        if state not in ALLOWED_TRANSITIONS[current] or (expect is not None and current not in expect):
            return False
        fields = dict(fields, state=state.value)
        if message or state.terminal:
            fields["message"] = message
        if error_code is not None:
            fields["error_code"] = error_code
        set_fields(conn, run_id, fields)
        conn.execute(
            "INSERT INTO run_events (run_id, at, state, message, error_code) VALUES (?, ?, ?, ?, ?)",
            (run_id, at, state.value, message, error_code),
        )
    return True


def attempt(conn: sqlite3.Connection, run_id: str) -> int:
    """The run's current attempt: 1, plus one for every resume or retry in its ledger."""
    return 1 + conn.execute(
        "SELECT COUNT(*) FROM run_events WHERE run_id = ? AND state = 'QUEUED' AND "
        "(message LIKE ? OR message LIKE ?)",
        (run_id, RESUME_NOTE + "%", RETRY_NOTE + ":%"),
    ).fetchone()[0]


def reopen(conn: sqlite3.Connection, run_id: str) -> int | None:
    """Send a HALTED or FAILED run back to QUEUED as its next attempt; returns the attempt number,
    or None when the run is not (or no longer) resumable. The ledger keeps every earlier event, so
    billing goes on summing the intervals of every attempt."""
    with write(conn):
        row = conn.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None or RunState(row[0]) not in RESUMABLE_STATES:
            return None
        n = attempt(conn, run_id) + 1
        message = resume_message(n)
        set_fields(conn, run_id, {
            "state": RunState.QUEUED.value, "message": message, "error_code": None, "finished_at": None,
            "assigned": [], "labels": [], "procs": [], "outcome": {}, "final_json": None, "json_shape": None,
        })
        conn.execute(
            "INSERT INTO run_events (run_id, at, state, message) VALUES (?, ?, ?, ?)",
            (run_id, clock.time(), RunState.QUEUED.value, message),
        )
    return n


def note(conn: sqlite3.Connection, run_id: str, message: str) -> None:
    """A ledger entry that changes no state (why a run waits, a recovery step)."""
    with write(conn):
        conn.execute(
            "INSERT INTO run_events (run_id, at, state, message) VALUES (?, ?, NULL, ?)",
            (run_id, clock.time(), message),
        )


def events(conn: sqlite3.Connection, run_id: str) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT run_id, at, state, message, error_code FROM run_events WHERE run_id = ? ORDER BY id",
        (run_id,),
    ).fetchall()


def add_metrics(conn: sqlite3.Connection, run_id: str, points: list[tuple], last: dict[str, float],
                primary: str | None) -> None:
    """Append points (learner, name, value, step, at) and update the run's last values at once."""
    with write(conn):
        conn.executemany(
            "INSERT INTO metrics (run_id, learner, name, value, step, at) VALUES (?, ?, ?, ?, ?, ?)",
            [(run_id, *p) for p in points],
        )
        set_fields(conn, run_id, {"metrics": last, "primary_metric": primary})


def request_control(conn: sqlite3.Connection, run_id: str, action: str) -> None:
    with write(conn):
        conn.execute(
            "INSERT INTO control (run_id, action, at) VALUES (?, ?, ?)", (run_id, action, clock.time())
        )


def take_control(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    with write(conn):
        rows = conn.execute("DELETE FROM control RETURNING run_id, action").fetchall()
    return [(r[0], r[1]) for r in rows]


def delete_run(conn: sqlite3.Connection, run_id: str) -> None:
    """Remove a finished run's record (the ledger keeps its events; results are never touched)."""
    with write(conn):
        row = conn.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no run {run_id!r}")
        if not RunState(row[0]).terminal:
            raise BadInput(f"{run_id}: run is {row[0]}; halt it before deleting it")
        conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        conn.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
        conn.execute(
            "INSERT OR REPLACE INTO deleted (run_id, seq) VALUES (?, ?)", (run_id, next_seq(conn))
        )
