"""Builders for TUI tests: an app on a seeded fake engine with a clock that moves only when told."""
from __future__ import annotations

from typing import Any

from backend.config import Config, Profile
from backend.engines.fake.clock import FakeClock
from backend.engines.fake.engine import FakeEngine
from backend.facade import Backend, get_paths
from dlaas_tui.app import DlaasApp

from .screens_harness import wait_for  # noqa: F401  (the tests import it from here too)

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


def widget_text(widget) -> str:
    """The lines a Line-API widget shows now, as plain text."""
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


async def feed_rounds(pilot, rounds: int = 2, timeout: float = 20.0) -> None:
    """Until the runs feed has published its figures `rounds` more times. With 2 (the default), at
    least one whole round of the feed began after this call, so it saw whatever the test changed."""
    app = pilot.app
    state = {"last": app.header_stats, "seen": 0}

    def published() -> bool:
        if app.header_stats is not state["last"]:
            state["last"] = app.header_stats
            state["seen"] += 1
        return state["seen"] >= rounds

    await wait_for(pilot, published, timeout, what=f"{rounds} rounds of the runs feed")



async def drawn(pilot) -> None:
    """Let everything already posted run, animations end, and what they changed be drawn (for a
    snapshot of a screen whose data has arrived: the waits for the data come before this)."""
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def full_log_shown(screen) -> bool:
    """A finished run's detail shows the tail first, then swaps in the whole log: that happened."""
    view = screen.log_view
    lf = view.log_file
    return lf is not None and lf.path.name.endswith(".full.log") and lf.fully_indexed
