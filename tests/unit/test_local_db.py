"""The local engine's SQLite state: schema version, ledger, transitions, change cursor, queue order."""
from __future__ import annotations

import sqlite3
import stat
import time

import pytest

from backend.ledger import db
from backend.engines.local.scheduler import QUEUE_SQL
from backend.runs import RunState


def row(rid: str, prio: int = 0, at: float | None = None) -> dict:
    return {"id": rid, "name": rid, "profile": "local", "state": "QUEUED", "priority": "normal",
            "prio": prio, "submitted_at": at if at is not None else time.time(), "gpus": 1, "learners": 1,
            "spec": {"command": "true"}}


@pytest.fixture
def conn(tmp_path):
    c = db.connect(tmp_path / "state" / "state.db")
    yield c
    c.close()


def test_schema_version_wal_and_private_file(conn, tmp_path):
    assert conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    mode = (tmp_path / "state" / "state.db").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700


def test_transitions_follow_the_lifecycle_and_the_ledger_is_append_only(conn):
    with db.write(conn):
        db.insert_run(conn, row("r1"), db.next_seq(conn))
    assert not db.transition(conn, "r1", RunState.PROCESSING)  # QUEUED -> PROCESSING is not allowed
    assert db.transition(conn, "r1", RunState.PENDING, message="devices assigned")
    assert db.transition(conn, "r1", RunState.HALTED, message="halted")
    assert not db.transition(conn, "r1", RunState.PENDING)  # terminal stays terminal
    states = [e["state"] for e in db.events(conn, "r1")]
    assert states == ["QUEUED", "PENDING", "HALTED"]
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE run_events SET state = 'COMPLETED'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM run_events")


def test_change_sequence_and_deletions(conn):
    with db.write(conn):
        s = db.next_seq(conn)
        db.insert_run(conn, row("a"), s)
        db.insert_run(conn, row("b"), s)
    cursor = db.current_seq(conn)
    db.transition(conn, "a", RunState.HALTED)
    changed = [r[0] for r in conn.execute("SELECT id FROM runs WHERE seq > ?", (cursor,))]
    assert changed == ["a"]
    db.delete_run(conn, "a")
    gone = [r[0] for r in conn.execute("SELECT run_id FROM deleted WHERE seq > ?", (cursor,))]
    assert gone == ["a"]
    assert [e["state"] for e in db.events(conn, "a")][-1] == "HALTED"  # the ledger keeps it
    with pytest.raises(Exception, match="halt it"):
        db.delete_run(conn, "b")


def test_queue_order_is_priority_then_submit_time(conn):
    t = 1000.0
    with db.write(conn):
        s = db.next_seq(conn)
        db.insert_run(conn, row("old-low", prio=-100, at=t), s)
        db.insert_run(conn, row("old", at=t + 1), s)
        db.insert_run(conn, row("new", at=t + 2), s)
        db.insert_run(conn, row("new-high", prio=1000, at=t + 3), s)
    assert [r[0] for r in conn.execute(QUEUE_SQL)] == ["new-high", "old", "new", "old-low"]
    plan = conn.execute("EXPLAIN QUERY PLAN " + QUEUE_SQL).fetchall()
    assert not any("TEMP B-TREE" in str(tuple(p)) for p in plan)  # read in index order, never sorted


def test_control_requests_are_taken_once(conn):
    db.request_control(conn, "r1", "halt")
    assert db.take_control(conn) == [("r1", "halt")]
    assert db.take_control(conn) == []
