"""The GPUs screen inside the real app, on the fake engine's inventory."""
from __future__ import annotations

from dlaas_tui.screens.gpus import GpusScreen
from dlaas_tui.screens.runs import RunsScreen

from .screens_harness import screen_text, settle
from .test_editor_app import real_app
from .tui_fixtures import wait_for


async def test_gpus_screen_shows_the_engine_inventory():
    app, engine = real_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), timeout=30)
        app.open_lazy("gpus")
        await wait_for(pilot, lambda: isinstance(app.screen, GpusScreen), timeout=30)
        await settle(pilot)
        table = app.screen.query_one("#devices")
        assert table.row_count == len(engine.inventory().devices) == 2
        assert "H100" in screen_text(app)
