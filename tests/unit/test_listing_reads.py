"""The local listing's cheap reads give what the whole read gives.

A first screenful (the TUI's first page), a limited listing and the queue's ETAs are read without
reading and building every run: the head of the queue only, the newest runs only, light queue rows
instead of Run objects. Each must agree with the full listing, run for run and field for field.
"""
from __future__ import annotations

import pytest

from backend import clock
from backend.engines.local import eta
from backend.engines.local import engine as local_engine
from backend.facade import TERMINAL_STATES, RunState, open_backend
from backend.ledger import db

NOW = 2_000_000.0


def _fill(conn) -> None:
    """Every state, billed runs with history, sweeps with a cap, priorities, max_duration or none."""
    conn.execute("CREATE TABLE IF NOT EXISTS experiments (id TEXT PRIMARY KEY, created_at REAL NOT NULL, "
                 "policy TEXT NOT NULL DEFAULT '{}')")
    conn.execute("INSERT INTO experiments VALUES ('capped', 0, '{\"parallel\": 1}'), ('free', 0, '{}')")
    conn.commit()
    states = ["COMPLETED", "QUEUED", "PROCESSING", "FAILED", "QUEUED", "HALTED", "QUEUED", "PENDING", "QUEUED"]
    with db.write(conn):
        seq = db.next_seq(conn)
        for i in range(180):
            state = states[i % len(states)]
            rid = f"training-l{i:07d}"
            db.insert_run(conn, {
                "id": rid, "name": f"lst-{i}", "profile": "local", "state": state, "priority": "normal",
                "prio": (i % 4) * 10, "submitted_at": NOW - 5000 + i, "gpus": i % 2, "learners": 1 + (i % 5 == 0),
                "experiment": ("capped", "free", None)[i % 3],
                "spec": {"command": "true", "max_duration_s": 600 if i % 4 else None, "manifest_name": "lst"},
                "results_bucket": "b", "cost_micro": 1000 * i if RunState(state).terminal else None,
                "metrics": {"loss": i / 100} if state != "QUEUED" else {}, "primary_metric": "loss",
            }, seq)
            if state != "QUEUED":
                admitted = NOW - 4000 + i
                finished = admitted + 60 + i if RunState(state).terminal else None
                conn.execute("UPDATE runs SET admitted_at = ?, started_at = ?, finished_at = ? WHERE id = ?",
                             (admitted, admitted, finished, rid))
                conn.execute("INSERT INTO run_events (run_id, at, state, message) VALUES (?, ?, 'PENDING', '')",
                             (rid, admitted))
                if finished:
                    conn.execute("INSERT INTO run_events (run_id, at, state, message) VALUES (?, ?, ?, '')",
                                 (rid, finished, state))


@pytest.fixture
def engine(dlaas_home, monkeypatch):
    (dlaas_home / "config.toml").write_text("[profiles.local]\ncpu_slots = 2\n[prices]\ncpu = 0.5\n")
    (dlaas_home / "config.toml").chmod(0o600)
    conn = db.connect(dlaas_home / "state" / "state.db")
    _fill(conn)
    conn.close()
    monkeypatch.setattr(local_engine, "ensure_agent", lambda *a, **k: 0)  # nothing to stop after
    previous = clock.set_clock(clock.FrozenClock(NOW))
    backend = open_backend()
    yield backend.engine
    backend.close()
    clock.set_clock(previous)


def _docs(runs) -> dict[str, dict]:
    return {r.id: r.to_json() for r in runs}


def test_the_queue_head_is_the_full_listing_s_queue_in_order(engine):
    whole = _docs(engine.list_runs())
    head = engine.queue_head(7)
    assert [r.queue_position for r in head] == list(range(1, 8))
    assert all(r.eta is not None for r in head)
    for run in head:  # positions, ETAs, costs, messages: all as in the whole listing
        assert run.to_json() == whole[run.id]


def test_a_limited_listing_is_the_head_of_the_unlimited_one(engine):
    for states in (sorted(TERMINAL_STATES), [RunState.FAILED], [RunState.QUEUED], None):
        whole = engine.list_runs(states=states)
        for limit in (1, 5, 500):
            assert [r.to_json() for r in engine.list_runs(states=states, limit=limit)] == \
                [r.to_json() for r in whole[:limit]]


def test_one_run_reads_as_in_the_listing(engine):
    whole = _docs(engine.list_runs())
    for rid in ("training-l0000001", "training-l0000178", "training-l0000002", "training-l0000000"):
        assert engine.get_run(rid).to_json() == whole[rid]


