"""A listing reads its rows by position (rows.listing_row_to_run): the same runs as by name (row_to_run)."""
from __future__ import annotations

import random

from backend.engines.local.rows import LIST_COLUMNS, LIST_NAMES, listing_row_to_run, row_to_run
from backend.ledger import db

STATES = ("QUEUED", "PENDING", "PROCESSING", "COMPLETED", "FAILED", "HALTED", "STORING")


def _ledger(tmp_path, n: int = 60):
    conn = db.connect(tmp_path / "state.db")
    rnd = random.Random(7)
    with db.write(conn):
        seq = db.next_seq(conn)
        for i in range(n):
            state = rnd.choice(STATES)
            spec = {"command": "true"}
            if rnd.random() < 0.5:
                spec["depends_on"] = [f"training-dep{j}" for j in range(rnd.randint(0, 2))]
            if rnd.random() < 0.5:
                spec["manifest_name"] = f"m{i}"
            if rnd.random() < 0.5:
                spec["max_duration_s"] = rnd.choice([60, 90.5, 3600])
            db.insert_run(conn, {
                "id": f"training-row{i:04d}", "name": f"n-{i}", "profile": "local", "state": state,
                "experiment": rnd.choice([None, "exp"]), "priority": rnd.choice(["low", "normal", "high"]),
                "prio": rnd.randint(-5, 5), "submitted_at": 1_800_000_000 + i * 7.25, "gpus": rnd.randint(0, 4),
                "learners": rnd.randint(1, 3), "gpu_type": rnd.choice([None, "H100"]), "spec": spec,
                "results_bucket": rnd.choice([None, "b"]),
                "metrics": rnd.choice([{}, {"loss": 0.25, "acc": 0.9}]),
                "primary_metric": rnd.choice([None, "loss"]), "params": rnd.choice([{}, {"lr": 0.1}]),
                "metric_goal": rnd.choice(["minimize", "maximize"]),
            }, seq)
            if state != "QUEUED":
                db.set_fields(conn, f"training-row{i:04d}", {
                    "admitted_at": 1_800_000_000 + i * 7.25 + 3, "started_at": 1_800_000_000 + i * 7.25 + 4,
                    "finished_at": rnd.choice([None, 1_800_000_000 + i * 7.25 + 60]),
                    "labels": rnd.choice([[], ["gpu:0", "gpu:1"]]), "error_code": rnd.choice([None, "E1"]),
                    "message": rnd.choice(["", "why"]), "cost_micro": rnd.choice([None, 833]),
                })
    return conn


def test_the_names_are_the_listing_columns_in_order(tmp_path):
    conn = db.connect(tmp_path / "state.db")
    cur = conn.execute(f"SELECT {LIST_COLUMNS} FROM runs")
    assert tuple(d[0] for d in cur.description) == LIST_NAMES


def test_by_position_and_by_name_give_the_same_run(tmp_path):
    conn = _ledger(tmp_path)
    rows = conn.execute(f"SELECT {LIST_COLUMNS} FROM runs").fetchall()
    assert len(rows) == 60
    for k, row in enumerate(rows):
        position = k if row["state"] == "QUEUED" else None
        for approximate in (False, True):
            fast = listing_row_to_run(row, 1234, position, approximate)
            slow = row_to_run(row, cost=1234, position=position, approximate=approximate)
            assert fast == slow and fast.to_json() == slow.to_json(), row["id"]


def test_the_line_positions_read_by_name_are_the_line_columns(tmp_path):
    from backend.engines.local.rows import L_ADMITTED, L_ID, L_STATE, LINE_COLUMNS

    conn = db.connect(tmp_path / "state.db")
    names = [d[0] for d in conn.execute(f"SELECT {LINE_COLUMNS} FROM runs").description]
    assert (names[L_ID], names[L_STATE], names[L_ADMITTED]) == ("id", "state", "admitted_at")
