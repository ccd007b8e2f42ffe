"""The GPUs screen inside the real app, on the fake engine's inventory."""
from __future__ import annotations

from dlaas_tui.screens.gpus import GpusScreen

from .screens_harness import screen_text, settle
from .test_editor_app import real_app


async def test_gpus_screen_shows_the_engine_inventory():
    app, engine = real_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        app.open_lazy("gpus")
        await pilot.pause(0.3)
        await settle(pilot)
        assert isinstance(app.screen, GpusScreen)
        table = app.screen.query_one("#devices")
        assert table.row_count == len(engine.inventory().devices) == 2
        assert "H100" in screen_text(app)
