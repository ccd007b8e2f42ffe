"""The machine's cores and memory as resources: what the agent may hand out, and how a run's share
is enforced.

Cores: a run holds `cpus` cores per learner (rounded up) and its learners are pinned to them with
sched_setaffinity. Memory: a run holds `memory` per learner; the limit is enforced by cgroup v2
(`systemd-run --user --scope -p MemoryMax=`) where a user systemd answers, else by RLIMIT_DATA on
the learner's shell (every process it starts inherits it). Which one is in force is `enforcement()`.
"""
from __future__ import annotations

import math
import os
from functools import lru_cache

from ...records import FrozenRecord


class Capacity(FrozenRecord):
    """A plain record, not a dataclass: a listing's queue ETAs read it (engine_etas)."""

    cores: tuple[int, ...]  # the core ids runs may be pinned to
    memory: int  # bytes runs may hold together
    _fields = ("cores", "memory")

    def __init__(self, cores: tuple[int, ...], memory: int) -> None:
        self._set(cores=cores, memory=memory)


def machine_cores() -> tuple[int, ...]:
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return tuple(range(os.cpu_count() or 1))


def machine_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def capacity(profile) -> Capacity:
    """The cores and memory a profile's runs may hold: the machine's, or less where the profile says."""
    cores = machine_cores()
    if getattr(profile, "cpus", None):
        cores = cores[: profile.cpus] if profile.cpus <= len(cores) else cores
    memory = machine_memory()
    if getattr(profile, "memory", None):
        from ...units import parse_memory

        memory = parse_memory(profile.memory)
    return Capacity(cores, memory)


def cores_per_learner(cpus: float) -> int:
    return max(1, math.ceil(cpus))


@lru_cache(maxsize=1)
def enforcement() -> str:
    """"cgroup" when `systemd-run --user --scope` can cap a process's memory here, else "rlimit"."""
    if os.environ.get("DLAAS_MEMORY_ENFORCEMENT") in ("cgroup", "rlimit"):
        return os.environ["DLAAS_MEMORY_ENFORCEMENT"]
    import shutil
    import subprocess

    exe = shutil.which("systemd-run")
    if exe is None or not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "rlimit"
    try:
        probe = subprocess.run([exe, "--user", "--scope", "-q", "-p", "MemoryMax=64M", "true"],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "rlimit"
    return "cgroup" if probe.returncode == 0 else "rlimit"


def describe() -> str:
    if enforcement() == "cgroup":
        return "cgroup v2 MemoryMax (systemd-run --user --scope)"
    return "RLIMIT_DATA"


def scope_prefix(memory_bytes: int) -> list[str]:
    """The argv prefix that runs a learner in its own memory-capped scope (cgroup mode only)."""
    return ["systemd-run", "--user", "--scope", "-q", "-p", f"MemoryMax={memory_bytes}",
            "-p", "MemorySwapMax=0", "--"]
