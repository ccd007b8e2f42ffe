"""Finding, starting, waking and stopping the agent of a DLAAS_HOME, from any process.

The agent's flock on `agent.lock` is the truth about whether one runs (a pid file alone could be
stale after `kill -9`); `agent.pid` names it; `agent.sock` is a datagram socket that wakes it;
`submit.sock` is a stream socket a `submit` hands its request to (handoff.py).

Starting it is best-effort and single-flight: whoever takes the flock on `agent.start.lock` launches
the agent and hands that lock to it (the agent lets go once it holds `agent.lock`, or exits); every
other process finds the start under way and goes on at once. Nothing a command has recorded depends on
the start: the agent picks queued runs and halt requests up from the database whenever it is up.
"""
from __future__ import annotations

import fcntl
import os
import sys
import time

from ..paths import exists

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~2.5 ms) on the CLI's path
if TYPE_CHECKING:
    from pathlib import Path

# The files of the agent, in the state folder. Every command looks for the agent (`runs` too), so
# these are found here as strs: pathlib (~4 ms with what it imports) is not loaded for that. The
# `*_path` functions hand them out as Paths.
LOCK = "agent.lock"
PID = "agent.pid"
SOCK = "agent.sock"
SUBMIT_SOCK = "submit.sock"
START_LOCK = "agent.start.lock"


def _in(state_dir: Path | str, name: str) -> str:
    return os.path.join(state_dir, name)


def _path(state_dir: Path | str, name: str) -> Path:
    from pathlib import Path

    return Path(state_dir, name)


def lock_path(state_dir: Path | str) -> Path:
    return _path(state_dir, LOCK)


def pid_path(state_dir: Path | str) -> Path:
    return _path(state_dir, PID)


def sock_path(state_dir: Path | str) -> Path:
    return _path(state_dir, SOCK)


def submit_sock_path(state_dir: Path | str) -> Path:
    """The stream socket `submit` hands its request to (handoff.py): the agent's submission worker
    answers it."""
    return _path(state_dir, SUBMIT_SOCK)


def start_lock_path(state_dir: Path | str) -> Path:
    return _path(state_dir, START_LOCK)


# The agent learns which inherited descriptor holds the start lock from this variable.
START_FD_ENV = "DLAAS_AGENT_START_FD"


def wake(state_dir: Path | str) -> None:
    """Nudge the agent to look at the queue and control requests now."""
    import socket  # here: a listing reads the state without waking anyone

    path = _in(state_dir, SOCK)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            s.sendto(b"w", path)
    except OSError:
        pass


def agent_pid(state_dir: Path | str) -> int | None:
    """The running agent's pid, or None: the lock, not the pid file, says whether one runs; -1 while
    one runs whose pid is not known yet (its pid file is not written, or still names a dead agent)."""
    lp = _in(state_dir, LOCK)
    if not exists(lp):
        return None
    fd = os.open(lp, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                with open(_in(state_dir, PID)) as fh:
                    pid = int(fh.read().split()[0])
            except (OSError, ValueError, IndexError):
                return -1
            from backend.store.files import process_alive

            # A new agent holds the lock a moment before its pid file names it: the file may still
            # name the agent before it (killed). Never hand that pid out to be signalled.
            return pid if pid > 0 and process_alive(pid) else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def starting(state_dir: Path | str) -> bool:
    """True while some process is launching the agent (it holds the start lock)."""
    lp = _in(state_dir, START_LOCK)
    try:
        fd = os.open(lp, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def start_agent(paths) -> bool:
    """Launch the agent unless one runs or another process is launching it; never waits for it.

    Returns True when this call launched one. Any failure to launch is swallowed: the caller's work
    is already recorded and the next command (or `agent start`) tries again.
    """
    import subprocess

    from ..paths import private_dir

    state_dir = paths.state_dir_str
    pid = agent_pid(state_dir)
    if pid:  # running (or holding its lock while it writes its pid file)
        return False
    try:
        private_dir(state_dir)
        fd = os.open(_in(state_dir, START_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # another process is starting it
        if agent_pid(state_dir):  # it came up while we took the lock
            return False
        env = dict(os.environ)
        env[START_FD_ENV] = str(fd)
        if state_dir == os.path.join(paths.config_dir_str, "state"):  # a DLAAS_HOME layout: name it explicitly
            env["DLAAS_HOME"] = paths.config_dir_str
        try:
            launcher = subprocess.Popen(
                [sys.executable, "-m", "backend.agent", "--detach"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))),
                pass_fds=(fd,), start_new_session=True,
            )
        except OSError:
            return False
        # Nobody waits for the launcher: a daemon thread reaps it if this process lives that long (the
        # TUI); a command that exits first leaves it to init.
        import threading

        threading.Thread(target=launcher.wait, name="dlaas-agent-launcher", daemon=True).start()
        return True
    finally:
        os.close(fd)  # the launched agent keeps the start lock through its inherited copy


def release_start_lock() -> None:
    """In the agent: let go of the start lock it inherited (it holds `agent.lock`, or is leaving)."""
    raw = os.environ.pop(START_FD_ENV, None)
    if raw is None:
        return
    try:
        os.close(int(raw))
    except (OSError, ValueError):
        pass


def ensure_agent(paths, timeout: float = 60.0, *, wait: bool = True) -> int:
    """Start the agent for this DLAAS_HOME unless one runs; returns its pid (0 if not waited for).

    `wait=False` is the best-effort start every command makes: it never blocks and never fails.
    `wait=True` (`agent start`) waits, with a generous bound, for whichever start is under way.
    """
    pid = agent_pid(paths.state_dir_str)
    if pid and pid > 0:
        return pid
    start_agent(paths)
    if not wait:
        return 0
    from ..errors import EngineError

    log = os.path.join(paths.state_dir_str, "agent.log")
    launches = 1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = agent_pid(paths.state_dir_str)
        if pid and pid > 0:
            return pid
        if not pid and not starting(paths.state_dir_str):
            # The start under way (ours or another's) ended with no agent: one more try, then say so.
            if launches >= 3:
                raise EngineError(f"the agent exited while starting; see {log}")
            launches += start_agent(paths)
        time.sleep(0.05)
    raise EngineError(f"the agent did not start within {timeout:.0f} s; see {log}")


def settled_pid(state_dir: Path | str, timeout: float = 60.0) -> int | None:
    """The agent's pid once no start is under way (None: none runs). A start launched a moment ago
    by another command is waited out, so whoever stops the agent does not miss one coming up."""
    deadline = time.monotonic() + timeout
    while True:
        pid = agent_pid(state_dir)
        if (pid is None or pid > 0) and not starting(state_dir):
            return pid
        if time.monotonic() > deadline:
            return pid if pid and pid > 0 else None
        time.sleep(0.02)


def stop_agent(paths, timeout: float = 10.0) -> int | None:
    pid = settled_pid(paths.state_dir_str, timeout=max(timeout, 60.0))
    if not pid or pid < 0:
        return None
    import signal  # here: `runs` and every command find the agent without it

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and agent_pid(paths.state_dir_str):
        time.sleep(0.05)
    return pid
