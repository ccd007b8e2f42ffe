"""Builders for TUI tests: an app on a seeded fake engine with a clock that moves only when told."""
from __future__ import annotations

import time
from typing import Any

from backend.config import Config, Profile
from backend.engines.fake.clock import FakeClock
from backend.engines.fake.engine import FakeEngine
from backend.facade import Backend, get_paths
from dlaas_tui.app import DlaasApp

SAMPLE_MANIFEST: dict[str, Any] = {
    "name": "sample",
    "gpus": 1,
    "data_stores": [
        {
            "id": "store",
            "type": "local",
            "training_data": {"container": "data"},
            "training_results": {"container": "results"},
        }
    ],
    "framework": {"name": "pytorch", "version": "2.5", "command": "python train.py"},
}


def make_app(
    n_runs: int = 60,
    *,
    read_only: bool = False,
    devices: int = 4,
    poll_interval: float = 0.25,
    engine: Any = None,
    config: Config | None = None,
) -> tuple[DlaasApp, FakeClock, FakeEngine]:
    clock = FakeClock()
    if engine is None:
        engine = FakeEngine(clock, devices=devices, gpu_type="H100")
        if n_runs:
            engine.seed(n_runs)
    profile = Profile(name="fake", scheduler="fake", read_only=read_only)
    backend = Backend(config=config or Config(), profile=profile, paths=get_paths(), _engine=engine)
    app = DlaasApp(backend, poll_interval=poll_interval)
    return app, clock, engine


async def wait_for(pilot, predicate, timeout: float = 20.0, what: str = "") -> None:
    """Pause the pilot until `predicate()` holds (workers post from threads, feeds poll).

    The deadline is generous on purpose: it only bounds a hang, it never decides a pass, so a loaded
    machine takes longer but does not fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            label = what or getattr(predicate, "__doc__", None) or "condition"
            raise AssertionError(f"{label} not reached within {timeout:g} s")
        await pilot.pause(0.02)


def widget_text(widget) -> str:
    """The lines a Line-API widget shows now, as plain text."""
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))
