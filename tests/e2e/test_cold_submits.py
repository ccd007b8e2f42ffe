"""A busy machine never loses a submission: many cold submits at once while the agent starts.

Fault injection: a fresh DLAAS_HOME (no agent, no database), every CPU held by a busy loop, and 150
`dlaas-tui submit` processes started together. Each must exit 0 with its run recorded; starting the
agent is best-effort and single-flight, so no submit waits on it or fails because of it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .local_helpers import busy_cpus, engine, manifest, seed_home, stop_everything, wait_for

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
SUBMITS = 150


@pytest.fixture
def home(dlaas_home: Path):
    seed_home(dlaas_home, "[profiles.local]\ncpu_slots = 1\n")
    yield dlaas_home
    stop_everything(dlaas_home)


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait()


def _submit_all(submits: list[subprocess.Popen], outcomes: list, path: Path, env: dict) -> None:
    for _ in range(SUBMITS):
        submits.append(subprocess.Popen(
            [sys.executable, "-m", "dlaas_tui", "submit", str(path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
            stdin=subprocess.DEVNULL))
    deadline = time.monotonic() + 600  # generous: each wait ends with its event (the exit)
    for p in submits:
        out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        outcomes.append((p.returncode, out.strip(), err.strip()))


@pytest.mark.slow
def test_cold_concurrent_submits_all_succeed_while_the_cpus_are_saturated(home, tmp_path):
    path = manifest(tmp_path, "cold", command="true")
    assert not (home / "state").exists()  # cold: no agent, no database yet
    # Bytecode cached once (as an installed app has it), so the burst measures submits, not compiling.
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    warm = subprocess.run([sys.executable, "-m", "dlaas_tui", "submit", "--dry-run", str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**env, "DLAAS_HOME": str(tmp_path / "warm-home")})
    stop_everything(tmp_path / "warm-home")  # the dry run's budget look started an agent there
    assert warm.returncode == 0, warm.stderr
    submits: list[subprocess.Popen] = []
    outcomes = []
    started = time.monotonic()
    with busy_cpus():
        try:
            _submit_all(submits, outcomes, path, env)
        finally:
            _kill(submits)
    took = time.monotonic() - started
    print(f"{SUBMITS} cold submits on a saturated machine: {took:.1f} s")

    failed = [(rc, err) for rc, _out, err in outcomes if rc != 0]
    assert not failed, f"{len(failed)} of {SUBMITS} submits failed, e.g. {failed[:3]}"
    assert not any("internal error" in err for _rc, _out, err in outcomes)
    ids = [out for _rc, out, _err in outcomes]
    assert len(set(ids)) == SUBMITS and all(i.startswith("training-") for i in ids)

    recorded = {r.id for r in engine().list_runs()}
    assert set(ids) <= recorded and len(recorded) == SUBMITS
    # One agent came up for all of them, and it takes the queued runs on.
    log = home / "state" / "agent.log"
    wait_for(lambda: log.exists() and "serving" in log.read_text())
    assert log.read_text().count(" serving ") == 1
    wait_for(lambda: any(r.state.value == "COMPLETED" for r in engine().list_runs()), interval=0.5)


def test_starting_the_agent_is_single_flight_and_never_waits_on_another_start(home, tmp_path, cli):
    import fcntl

    from backend.agentlink import control
    from backend.facade import get_paths

    paths = get_paths()
    state = paths.state_dir
    state.mkdir(parents=True)
    # Another process is starting the agent (it holds the start lock): nobody else launches one, a
    # submit does not wait for it and is recorded, and the run waits QUEUED for the agent.
    held = os.open(control.start_lock_path(state), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        assert control.starting(state)
        assert control.start_agent(paths) is False
        assert control.ensure_agent(paths, wait=False) == 0
        res = cli("submit", str(manifest(tmp_path, "held", command="true")))
        assert res.returncode == 0, res.stderr
        assert control.agent_pid(state) is None and not (state / "agent.log").exists()
        assert [r.state.value for r in engine().list_runs()] == ["QUEUED"]
    finally:
        os.close(held)  # that start "ended" without an agent
    # The next command starts it (the lock passes to the agent until it holds agent.lock) ...
    assert control.start_agent(paths) is True
    assert control.start_agent(paths) is False  # ... and a second launch meanwhile is refused
    pid = wait_for(lambda: (p := control.agent_pid(state)) and p > 0 and p)
    wait_for(lambda: not control.starting(state))
    assert control.ensure_agent(paths) == pid
    # ... and it picks up the run that was recorded while no agent ran.
    rid = res.stdout.strip()
    wait_for(lambda: engine().get_run(rid).state.value == "COMPLETED", interval=0.2)
