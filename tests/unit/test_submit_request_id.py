"""A submit's request id (SubmitRequest.request_id): recorded in every run's spec of that submit, in
the one transaction that inserts them, and found again by it (LocalEngine.recorded_submit) - how the
CLI learns what a submission worker that ended without answering had recorded
(backend/agentlink/handoff.py). It is never part of what a run shows.

Who sets one: the CLI, for every `dlaas-tui submit` that is not a dry run, whichever process records
it (the agent's worker, or the CLI's own). A submit made through the engine without one (the TUI's
editor, scripts, tests) records no id at all.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import backend.engines.local.engine as local_engine
from backend import clock
from backend.facade import SubmitRequest, open_backend
from backend.ledger import db

TINY_MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "tiny" / "model"
SWEEP = """\
name: rid
gpus: 0
data_stores:
  - id: local
    type: local
    training_data: {container: rid-data}
    training_results: {container: rid-results}
framework:
  name: python
  command: python train.py --lr ${lr}
sweep:
  parameters:
    lr: {values: [0.1, 0.01]}
"""
RID = "0123456789abcdef01234567"


@pytest.fixture
def engine(dlaas_home, monkeypatch):
    (dlaas_home / "config.toml").write_text("[profiles.local]\ncpu_slots = 2\n")
    (dlaas_home / "config.toml").chmod(0o600)
    monkeypatch.setattr(local_engine, "ensure_agent", lambda *a, **k: 0)  # no agent: nothing to stop after
    previous = clock.set_clock(clock.FrozenClock(clock.time()))  # a queued run's ETA is read against now
    backend = open_backend()
    yield backend.engine
    backend.close()
    clock.set_clock(previous)


@pytest.fixture
def sweep(tmp_path) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP)
    return path


def _specs(engine) -> dict[str, dict]:
    return {rid: db.get_row(engine.conn, rid)["spec"] for (rid,) in engine.conn.execute("SELECT id FROM runs")}


def test_every_run_of_a_sweep_carries_the_submits_request_id_and_is_found_by_it(engine, sweep):
    runs = engine.submit(SubmitRequest(manifests=[sweep], model=TINY_MODEL, request_id=RID))
    assert len(runs) == 2
    specs = _specs(engine)
    assert set(specs) == {r.id for r in runs}
    assert [specs[r.id]["request_id"] for r in runs] == [RID, RID]
    # Found again by it, in the submit's order and as the submit returned them (positions included).
    found = engine.recorded_submit(RID)
    assert [r.to_json() for r in found] == [r.to_json() for r in runs]
    assert json.loads((engine.paths.state_dir / "last-submit.json").read_text()) == [r.id for r in runs]
    assert engine.recorded_submit("ffffffffffffffffffffffff") == []
    # Never shown: not in a run's document (what `runs --json`, `show` and the sealed JSON are made of).
    assert all(RID not in json.dumps(r.to_json()) for r in found)


def test_a_submit_without_a_request_id_records_none_and_a_dry_run_records_nothing(engine, sweep):
    dry = engine.submit(SubmitRequest(manifests=[sweep], model=TINY_MODEL, dry_run=True, request_id=RID))
    assert len(dry) == 2 and _specs(engine) == {}
    assert engine.recorded_submit(RID) == []
    runs = engine.submit(SubmitRequest(manifests=[sweep], model=TINY_MODEL))
    assert [("request_id" in s) for s in _specs(engine).values()] == [False, False]
    assert engine.recorded_submit(RID) == [] and len(runs) == 2


def test_a_rerun_is_not_part_of_the_submit_it_copies(engine, sweep):
    first, _ = engine.submit(SubmitRequest(manifests=[sweep], model=TINY_MODEL, request_id=RID))
    again = engine.rerun(first.id)
    assert "request_id" not in db.get_row(engine.conn, again[0].id)["spec"]
    assert again[0].id not in [r.id for r in engine.recorded_submit(RID)]


@pytest.mark.slow  # it starts a process (to watch it end)
@pytest.mark.parametrize("with_pidfd", [True, False])
def test_a_worker_is_seen_gone_once_it_exits_even_before_it_is_reaped(with_pidfd):
    """What the CLI waits on after a lost answer (handoff._wait_gone): through a pidfd where there is
    one, else by polling the pid (an exited, unreaped process counts as gone)."""
    from backend.agentlink.handoff import _pidfd, _wait_gone

    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    pidfd = _pidfd(child.pid) if with_pidfd else None
    try:
        assert (pidfd is not None) == with_pidfd
        assert _wait_gone(child.pid, pidfd, 0.2) is False  # alive: the bound is what ends the wait
        child.send_signal(signal.SIGKILL)
        assert _wait_gone(child.pid, pidfd, 300) is True  # a zombie until child.wait() below
        assert child.poll() == -signal.SIGKILL
    finally:
        if pidfd is not None:
            os.close(pidfd)
        if child.poll() is None:
            child.kill()
        child.wait()
