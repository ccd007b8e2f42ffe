"""Processes of a run: start one learner, tell whether it is still the same process, stop its group.

Each learner runs as `sh -c WRAPPER` in its own session (so its own process group). The wrapper
writes its pid before running the command and the command's exit status after, each by
temp + rename, so an agent that restarts can tell "started", "running" and "finished with N" apart
without having been the parent. A pid alone is not trusted: the kernel's start time from
/proc/PID/stat must also match, which guards against the pid being reused by another program.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

STARTED_WAIT_S = 10.0

# $0 = state file base, $1 = the user's command.
WRAPPER = (
    'echo $$ > "$0.pid.tmp" && mv "$0.pid.tmp" "$0.pid"; '
    'sh -c "$1"; rc=$?; '
    'echo $rc > "$0.exit.tmp" && mv "$0.exit.tmp" "$0.exit"; exit $rc'
)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass
class Learner:
    index: int  # 1-based, as LEARNER_ID and the learner-N folders
    pid: int
    start: int | None
    state_base: Path  # <base>.pid / <base>.exit
    popen: subprocess.Popen | None = None

    def to_json(self) -> dict:
        return {"learner": self.index, "pid": self.pid, "start": self.start, "base": str(self.state_base)}

    @classmethod
    def from_json(cls, d: dict) -> Learner:
        return cls(d["learner"], d["pid"], d.get("start"), Path(d["base"]))

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.start is not None and start_time(self.pid) == self.start

    def exit_code(self) -> int | None:
        """The command's exit status from the wrapper's file; None if it never got to write it."""
        try:
            return int(Path(f"{self.state_base}.exit").read_text().strip())
        except (OSError, ValueError):
            if self.popen is not None and self.popen.returncode is not None and self.popen.returncode < 0:
                return 128 - self.popen.returncode  # killed by a signal, shell-style
            return None

    def signal_group(self, sig: int) -> None:
        if not self.alive():
            return
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def launch(index: int, command: str, *, cwd: Path, env: dict[str, str], log_file: Path,
           state_base: Path, pass_fds: tuple[int, ...], prefix: tuple[str, ...] = ()) -> Learner:
    """Start the wrapper in its own session; `prefix` is a program that sets up and execs it
    (the read-only data helper), so the learner's pid is the wrapper's all the same."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    state_base.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        popen = subprocess.Popen(
            [*prefix, "sh", "-c", WRAPPER, str(state_base), command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=pass_fds,
        )
    learner = Learner(index, popen.pid, start_time(popen.pid), state_base, popen)
    # Started means the wrapper wrote its pid (a prefix takes a moment to exec it): an agent that
    # dies after this call finds the pid file and adopts the learner, never starts it twice.
    deadline = time.monotonic() + STARTED_WAIT_S
    while not was_started(state_base) and popen.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    return learner


def was_started(state_base: Path) -> bool:
    return Path(f"{state_base}.pid").exists() or Path(f"{state_base}.exit").exists()


def stop_group(learners: list[Learner], grace: float = 10.0) -> None:
    """SIGTERM every learner's group, wait up to `grace` seconds, then SIGKILL what is left."""
    for lr in learners:
        lr.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(lr.alive() for lr in learners):
        time.sleep(0.1)
    for lr in learners:
        if lr.alive():
            lr.signal_group(signal.SIGKILL)
    # Children of the wrapper may outlive it briefly; the group id stays valid until they go.
    for lr in learners:
        try:
            os.killpg(lr.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    end = time.monotonic() + 5
    while time.monotonic() < end and any(lr.alive() or group_exists(lr.pid) for lr in learners):
        time.sleep(0.05)


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
