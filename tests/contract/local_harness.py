"""The contract suite's harness for the local engine: a real agent under a throwaway DLAAS_HOME.

`devices` become cpu slots (priced at the cpu rate) or, with `priced=False`, fake NVML L4 GPUs
(no default price). The tier is a config `[tiers]` entry. `close()` stops the agent and every run
process group it started, by pid.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from tests.contract.engines import EngineHarness


class LocalHarness(EngineHarness):
    name = "local"
    poll_interval = 0.05

    def __init__(self, workdir: Path, **kwargs: Any) -> None:
        super().__init__(workdir, **kwargs)
        from backend.config import parse_config
        from backend.facade import Backend
        from backend.paths import Paths

        home = workdir / "home"
        self.home = home
        (home / "store" / "contract-data").mkdir(parents=True, exist_ok=True)
        tier = "contract" if self.tier_gpus else "unlimited"
        text = f'[profiles.local]\ntier = "{tier}"\ncpu_slots = {self.devices}\n'
        if self.tier_gpus:
            text += f"\n[tiers]\ncontract = {self.tier_gpus}\n"
        text += f"\n[billing]\nminimum_seconds = {self.minimum_seconds}\n"
        (home / "config.toml").write_text(text)
        os.chmod(home / "config.toml", 0o600)
        self._env_saved: dict[str, str | None] = {}
        if not self.priced:
            spec = workdir / "nvml.json"
            spec.write_text(json.dumps({"gpus": [
                {"name": "NVIDIA L4", "uuid": f"GPU-contract-l4-{i}", "memory_total": 24 * 2**30}
                for i in range(self.devices)]}))
            self._setenv("DLAAS_FAKE_NVML", str(spec))
            self._setenv("DLAAS_GPU_LOCK_DIR", str(workdir / "locks"))
        self._setenv("DLAAS_HALT_GRACE", "2")
        config = parse_config((home / "config.toml").read_text(), str(home / "config.toml"))
        paths = Paths(home, home / "state", home / "store", home / "cache")
        self.backend = Backend(config=config, profile=config.profile("local"), paths=paths)
        self.engine = self.backend.engine

    def submit(self, tmp_path: Path, **kwargs: Any):
        # Admission is asynchronous here (the fake's is instant): let the agent decide this run
        # before the test submits the next one, as a person typing commands would.
        run = super().submit(tmp_path, **kwargs)
        self.engine.settled()
        return run

    def quiesce(self, timeout: float = 120.0) -> None:
        """The agent's admission has seen every change recorded so far and no process of an ended
        run is left: what the agent set off for those runs is over."""
        import pytest

        deadline = time.monotonic() + timeout
        if not self.engine.settled(timeout=timeout):
            pytest.fail(f"local: the agent's admission did not catch up within {timeout} s")
        ended = [r.id for r in self.engine.list_runs() if r.state.terminal]
        while alive := [rid for rid in ended if _group_alive(self.home / "state", rid)]:
            if time.monotonic() > deadline:
                pytest.fail(f"local: processes of ended runs {alive} still alive after {timeout} s")
            time.sleep(self.poll_interval)
        self.engine.settled(timeout=max(1.0, deadline - time.monotonic()))

    def evict(self, run_id: str) -> None:
        import pytest

        pytest.skip("local: the agent never preempts a run it admitted")

    def _setenv(self, key: str, value: str) -> None:
        self._env_saved.setdefault(key, os.environ.get(key))
        os.environ[key] = value

    def close(self) -> None:
        from backend.agentlink.control import agent_pid, settled_pid

        self.engine.close()
        state = self.home / "state"
        pid = settled_pid(state, timeout=300)  # a start a command set off without waiting: wait it out
        if pid and pid > 0:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for f in state.glob("runs/*/state/learner-*.pid"):
            try:
                os.killpg(int(f.read_text().strip()), signal.SIGKILL)
            except (ValueError, OSError):
                pass
        deadline = time.monotonic() + 5
        while pid and pid > 0 and time.monotonic() < deadline and agent_pid(state):
            time.sleep(0.05)
        for key, value in self._env_saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _group_alive(state: Path, run_id: str) -> bool:
    """Whether a learner process group of `run_id` still has a live (not zombie) member."""
    for f in state.glob(f"runs/{run_id}/state/learner-*.pid"):
        try:
            pgid = int(f.read_text().strip())
        except (ValueError, OSError):
            continue
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
                return True
    return False
