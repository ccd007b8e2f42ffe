"""[notify] through the real agent: runs and a sweep end on the local engine, and the agent (with no
TUI open) runs the configured script and POSTs to a webhook on 127.0.0.1 (started and stopped here)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_notify import Hook

from .local_helpers import manifest, seed_home, stop_everything, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def hook():
    server = Hook()
    yield server
    server.stop()


@pytest.fixture
def home(dlaas_home: Path, hook, tmp_path):
    script = tmp_path / "on-end.sh"
    log = tmp_path / "ended.txt"
    script.write_text(f'#!/bin/sh\necho "$DLAAS_EVENT $DLAAS_RUN_ID $DLAAS_STATE $DLAAS_EXPERIMENT" >> "{log}"\n')
    script.chmod(0o755)
    seed_home(dlaas_home, "[profiles.local]\ncpu_slots = 2\n"
                          f'[notify]\ncommand = "{script}"\nwebhook = "{hook.url}"\ntimeout_seconds = 5\n')
    yield dlaas_home
    stop_everything(dlaas_home)


def _cursor_set(home: Path) -> bool:
    from backend.ledger import db

    conn = db.connect(home / "state" / "state.db")
    try:
        return conn.execute("SELECT 1 FROM counter WHERE k = 'notified'").fetchone() is not None
    finally:
        conn.close()


def test_agent_notifies_each_run_and_the_sweep_when_they_end(home, hook, cli, tmp_path):
    assert cli("agent", "start").returncode == 0
    wait_for(lambda: _cursor_set(home))  # the agent has taken its first look
    solo = json.loads(cli("submit", str(manifest(tmp_path, "solo")), "--json").stdout)[0]["id"]
    # One submit, two runs under one experiment: the sweep ends when both have.
    ok, bad = (r["id"] for r in json.loads(cli(
        "submit", str(manifest(tmp_path, "ok")), str(manifest(tmp_path, "bad", env={"EXIT_CODE": "3"})),
        "--experiment", "e2e", "--json").stdout))
    res = cli("wait", solo, ok, bad, "--timeout", "120")
    assert res.returncode == 1, res.stdout  # one of them failed, as planned

    wait_for(lambda: len(hook.got) >= 4)
    docs = [g["json"] for g in hook.got]
    runs = {d["run"]["id"]: d for d in docs if d["event"] == "run.ended"}
    assert set(runs) == {solo, ok, bad}
    assert runs[bad]["state"] == "FAILED" and runs[bad]["run"]["error_code"] == "C201"
    assert runs[ok]["run"]["name"] == "ok" and runs[ok]["experiment"] == "e2e"
    (sweep,) = [d for d in docs if d["event"] == "sweep.ended"]
    assert sweep["sweep"]["experiment"] == "e2e" and sweep["state"] == "FAILED"
    assert sweep["sweep"]["states"] == {"COMPLETED": 1, "FAILED": 1}
    assert sorted(sweep["sweep"]["runs"]) == sorted([ok, bad])

    ended = tmp_path / "ended.txt"
    wait_for(lambda: ended.exists() and len(ended.read_text().splitlines()) >= 4)
    lines = sorted(ended.read_text().splitlines())
    assert f"run.ended {bad} FAILED e2e" in lines and f"run.ended {solo} COMPLETED " in lines
    assert "sweep.ended  FAILED e2e" in lines
    assert len(hook.got) == 4  # each said once
