"""The editor inside the real app: `n` opens the shipped sample, and submitting it reaches the engine."""
from __future__ import annotations

from pathlib import Path

from backend.config import Config, Profile
from backend.engines.fake.clock import FakeClock
from backend.engines.fake.engine import FakeEngine
from backend.facade import Backend, get_paths

from dlaas_tui.app import DlaasApp
from dlaas_tui.screens.editor import EditorScreen
from dlaas_tui.screens.runs import RunsScreen
from dlaas_tui.screens.submit_confirm import SubmitConfirm

from .screens_harness import settle
from .tui_fixtures import wait_for


def real_app() -> tuple[DlaasApp, FakeEngine]:
    engine = FakeEngine(FakeClock(), devices=2, gpu_type="H100")
    profile = Profile(name="fake", scheduler="fake", store="local")
    backend = Backend(config=Config(), profile=profile, paths=get_paths(), _engine=engine)
    return DlaasApp(backend, poll_interval=0.25), engine


async def test_new_submission_from_the_sample_reaches_the_engine(tmp_path: Path):
    app, engine = real_app()
    before = len(engine.list_runs())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), timeout=30)
        app.open_lazy("new")
        await wait_for(pilot, lambda: isinstance(app.screen, EditorScreen), timeout=30)
        await settle(pilot)
        assert "framework:" in app.screen.area.text  # the shipped sample, not an empty buffer
        assert not app.screen.validation.errors
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert isinstance(app.screen, SubmitConfirm)
        await pilot.press("y")
        await pilot.pause()
        app.screen.query_one("Input").value = str(tmp_path / "digits.yml")  # save as, then submit
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(engine.list_runs()) == before + 1 and any(
            r.id in n.message for r in engine.list_runs() for n in app._notifications), timeout=30)
        await settle(pilot)
        assert (tmp_path / "digits.yml").exists()
        runs = engine.list_runs()
        assert len(runs) == before + 1
        assert any(r.id in n.message for r in runs for n in app._notifications)
