"""Finding, starting, waking and stopping the agent of a DLAAS_HOME, from any process.

The agent's flock on `agent.lock` is the truth about whether one runs (a pid file alone could be
stale after `kill -9`); `agent.pid` names it; `agent.sock` is a datagram socket that wakes it.
"""
from __future__ import annotations

import fcntl
import os
import signal
import socket
import sys
import time
from pathlib import Path


def lock_path(state_dir: Path) -> Path:
    return state_dir / "agent.lock"


def pid_path(state_dir: Path) -> Path:
    return state_dir / "agent.pid"


def sock_path(state_dir: Path) -> Path:
    return state_dir / "agent.sock"


def wake(state_dir: Path) -> None:
    """Nudge the agent to look at the queue and control requests now."""
    path = sock_path(state_dir)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            s.sendto(b"w", str(path))
    except OSError:
        pass


def agent_pid(state_dir: Path) -> int | None:
    """The running agent's pid, or None: the lock, not the pid file, says whether one runs."""
    lp = lock_path(state_dir)
    if not lp.exists():
        return None
    fd = os.open(lp, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return int(pid_path(state_dir).read_text().split()[0])
            except (OSError, ValueError, IndexError):
                return -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def ensure_agent(paths, timeout: float = 10.0, *, wait: bool = True) -> int:
    """Start the agent for this DLAAS_HOME unless one runs; returns its pid (0 if not waited for)."""
    pid = agent_pid(paths.state_dir)
    if pid and pid > 0:
        return pid
    import subprocess

    from ...paths import private_dir

    private_dir(paths.state_dir)
    env = dict(os.environ)
    if paths.state_dir == paths.config_dir / "state":  # a DLAAS_HOME layout: name it explicitly
        env["DLAAS_HOME"] = str(paths.config_dir)
    subprocess.run(
        [sys.executable, "-m", "backend.engines.local.agent", "--detach"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        cwd=str(Path(__file__).resolve().parents[3]), check=False, timeout=timeout,
    )
    if not wait:
        return 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = agent_pid(paths.state_dir)
        if pid and pid > 0:
            return pid
        time.sleep(0.02)
    from ...errors import EngineError

    raise EngineError(f"the agent did not start; see {paths.state_dir / 'agent.log'}")


def stop_agent(paths, timeout: float = 10.0) -> int | None:
    pid = agent_pid(paths.state_dir)
    if not pid or pid < 0:
        return None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and agent_pid(paths.state_dir):
        time.sleep(0.05)
    return pid
