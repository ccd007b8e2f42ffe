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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STARTED_WAIT_S = 10.0

# $0 = state file base, $1 = the user's command, $2 = the memory limit in KiB for RLIMIT_DATA (or "").
WRAPPER = (
    'if [ -n "$2" ]; then ulimit -d "$2" 2>/dev/null || :; fi; '
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
           state_base: Path, pass_fds: tuple[int, ...], prefix: tuple[str, ...] = (),
           cores: tuple[int, ...] = (), memory: int = 0, memory_mode: str = "rlimit") -> Learner:
    """Start the wrapper in its own session; `prefix` is a program that sets up and execs it
    (the read-only data helper), so the learner's pid is the wrapper's all the same. The learner
    is pinned to `cores` (if any) and held to `memory` bytes (if any), by an RLIMIT_DATA on its
    shell or, with memory_mode "cgroup", in its own systemd scope."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    state_base.parent.mkdir(parents=True, exist_ok=True)
    argv = [*prefix, "sh", "-c", WRAPPER, str(state_base), command,
            str(max(1, memory // 1024)) if memory and memory_mode == "rlimit" else ""]
    if memory and memory_mode == "cgroup":
        from .limits import scope_prefix

        argv = scope_prefix(memory) + argv
    with open(log_file, "ab") as log, _pinned(cores):
        # Affinity is per thread on Linux and a child inherits its parent thread's: pinning this
        # thread around the fork pins the learner before it runs anything (no race), and the
        # agent's other threads are untouched.
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=pass_fds,
        )
    if cores:
        try:
            os.sched_setaffinity(popen.pid, cores)
        except OSError:
            pass  # already gone: its exit is read as usual
    learner = Learner(index, popen.pid, start_time(popen.pid), state_base, popen)
    # Started means the wrapper wrote its pid (a prefix takes a moment to exec it): an agent that
    # dies after this call finds the pid file and adopts the learner, never starts it twice.
    deadline = time.monotonic() + STARTED_WAIT_S
    while not was_started(state_base) and popen.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    return learner


@contextmanager
def _pinned(cores: tuple[int, ...]) -> Iterator[None]:
    if not cores:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


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


def pids_in_groups(pgids: set[int]) -> set[int]:
    """Every live pid whose process group is one of `pgids` (our runs' processes and children)."""
    return {pid for pids in pids_by_group(pgids).values() for pid in pids}


def pids_by_group(pgids: set[int]) -> dict[int, set[int]]:
    """The live pids of each process group in `pgids` (a learner's processes and children)."""
    out: dict[int, set[int]] = {}
    if not pgids:
        return out
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        group = int(fields[2])
        if group in pgids:
            out.setdefault(group, set()).add(int(entry.name))
    return out


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the rendezvous port of a run with several learners)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
