"""Snapshots of the buckets, editor and GPUs screens at 80×24 and 160×50, with fixed data.

Update after an intended change with `pytest tests/functional/test_snapshots_screens.py --snapshot-update`
and look at the report before committing.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from backend.facade import Inventory

from dlaas_tui.screens.buckets import BucketsScreen
from dlaas_tui.screens.editor import EditorScreen
from dlaas_tui.screens.gpus import GpusScreen

from dlaas_tui.screens.submit_confirm import SubmitConfirm
from dlaas_tui.widgets.preview import Preview

from .screens_harness import (
    HarnessApp, MiniEngine, demo_store, make_backend, sample_inventory, settle, wait_for, wait_preview,
)

async def wait_checked(pilot) -> None:
    """Until the editor shows the check of its text."""
    editor = pilot.app.screen
    await wait_for(pilot, lambda: not editor.checking, what="the manifest check")
    await settle(pilot)


SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 50), id="160x50")]

MANIFEST = """\
name: digits-sweep
description: A small MLP on the digits data
gpus: two
gpu_type: H100
memory: 4 gigs
max_duration: 30m
data_stores:
  - id: ds
    type: local
    training_data:
      container: datasets
      prefix: digits/
    training_results:
      container: results
framework:
  name: pytorch
  version: "2.5"
  command: python train.py --lr ${lr}
sweep:
  method: grid
  parameters:
    lr: {values: [0.1, 0.01, 0.001]}
"""


@pytest.mark.parametrize("size", SIZES)
def test_buckets_snapshot(snap_compare, size):
    app = HarnessApp(make_backend(demo_store()), BucketsScreen)

    async def browse(pilot):
        await settle(pilot)
        table = pilot.app.screen.objects
        table.move_cursor(row=[e.name for e in table.entries].index("datasets"))
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("j", "enter")  # into digits/
        await settle(pilot)
        await pilot.press("j")  # meta.json
        await wait_preview(pilot, "meta.json")

    assert snap_compare(app, terminal_size=size, run_before=browse)


@pytest.mark.parametrize("size", [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")])
def test_buckets_hex_preview_focused_snapshot(snap_compare, size):
    """Whole hex rows with their ASCII, and a focused preview that says how to scroll and leave."""
    app = HarnessApp(make_backend(demo_store()), BucketsScreen)

    async def browse(pilot):
        await settle(pilot)
        table = pilot.app.screen.objects
        table.move_cursor(row=[e.name for e in table.entries].index("datasets"))
        await pilot.press("enter")
        await settle(pilot)
        table.move_cursor(row=[e.name for e in table.entries].index("models/"))
        await pilot.press("enter")
        await settle(pilot)
        await wait_preview(pilot, "net.pt")
        await pilot.press("enter", "j")  # net.pt: into the preview, one line down
        preview = pilot.app.screen.query_one(Preview)
        await wait_for(pilot, lambda: preview.scroll_y == 1, what="the preview one line down")
        await pilot.wait_for_scheduled_animations()

    assert snap_compare(app, terminal_size=size, run_before=browse)


@pytest.mark.parametrize("size", SIZES)
def test_editor_snapshot(snap_compare, size):
    app = HarnessApp(make_backend(), lambda: EditorScreen(text=MANIFEST))

    async def validated(pilot):
        pilot.app.screen.area.cursor_blink = False
        await wait_checked(pilot)

    assert snap_compare(app, terminal_size=size, run_before=validated)


@pytest.mark.parametrize("size", SIZES)
def test_gpus_snapshot(snap_compare, size):
    app = HarnessApp(make_backend(engine=MiniEngine(sample_inventory())), GpusScreen)
    assert snap_compare(app, terminal_size=size, run_before=settle)


def test_gpus_without_nvml_snapshot(snap_compare):
    inventory = Inventory((), False, "NVML is not available (libnvidia-ml.so.1 not found): "
                                     "runs use 1 CPU slot.")
    app = HarnessApp(make_backend(engine=MiniEngine(inventory)), GpusScreen)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)


def test_submit_confirmation_snapshot(snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the screen shows the path: keep it the same on every run
    path = Path("sweep.yml")
    path.write_text(MANIFEST.replace("gpus: two", "gpus: 1").replace("memory: 4 gigs", "memory: 4GiB"))
    app = HarnessApp(make_backend(prices={"H100": 6.88}), lambda: EditorScreen(path=path))

    async def confirm(pilot):
        pilot.app.screen.area.cursor_blink = False
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SubmitConfirm), what="the confirmation")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=confirm)
