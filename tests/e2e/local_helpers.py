"""Helpers for tests that drive the real local agent: homes, manifests, and cleanup by pid."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

TINY = Path(__file__).resolve().parent.parent / "fixtures" / "tiny"
# The bound on a wait for an event (a state reached, a process gone). Generous on purpose: the wait
# ends when the event comes, so a machine loaded by other work makes a test slower, never red.
WAIT_S = 300


def seed_home(home: Path, config: str = "") -> None:
    data = home / "store" / "tiny-data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "numbers.txt").write_text("1 2 3\n")
    if config:
        (home / "config.toml").write_text(config)
        os.chmod(home / "config.toml", 0o600)


def manifest(tmp: Path, name: str = "tiny", *, command: str | None = None, env: dict | None = None,
             **fields) -> Path:
    """A copy of the tiny sample's manifest with overrides, next to a link to its model folder."""
    doc = yaml.safe_load((TINY / "manifest.yaml").read_text())
    doc["name"] = name
    if command is not None:
        doc["framework"]["command"] = command
    if env:
        doc["env"] = env
    doc.update(fields)
    folder = tmp / f"m-{name}-{len(list(tmp.iterdir())) if tmp.exists() else 0}"
    folder.mkdir(parents=True)
    (folder / "model").symlink_to(TINY / "model", target_is_directory=True)
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def agent_pid(home: Path) -> int | None:
    from backend.agentlink.control import agent_pid as pid_of

    pid = pid_of(home / "state")
    return pid if pid and pid > 0 else None


def submit_worker_pids(agent: int | None) -> list[int]:
    """The agent's submission worker (backend/agent/submit_worker.py): its children running it."""
    out = []
    for children in Path(f"/proc/{agent}/task").glob("*/children") if agent and agent > 0 else ():
        try:
            pids = [int(p) for p in children.read_text().split()]
        except OSError:
            continue
        for pid in pids:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"backend.agent.submit_worker" in cmdline:
                out.append(pid)
    return out


def run_pids(home: Path) -> list[int]:
    out = []
    for f in (home / "state" / "runs").glob("*/state/learner-*.pid"):
        try:
            out.append(int(f.read_text().strip()))
        except (OSError, ValueError):
            pass
    return out


def stop_everything(home: Path) -> None:
    """Kill the home's agent and every run process group it started (by pid, never by name).
    A start still under way (a command launched it without waiting) is waited out first."""
    from backend.agentlink.control import settled_pid

    settled_pid(home / "state", timeout=WAIT_S)
    pid = agent_pid(home)
    workers = submit_worker_pids(pid) if pid and pid > 0 else []
    for p in ([pid] if pid and pid > 0 else []) + workers:  # never -1: kill(-1) signals every process we may
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for rp in run_pids(home):
        try:
            os.killpg(rp, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + WAIT_S
    while pid and pid > 0 and time.monotonic() < deadline and agent_pid(home):
        time.sleep(0.05)


def wait_for(pred, timeout: float = WAIT_S, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def engine():
    from backend.facade import open_backend

    return open_backend().engine



def submit(path: Path, **kw) -> str:
    """Submit one manifest through an engine of this process; the first run's id."""
    from backend.runs import SubmitRequest

    eng = engine()
    try:
        return eng.submit(SubmitRequest(manifests=[path], **kw))[0].id
    finally:
        eng.close()


def get(run_id: str):
    eng = engine()
    try:
        return eng.get_run(run_id)
    finally:
        eng.close()

def runs_json(cli, *args) -> list[dict]:
    res = cli("runs", "--json", *args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@contextmanager
def busy_cpus(extra: int = 0) -> Iterator[list[int]]:
    """Fault injection: a busy loop on every CPU (plus `extra`) for the duration; stopped by pid."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
             for _ in range(max(2, os.cpu_count() or 2) + extra)]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