def test_the_etas_of_the_queue_s_head_are_those_of_the_whole_queue(engine):
    conn = engine.conn
    order = [row[0] for row in conn.execute("SELECT id FROM runs WHERE state = 'QUEUED' "
                                            "ORDER BY prio DESC, submitted_at, id")]
    whole = eta.local_etas(conn, capacity=2, now=NOW)
    assert len(whole) > 20 and eta.parallel_caps(conn) == {"capped": 1}
    for k in (1, 3, 17, len(order)):
        head = eta.local_etas(conn, capacity=2, now=NOW, order=order[:k])
        assert head == {rid: e for rid, e in whole.items() if rid in order[:k]}


def test_no_sweep_policy_and_no_experiments_table_mean_no_caps(tmp_path):
    conn = db.connect(tmp_path / "state.db")
    assert eta.parallel_caps(conn) == {}  # no table yet
    conn.execute("CREATE TABLE experiments (id TEXT PRIMARY KEY, created_at REAL NOT NULL, policy TEXT)")
    conn.execute("INSERT INTO experiments VALUES ('e', 0, '{}')")
    assert eta.parallel_caps(conn) == {}
    conn.execute("INSERT INTO experiments VALUES ('f', 0, '{\"parallel\": 3, \"max_failed\": 2}')")
    assert eta.parallel_caps(conn) == {"f": 3}
    conn.close()


def test_caps_read_in_sql_are_those_the_sweep_policies_give(tmp_path):
    from backend.engines.local import sweeps

    conn = db.connect(tmp_path / "state.db")
    sweeps.ensure_schema(conn)
    for exp, policy in {"a": '{"parallel": 2, "metric": "loss"}', "b": '{"parallel": null, "max_failed": 3}',
                        "c": '{"parallel": 0}', "d": '{}', "e": '{"metric": "acc", "goal": "maximize"}',
                        "f": '{"parallel": 1, "early_stop_min_runs": 4}'}.items():
        conn.execute("INSERT INTO experiments VALUES (?, 0, ?)", (exp, policy))
    expected = {e: p.parallel for e, p in sweeps.read_policies(conn).items() if p.parallel}
    assert eta.parallel_caps(conn) == expected == {"a": 2, "f": 1}
    conn.close()


def test_the_listing_s_lines_are_its_runs_as_lines(engine):
    """`list_lines` (what `dlaas-tui runs` shows, no Run built) gives each run's fields as `list_runs`
    does: queue positions, ETAs, live and stored costs, messages, metrics, with every filter."""
    from backend.facade import RunLine

    with db.write(engine.conn):  # queued again after an admission: its first attempt is billed, live
        engine.conn.execute("UPDATE runs SET admitted_at = ? WHERE id = 'training-l0000004'", (NOW - 900,))
        engine.conn.execute("INSERT INTO run_events (run_id, at, state, message) VALUES "
                            "('training-l0000004', ?, 'PENDING', ''), ('training-l0000004', ?, 'QUEUED', '')",
                            (NOW - 900, NOW - 300))
        engine.conn.execute("UPDATE runs SET priced = 0 WHERE id = 'training-l0000003'")  # finished, unpriced
    for states in (None, [RunState.QUEUED], sorted(TERMINAL_STATES), [RunState.PROCESSING, RunState.PENDING]):
        for limit in (None, 1, 7):
            lines = engine.list_lines(states=states, limit=limit)
            assert lines == [RunLine.of(r) for r in engine.list_runs(states=states, limit=limit)]
    lines = {line.id: line for line in engine.list_lines()}
    assert len(lines) == 180
    assert lines["training-l0000004"].cost_micro_usd > 0 and lines["training-l0000004"].queue_position
    assert any(line.eta is not None for line in lines.values()) and lines["training-l0000003"].cost_usd is None
    assert any(line.state == RunState.PROCESSING and line.cost_micro_usd for line in lines.values())
    assert lines["training-l0000000"].metrics == {"loss": 0.0} and lines["training-l0000000"].cost_usd == 0


def test_runs_prints_the_same_table_from_lines_as_from_runs(engine, monkeypatch, capsys):
    from dlaas_tui.cli import main

    monkeypatch.setattr("backend.facade.open_backend", lambda *a, **k: engine.backend)
    outs = []
    for argv in (["runs"], ["runs", "--state", "queued", "--limit", "9"]):
        assert main(argv) == 0
        outs.append(capsys.readouterr().out)
        with monkeypatch.context() as m:
            m.delattr(type(engine), "list_lines")  # an engine that lists Runs only
            assert main(argv) == 0
        assert capsys.readouterr().out == outs[-1]
    assert "behind" in outs[0] and "$" in outs[0] and "loss=" in outs[0]
