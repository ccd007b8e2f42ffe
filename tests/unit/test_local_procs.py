"""Run processes: the wrapper's pid and exit files, pid-reuse guard, stopping a whole group."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from backend.engines.local.procs import Learner, group_exists, launch, start_time, stop_group


def _wait(lr: Learner, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while lr.alive() and time.monotonic() < end:
        time.sleep(0.02)


def test_wrapper_records_pid_and_exit_status(tmp_path):
    lr = launch(1, "echo hello; exit 7", cwd=tmp_path, env=dict(os.environ), log_file=tmp_path / "log.txt",
                state_base=tmp_path / "state" / "learner-1", pass_fds=())
    _wait(lr)
    assert lr.exit_code() == 7
    assert int((tmp_path / "state" / "learner-1.pid").read_text()) == lr.pid
    assert (tmp_path / "log.txt").read_text() == "hello\n"


def test_a_reused_pid_is_not_mistaken_for_the_run(tmp_path):
    me = start_time(os.getpid())
    assert me is not None
    assert Learner(1, os.getpid(), me, tmp_path / "x").alive()
    assert not Learner(1, os.getpid(), me + 1, tmp_path / "x").alive()  # same pid, another start
    assert not Learner(1, 2**22 + 12345, me, tmp_path / "x").alive()


def _ignores_sigterm(pid: int) -> bool:
    """Whether the kernel has SIGTERM ignored for `pid` (the SigIgn mask in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    raise AssertionError(f"no SigIgn line for pid {pid}")


def test_stop_group_kills_children_that_ignore_sigterm(tmp_path):
    # The command ignores TERM, and so does its child (an ignored signal stays ignored across fork
    # and exec); the child names itself only once it runs, so the test waits for that, not a time.
    armed = tmp_path / "child.pid"
    cmd = (f"trap '' TERM; sh -c 'echo $$ > \"{armed}.tmp\" && mv \"{armed}.tmp\" \"{armed}\"; exec sleep 30' & "
           "sleep 30")
    lr = launch(1, cmd, cwd=tmp_path, env=dict(os.environ), log_file=tmp_path / "log.txt",
                state_base=tmp_path / "s" / "l1", pass_fds=())
    deadline = time.monotonic() + 30
    while not armed.exists():
        assert time.monotonic() < deadline and lr.alive(), "the command never started its child"
        time.sleep(0.02)
    child = int(armed.read_text())
    assert _ignores_sigterm(child)  # the trap is set: SIGTERM alone cannot end this child
    started = start_time(child)
    assert started is not None
    stop_group([lr], grace=0.5)
    assert not lr.alive() and not group_exists(lr.pid)
    assert start_time(child) != started  # gone: only the SIGKILL can have ended it
    # The wrapper itself traps nothing: it ended on the SIGTERM, reported shell-style.
    assert lr.exit_code() == 128 + signal.SIGTERM
