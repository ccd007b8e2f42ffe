"""A contract harness for the local engine: a real agent under the test's DLAAS_HOME, on a fake
GPU box (the local engine's `DLAAS_FAKE_GPUS` device list) with its own GPU lock folder.

To run the Engine contract against the local engine, register it in tests/contract/engines.py:
    "local": "tests.contract.local_harness:LocalHarness",
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.contract.engines import EngineHarness


class LocalHarness(EngineHarness):
    name = "local"

    def __init__(self, workdir: Path, **kwargs: Any) -> None:
        super().__init__(workdir, **kwargs)
        self.home = Path(os.environ["DLAAS_HOME"])
        self._saved = {k: os.environ.get(k) for k in ("DLAAS_FAKE_GPUS", "DLAAS_GPU_LOCK_DIR")}
        # An L4 has no default price: that is how `priced=False` gets an unpriced run.
        gpu = "NVIDIA H100 80GB HBM3" if self.priced else "NVIDIA L4"
        spec = workdir / "gpus.json"
        spec.write_text(json.dumps([
            {"uuid": f"GPU-{workdir.name}-{i}", "name": gpu, "memory_total": 80 * 2**30}
            for i in range(self.devices)
        ]))
        os.environ["DLAAS_FAKE_GPUS"] = str(spec)
        # Never the shared /tmp lock folder: other people's tests run on this machine too.
        os.environ["DLAAS_GPU_LOCK_DIR"] = str(workdir / "locks")
        (self.home / "store" / "contract-data").mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(
            f'[profiles.local]\ntier = "contract"\n[tiers]\ncontract = {self.tier_gpus}\n'
        )
        from backend.facade import open_backend

        self.engine = open_backend().engine

    def close(self) -> None:
        from backend.engines.local.agent import ensure_agent
        from backend.paths import get_paths
        from tests.e2e.local_helpers import stop_everything

        try:
            self.engine.close()
            # A submit may have started an agent that has not taken its lock yet; wait for it to
            # be findable, so that stopping it by pid cannot miss it.
            ensure_agent(get_paths())
            stop_everything(self.home)
        finally:
            for key, value in self._saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
