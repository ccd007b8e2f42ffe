"""Limits fail closed: a tier limit or a sweep cap that cannot be read admits nothing and is logged.
Only SQLite's "no such table" (no sweep was ever submitted) means "no cap"."""
from __future__ import annotations

import logging
import sqlite3

import pytest

from backend.config import parse_config
from backend.engines.local import sweeps
from backend.ledger import db
from backend.agent.agent import Agent
from backend.engines.local.scheduler import FreeDevice, plan
from backend.engines.local.sweeps import SweepGovernor, SweepPolicy
from backend.errors import ConfigError


def add(conn, rid: str, *, experiment: str | None = None, state: str = "QUEUED") -> None:
    with db.write(conn):
        db.insert_run(conn, {
            "id": rid, "name": rid, "experiment": experiment, "profile": "local", "state": state,
            "priority": "normal", "prio": 0, "submitted_at": 1000.0, "gpus": 1, "learners": 1,
            "spec": {"command": "true", "manifest_name": rid},
        }, db.next_seq(conn))


FREE = [FreeDevice(f"cpu:{i}", "cpu") for i in range(4)]


def test_no_experiments_table_means_no_cap(tmp_path):
    conn = db.connect(tmp_path / "state.db")  # runs, but no sweep was ever recorded
    add(conn, "solo")
    gov = SweepGovernor(conn, lambda *a: None)
    assert gov.room() == {} and sweeps.read_policies(conn) == {}
    assert [a.run_id for a in plan(gov.queue(best_effort=False, free=4), FREE, {"local": None})] == ["solo"]


def test_a_locked_database_admits_nothing(tmp_path):
    path = tmp_path / "state.db"
    conn = db.connect(path)
    sweeps.ensure_schema(conn)
    with db.write(conn):
        sweeps.record_policies(conn, {"sw": SweepPolicy(parallel=1)})
    add(conn, "sw-0", experiment="sw")
    conn.execute("PRAGMA journal_mode = DELETE")  # WAL readers never block; a rollback journal does
    conn.close()
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        reader = sqlite3.connect(str(path), timeout=0, isolation_level=None)
        gov = SweepGovernor(reader, lambda *a: None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            plan(gov.queue(best_effort=False, free=4), FREE, {"local": None})
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            sweeps.read_policies(reader)
        reader.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_corrupt_experiments_table_admits_nothing(tmp_path):
    conn = db.connect(tmp_path / "state.db")
    conn.execute("CREATE TABLE experiments (something_else TEXT)")  # not the table we wrote
    add(conn, "sw-0", experiment="sw")
    gov = SweepGovernor(conn, lambda *a: None)
    with pytest.raises(sqlite3.OperationalError, match="no such column"):
        gov.room()
    with pytest.raises(sqlite3.OperationalError):
        sweeps.read_policies(conn)


def test_the_agent_pass_admits_nothing_when_the_cap_is_unreadable(tmp_path):
    """The agent's loop runs `admit` inside a logged try: an unreadable cap stops the pass there."""
    conn = db.connect(tmp_path / "state.db")
    conn.execute("CREATE TABLE experiments (something_else TEXT)")
    add(conn, "sw-0", experiment="sw")
    agent = Agent.__new__(Agent)
    agent.sweeps = SweepGovernor(conn, lambda *a: None)
    with pytest.raises(sqlite3.OperationalError):
        list(agent.sweeps.queue(best_effort=False, free=4))
    assert conn.execute("SELECT state FROM runs WHERE id = 'sw-0'").fetchone()[0] == "QUEUED"


def _agent_with(config_text: str, conn) -> Agent:
    agent = Agent.__new__(Agent)
    agent.config = parse_config(config_text, "test-config.toml")
    agent.conn = conn
    agent._limit_errors = set()
    agent._backends = {}
    return agent


def test_an_unreadable_tier_limit_gives_no_room_and_is_logged_once(tmp_path, caplog, monkeypatch):
    conn = db.connect(tmp_path / "state.db")
    agent = _agent_with('[profiles.local]\ntier = "small"\n[tiers]\nsmall = 2\n', conn)

    def gone(profile):
        raise ConfigError(f"no profile {profile!r} in the config")

    monkeypatch.setattr(agent, "backend_for", gone)
    with caplog.at_level(logging.ERROR, logger="dlaas.agent"):
        assert agent.tier_room("removed") == 0
        assert agent.tier_room("removed") == 0
    errors = [r for r in caplog.records if "tier limit unreadable" in r.getMessage()]
    assert len(errors) == 1 and "removed" in errors[0].getMessage()
    add(conn, "r1")
    assert plan([("r1", 1, "removed", None)], FREE, {"removed": 0}) == []


def test_a_readable_tier_limit_still_counts_what_is_held(tmp_path):
    conn = db.connect(tmp_path / "state.db")
    agent = _agent_with('[profiles.local]\ntier = "small"\n[tiers]\nsmall = 2\n', conn)
    agent._backends = {"local": type("B", (), {"profile": agent.config.profile("local")})()}
    add(conn, "held", state="PROCESSING")
    assert agent.tier_room("local") == 1
    unlimited = _agent_with('[profiles.local]\ntier = "unlimited"\n', conn)
    unlimited._backends = {"local": type("B", (), {"profile": unlimited.config.profile("local")})()}
    assert unlimited.tier_room("local") is None
