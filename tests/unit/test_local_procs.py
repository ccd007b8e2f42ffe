"""Run processes: the wrapper's pid and exit files, pid-reuse guard, stopping a whole group."""
from __future__ import annotations

import os
import time

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


def test_stop_group_kills_children_that_ignore_sigterm(tmp_path):
    cmd = "trap '' TERM; sleep 30 & sleep 30"
    lr = launch(1, cmd, cwd=tmp_path, env=dict(os.environ), log_file=tmp_path / "log.txt",
                state_base=tmp_path / "s" / "l1", pass_fds=())
    time.sleep(0.3)
    stop_group([lr], grace=0.5)
    assert not lr.alive() and not group_exists(lr.pid)
    assert lr.exit_code() in (128 + 15, 128 + 9)  # killed by a signal, reported shell-style
