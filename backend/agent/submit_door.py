"""In the agent: `submit.sock` and the thread that starts the submission worker
(backend/agentlink/handoff.py has the protocol and the CLI's side; submit_worker.py is the worker)."""
from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..agentlink.control import submit_sock_path
from ..agentlink.handoff import COOL_S, LIFELINE_FD_ENV, LISTEN_FD_ENV

log = logging.getLogger("dlaas.agent")


def listen(state_dir: Path) -> socket.socket | None:
    """The agent's listening `submit.sock` (0600), or None where it cannot be made (a path too long
    for a unix socket): every submit then runs in its own process, as it always could."""
    path = submit_sock_path(state_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        path.unlink(missing_ok=True)
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(128)
    except OSError:
        sock.close()
        return None
    return sock


class SubmitDoor:
    """In the agent: a thread that starts the submission worker when a connection waits on
    `submit.sock` and none is alive; it never reads a request itself (the worker accepts them)."""

    def __init__(self, sock: socket.socket, root: Path) -> None:
        self.sock = sock
        self.root = root  # the checkout the worker imports (the agent's own)
        self.proc: subprocess.Popen | None = None
        self.lifeline: socket.socket | None = None  # EOF: the worker ended (it holds the other end)
        self.cool_until = 0.0
        self._stop_r, self._stop_w = os.pipe()
        self.thread = threading.Thread(target=self._run, name="dlaas-submit-door", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop watching; the worker sees its lifeline close and exits once its request is done."""
        os.write(self._stop_w, b"x")
        self.thread.join(timeout=10)
        if self.lifeline is not None:
            self.lifeline.close()
        self.sock.close()

    @property
    def worker_pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _run(self) -> None:
        while True:
            watch = [self._stop_r, self.lifeline if self.proc is not None else self.sock]
            ready, _, _ = select.select(watch, [], [])
            if self._stop_r in ready:
                return
            try:
                if self.proc is not None:
                    self._reap()
                elif time.monotonic() < self.cool_until:
                    self._turn_away()
                else:
                    self._start_worker()
            except Exception:  # never let the door die with the agent still serving
                log.exception("submission worker handling failed")
                self.cool_until = time.monotonic() + COOL_S

    def _start_worker(self) -> None:
        ours, theirs = socket.socketpair()
        env = {**os.environ, LISTEN_FD_ENV: str(self.sock.fileno()), LIFELINE_FD_ENV: str(theirs.fileno())}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "backend.agent.submit_worker"], stdin=subprocess.DEVNULL, env=env,
                cwd=str(self.root), pass_fds=(self.sock.fileno(), theirs.fileno()))
        except OSError as exc:
            ours.close()
            log.error("submission worker not started: %s; submits run in their own processes", exc)
            self.cool_until = time.monotonic() + COOL_S
            return
        finally:
            theirs.close()
        self.lifeline = ours
        log.info("submission worker %d started", self.proc.pid)

    def _reap(self) -> None:
        assert self.proc is not None and self.lifeline is not None
        rc = self.proc.wait()  # its end of the lifeline closed: it has exited, or is exiting
        self.lifeline.close()
        self.proc, self.lifeline = None, None
        if rc != 0:
            log.error("submission worker exited with status %s; for %.0f s submits run in their own "
                      "processes", rc, COOL_S)
            self.cool_until = time.monotonic() + COOL_S

    def _turn_away(self) -> None:
        """Close a waiting connection unanswered: its CLI submits in its own process at once."""
        self.sock.setblocking(False)
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        finally:
            self.sock.setblocking(True)
        conn.close()
