"""The agent's entry point, `python -m backend.agent` (backend/agentlink/control.py launches it;
`--detach` double-forks).

A program of its own, like the CLI: it opens the home's backend through backend.facade and hands the
opener to the Agent (agent.py), which runs both engines' background work.
"""
from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from ..ledger import db
from ..runs import iso, utcnow
from .agent import Agent, log
from ..agentlink.control import lock_path, pid_path, release_start_lock, sock_path, submit_sock_path


def _detach(log_file: Path, pid_file: Path) -> None:
    """Double fork: own session, no controlling terminal, not a child of whoever started us.

    The caller already holds the agent lock; fork keeps it held throughout. The first process waits
    for the middle one, which writes the final pid before exiting, so whoever launched the agent
    finds the lock held and the pid file true the moment the launcher returns.
    """
    from ..paths import write_private

    middle = os.fork()
    if middle > 0:
        os.waitpid(middle, 0)
        os._exit(0)
    os.setsid()
    final = os.fork()
    if final > 0:
        write_private(pid_file, f"{final}\n")
        os._exit(0)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(null)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dlaas-agent")
    parser.add_argument("--detach", action="store_true")
    args = parser.parse_args(argv)
    from ..facade import open_backend
    from ..paths import get_paths, private_dir

    paths = get_paths()
    private_dir(paths.state_dir)
    here = str(Path(__file__).resolve().parents[2])
    if here not in sys.path:
        sys.path.insert(0, here)
    lock_fd = os.open(lock_path(paths.state_dir), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another agent already serves this DLAAS_HOME
    finally:
        release_start_lock()  # whoever launched us: the start is decided either way
    from ..paths import write_private

    # The database and the wake-up socket are in place before the pid file names us, so whoever sees
    # the pid finds both (the connection itself is made after the fork: SQLite's rule).
    try:
        db.connect(paths.db_file).close()
    except Exception as exc:  # a damaged database: say so where `agent start` points, then leave
        with open(paths.state_dir / "agent.log", "a") as fh:
            fh.write(f"{iso(utcnow())} ERROR agent cannot start: {exc}\n")
        return 1
    sp = sock_path(paths.state_dir)
    sock: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sp.unlink(missing_ok=True)
        sock.bind(str(sp))
        os.chmod(sp, 0o600)
    except OSError:  # a path too long for a unix socket: fall back to polling
        sock.close()
        sock = None
    from .submit_door import SubmitDoor, listen

    door_sock = listen(paths.state_dir)  # `submit` hands its request over here (agentlink/handoff.py)
    if args.detach:
        _detach(paths.state_dir / "agent.log", pid_path(paths.state_dir))
    else:
        write_private(pid_path(paths.state_dir), f"{os.getpid()}\n")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    backend = open_backend()
    agent = Agent(backend, open_backend)

    def on_term(signum, frame):
        agent.stopping.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    log.info("agent %d serving %s", os.getpid(), paths.state_dir)
    door = SubmitDoor(door_sock, Path(here)) if door_sock is not None else None
    if door is not None:
        door.start()
    agent.reclaim_leftovers()
    agent.recover()
    served = os.fstat(lock_fd)

    def still_home() -> bool:
        """The lock file we hold is still the home's (a deleted or recreated home has another, or none)."""
        try:
            now = os.stat(lock_path(paths.state_dir))
        except OSError:
            return False
        return (now.st_dev, now.st_ino) == (served.st_dev, served.st_ino)

    try:
        agent.loop(sock, still_home)
    finally:
        log.info("agent %d stopping", os.getpid())
        agent.kube.stop()
        agent.notices.stop()
        if door is not None:
            door.stop()  # its worker exits once the request in hand is answered
        if still_home():  # else these names are another agent's, in the home made since
            pid_path(paths.state_dir).unlink(missing_ok=True)
            if sock is not None:
                sp.unlink(missing_ok=True)
            if door is not None:
                submit_sock_path(paths.state_dir).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
