"""Changing a queued run's priority: its place in the queue and every queue position follow."""
from __future__ import annotations

import json

import pytest

from backend.runs import RunState

from .local_helpers import get, manifest, seed_home, stop_everything, submit, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HOLD = 'while [ ! -f "$GO" ]; do sleep 0.05; done'


def wait_state(run_id: str, *states: str):
    return wait_for(lambda: (r := get(run_id)).state.value in states and r)


def test_priority_moves_a_queued_run_and_refuses_others_naming_the_run(dlaas_home, tmp_path, cli):
    seed_home(dlaas_home, '[profiles.local]\ncpu_slots = 1\n[priorities]\nurgent = 5000\n')
    go = tmp_path / "go"
    try:
        busy = submit(manifest(tmp_path, "busy", command=HOLD, gpus=0, env={"GO": str(go)}))
        wait_state(busy, "PROCESSING")
        q = [submit(manifest(tmp_path, f"q{i}", command="true", gpus=0)) for i in range(3)]
        assert [get(r).queue_position for r in q] == [1, 2, 3]
        res = cli("priority", q[2], "high", "--json")
        assert res.returncode == 0, res.stderr
        moved = json.loads(res.stdout)
        assert [(r["id"], r["priority"], r["queue_position"]) for r in moved] == [(q[2], "high", 1)]
        assert [get(r).queue_position for r in q] == [2, 3, 1]
        listed = {r["id"]: r["queue_position"] for r in json.loads(cli("runs", "--json").stdout)}
        assert [listed[r] for r in q] == [2, 3, 1]
        # a number works too, and takes the name that stands for it; the change is an event
        res = cli("priority", q[1], "5000")
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == f"{q[1]}: priority urgent, queue position 1"
        assert [get(r).queue_position for r in q] == [3, 1, 2]
        shown = json.loads(cli("show", q[1], "--json").stdout)
        assert any("priority changed from normal (0) to urgent (5000)" in (e.get("message") or "")
                   for e in shown.get("events", [])), shown.get("events")
        # not queued, unknown name: exit 2 with the run id or the known names, nothing changed
        res = cli("priority", busy, "high")
        assert res.returncode == 2 and f"{busy}: run is PROCESSING; only a queued run's priority" in res.stderr
        res = cli("priority", q[0], "hihg")
        assert res.returncode == 2 and "high (1000)" in res.stderr
        assert get(q[0]).priority == "normal"
        go.write_text("")
        for r in q:
            assert wait_state(r, "COMPLETED", "FAILED").state == RunState.COMPLETED
        # admitted in the new order: q1 (urgent), q2 (high), then q0
        assert get(q[1]).admitted_at <= get(q[2]).admitted_at <= get(q[0]).admitted_at
    finally:
        stop_everything(dlaas_home)
