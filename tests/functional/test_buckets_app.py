"""The bucket browser inside the real app, on the real folder-backed store."""
from __future__ import annotations

from pathlib import Path

import pytest

from backend.config import Config, Profile
from backend.engines.fake.clock import FakeClock
from backend.engines.fake.engine import FakeEngine
from backend.facade import Backend, get_paths

from dlaas_tui.app import DlaasApp
from dlaas_tui.screens import buckets as buckets_module
from dlaas_tui.screens.buckets import BucketsScreen
from dlaas_tui.screens.editor import EditorScreen

from dlaas_tui.screens.runs import RunsScreen

from .screens_harness import screen_text, settle, wait_for


def real_app(read_only: bool = False) -> DlaasApp:
    engine = FakeEngine(FakeClock(), devices=2, gpu_type="H100")
    profile = Profile(name="local", scheduler="fake", store="local", read_only=read_only)
    backend = Backend(config=Config(), profile=profile, paths=get_paths(), _engine=engine)
    return DlaasApp(backend, poll_interval=0.25)


async def home(pilot) -> None:
    """Until the app's first screen, the runs table, is up."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunsScreen), what="the runs screen")


@pytest.mark.slow
async def test_browse_page_upload_and_train_on_the_local_store(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(buckets_module, "PAGE_SIZE", 50)
    app = real_app()
    store = app.backend.store
    store.make_bucket("digits")
    for i in range(120):
        store.put_bytes("digits", f"train/part-{i:03d}.csv", b"a,b\n1,2\n")
    store.put_bytes("digits", "README.md", b"# digits\n")
    src = tmp_path / "extra.json"
    src.write_text('{"k": 1}')
    async with app.run_test(size=(80, 24)) as pilot:
        await home(pilot)  # the runs screen's feed runs for as long as the app does
        await pilot.press("colon")
        await pilot.pause()
        await pilot.press(*"buckets", "enter")
        await settle(pilot)
        assert isinstance(app.screen, BucketsScreen)
        objects = app.screen.objects
        assert "digits" in [e.name for e in objects.entries]
        objects.move_cursor(row=[e.name for e in objects.entries].index("digits"))
        await pilot.press("enter")
        await settle(pilot)
        assert [e.name for e in objects.entries] == ["README.md", "train/"]
        await pilot.press("j", "enter")
        await settle(pilot)
        assert objects.row_count == 50  # one page of the real store's listing
        await pilot.press("G")
        await settle(pilot)
        await pilot.press("G")
        await settle(pilot)
        assert objects.row_count == 120
        assert [e.name for e in objects.entries][-1] == "part-119.csv"
        await pilot.press("u")
        app.screen.query_one("Input").value = str(src)
        await pilot.press("enter")
        await settle(pilot)
        assert store.read_range("digits", "train/extra.json") == b'{"k": 1}'
        await pilot.press("backspace")
        await settle(pilot)
        assert "train" in screen_text(app) and "digits" in screen_text(app)
        objects.move_cursor(row=[e.name for e in objects.entries].index("train/"))
        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, EditorScreen)
        assert 'container: "digits"' in app.screen.area.text and 'prefix: "train/"' in app.screen.area.text
        editor = app.screen
        await wait_for(pilot, lambda: not editor.checking, what="the manifest check")
        await settle(pilot)
        assert not app.screen.validation.errors  # the sample with our data store still validates


async def test_read_only_profile_in_the_app(tmp_path: Path):
    app = real_app(read_only=True)
    app.backend.store.make_bucket("keep")
    app.backend.store.put_bytes("keep", "a.txt", b"a")
    async with app.run_test(size=(80, 24)) as pilot:
        await home(pilot)
        app.open_lazy("buckets")
        await settle(pilot)
        assert "read-only" in screen_text(app)
        assert "Upload" not in screen_text(app) and "Delete" not in screen_text(app)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, BucketsScreen)
        assert app.backend.store.read_range("keep", "a.txt") == b"a"
