"""Pilot tests of the GPUs screen: fields, N/A, the NVML banner, periodic refresh, errors."""
from __future__ import annotations

from dataclasses import replace

from backend.facade import EngineError, Inventory

from dlaas_tui.screens import gpus as gpus_module
from dlaas_tui.screens.gpus import GpusScreen

from .screens_harness import HarnessApp, MiniEngine, make_backend, sample_inventory, screen_text, settle, wait_for


def cells(app, row: int) -> list[str]:
    return [c.plain for c in app.screen.query_one("#devices").get_row_at(row)]


async def test_devices_with_fields_holder_and_na():
    engine = MiniEngine(sample_inventory())
    app = HarnessApp(make_backend(engine=engine), GpusScreen)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        h100 = cells(app, 0)
        assert h100[0] == "0" and h100[1].startswith("H100")
        assert "97%" in h100[2] and "61.0/80.0G" in h100[3]
        assert h100[4:] == ["71C", "612W", "training-a1b2c3d4"]
        assert cells(app, 1)[-1] == "idle"
        a100 = cells(app, 2)
        assert a100[2] == "N/A" and a100[3] == "N/A/40.0G" and a100[4:6] == ["N/A", "N/A"]
        assert a100[-1] == "other process"
        assert not app.screen.query_one("#nvml-banner").has_class("-shown")
        header = str(app.screen.query_one("#gpus-header").render())
        assert "1/3 in use" in header and "gpu-box-1" in header
        detail = app.screen.query_one("#device-detail")
        await pilot.press("down", "down")
        await pilot.pause()
        assert app.screen.query_one("#devices").cursor_row == 2
        rendered = screen_text(app)
        assert "999" in rendered  # the foreign process is listed for the selected device
        assert detail.display


async def test_banner_when_nvml_is_absent():
    engine = MiniEngine(Inventory((), False, "NVML not found: libnvidia-ml.so.1 is missing"))
    app = HarnessApp(make_backend(engine=engine), GpusScreen)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        banner = app.screen.query_one("#nvml-banner")
        assert banner.has_class("-shown")
        assert "libnvidia-ml.so.1 is missing" in str(banner.render())
        assert "no devices found" in screen_text(app)


async def test_refreshes_periodically_and_keeps_the_cursor(monkeypatch):
    monkeypatch.setattr(gpus_module, "REFRESH_S", 0.2)
    inv = sample_inventory()
    engine = MiniEngine(inv)
    app = HarnessApp(make_backend(engine=engine), GpusScreen)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("down")
        changed = replace(inv.devices[1], utilization=55, held_by="training-zzzz9999")
        engine.inventory_value = replace(inv, devices=(inv.devices[0], changed, inv.devices[2]))
        await wait_for(pilot, lambda: cells(app, 1)[-1] == "training-zzzz9999", what="the next refresh shown")
        await settle(pilot)
        assert "55%" in cells(app, 1)[2] and cells(app, 1)[-1] == "training-zzzz9999"
        assert app.screen.query_one("#devices").cursor_row == 1


async def test_engine_error_is_a_notification():
    class Broken(MiniEngine):
        def inventory(self):
            raise EngineError("agent is not running")

    app = HarnessApp(make_backend(engine=Broken()), GpusScreen)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert any("agent is not running" in n.message for n in app._notifications)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, GpusScreen)


def _colours(table, row: int, glyph: str) -> set:
    """The foreground colours the table draws `glyph` in on `row` (the header is line 0)."""
    return {seg.style.color for seg in table.render_line(row + 1) if glyph in seg.text and seg.style}


async def test_the_cursor_row_keeps_its_bar_colours():
    app = HarnessApp(make_backend(engine=MiniEngine(sample_inventory())), GpusScreen)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#devices")
        assert table.cursor_row == 0
        on_cursor = _colours(table, 0, "█")
        cursor_fg = table.get_component_rich_style("datatable--cursor").color
        assert on_cursor and cursor_fg not in on_cursor  # 97 %: the filled part keeps its colour
        await pilot.press("down")
        await pilot.pause()
        assert _colours(table, 0, "█") == on_cursor  # the same colour off the cursor
        # what else is coloured is drawn plain on the cursor row, and gets its colour back after
        off = _colours(table, 2, "other process")
        assert cursor_fg not in off
        await pilot.press("down")
        await pilot.pause()
        assert _colours(table, 2, "other process") == {cursor_fg}
        await pilot.press("up")
        await pilot.pause()
        assert _colours(table, 2, "other process") == off
