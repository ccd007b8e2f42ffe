"""Pilot tests of the bucket browser: paging, navigation, filter, preview, transfers, writes."""
from __future__ import annotations

from pathlib import Path

import pytest
from rich.syntax import Syntax
from rich.table import Table

from dlaas_tui.screens.buckets import PAGE_SIZE, BucketsScreen
from dlaas_tui.screens.editor import EditorScreen
from dlaas_tui.screens.confirm import ConfirmScreen
from dlaas_tui.screens.prompts import InputPrompt
from dlaas_tui.widgets.transfer_bar import TransferBar

from .screens_harness import (
    HarnessApp, MemoryStore, demo_store, make_backend, screen_text, settle, wait_for, wait_preview,
)


def app_for(store: MemoryStore, **kw) -> HarnessApp:
    return HarnessApp(make_backend(store, **kw), BucketsScreen)


def names(app) -> list[str]:
    return [e.name for e in app.screen.objects.entries]


async def open_path(pilot, *names_: str) -> None:
    for name in names_:
        table = pilot.app.screen.objects
        table.move_cursor(row=[e.name for e in table.entries].index(name))
        await pilot.press("enter")
        await settle(pilot)


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


async def test_first_page_at_once_then_pages_on_scroll():
    store = MemoryStore()
    for i in range(2 * PAGE_SIZE + 50):
        store.add("big", f"obj-{i:04d}.txt", "x")
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await open_path(pilot, "big")
        assert store.lists == [("big", "", PAGE_SIZE, None)]
        assert app.screen.objects.row_count == PAGE_SIZE
        assert "more below" in str(app.screen.query_one("#status").render())
        await pilot.press("G")  # the cursor reaches the end: one more page, not the rest
        await settle(pilot)
        assert len(store.lists) == 2 and store.lists[1][3] is not None
        assert app.screen.objects.row_count == 2 * PAGE_SIZE
        await pilot.press("G")
        await settle(pilot)
        assert app.screen.objects.row_count == 2 * PAGE_SIZE + 50
        assert all(call[2] == PAGE_SIZE for call in store.lists)
        assert names(app)[-1] == f"obj-{2 * PAGE_SIZE + 49:04d}.txt"
        await pilot.press("G")
        await settle(pilot)
        assert len(store.lists) == 3  # the last page had no token: nothing more is asked


async def test_folders_breadcrumbs_up_and_back():
    app = app_for(demo_store())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert names(app) == ["datasets", "empty-bucket", "results"]
        await open_path(pilot, "datasets")
        assert names(app) == ["README.md", "digits/", "models/"]
        await open_path(pilot, "digits/")
        assert names(app) == ["config.yaml", "meta.json", "train.csv"]
        crumbs = str(app.screen.query_one("#crumbs").render())
        assert "datasets › digits" in crumbs
        await pilot.press("backspace")
        await settle(pilot)
        assert names(app) == ["README.md", "digits/", "models/"]
        assert app.screen.objects.selected.name == "digits/"  # the cursor comes back to where we were
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen.objects.selected.name == "datasets"
        await pilot.press("escape")  # at the top, esc leaves the screen
        await settle(pilot)
        assert not isinstance(app.screen, BucketsScreen)


async def test_filter_narrows_and_esc_clears():
    app = app_for(demo_store())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await open_path(pilot, "datasets", "digits/")
        await pilot.press("slash", "j", "s")
        await settle(pilot)
        assert names(app) == ["meta.json"]
        await pilot.press("enter")  # keeps the filter, back to the list
        assert app.screen.objects.has_focus
        await pilot.press("escape")
        await settle(pilot)
        assert names(app) == ["config.yaml", "meta.json", "train.csv"]


async def test_preview_kinds_and_ranged_reads():
    store = demo_store()
    store.add("datasets", "digits/huge.log", "y" * 300_000)
    app = app_for(store)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        await open_path(pilot, "datasets", "digits/")
        pane = app.screen.query_one("#preview")

        async def preview(name: str):
            table = app.screen.objects
            table.move_cursor(row=names(app).index(name))
            await wait_preview(pilot, name)
            return pane.shown

        shown = await preview("meta.json")
        assert isinstance(shown, Syntax) and shown.lexer.name == "JSON"
        shown = await preview("config.yaml")
        assert isinstance(shown, Syntax) and shown.lexer.name == "YAML"
        shown = await preview("train.csv")
        table = shown.renderables[0]
        assert isinstance(table, Table)
        assert [str(c.header) for c in table.columns] == ["pixel0", "pixel1", "label"]
        assert table.row_count == 3
        await preview("huge.log")
        assert store.reads[-1] == ("datasets", "digits/huge.log", 0, 64 * 1024)
        assert all(length is not None and length <= 64 * 1024 for *_, length in store.reads)
        await pilot.press("backspace")
        await settle(pilot)
        await open_path(pilot, "models/")
        shown = await preview("net.pt")
        text = "".join(str(r) for r in shown.renderables)
        assert "0000  00 01 02 03" in text and "binary" in text


async def test_keys_with_markup_and_escapes_are_shown_literally():
    store = demo_store()
    evil = "[bold red]boom[reverse] \x1b[31mred\x1b]52;c;aGk=\x07 \x9b1m"
    store.add("datasets", evil, "[link=http://x]click[/link] \x1b[2J gone\n")
    app = app_for(store)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        await open_path(pilot, "datasets")
        row = [e.name for e in app.screen.objects.entries].index(evil)
        app.screen.objects.move_cursor(row=row)
        await wait_preview(pilot, evil)
        cell = app.screen.objects.get_row_at(row)[0]
        assert "[bold red]boom[reverse]" in cell.plain and "\u241b[31m" in cell.plain and "\\x9b" in cell.plain
        assert "\x1b" not in cell.plain and "\x07" not in cell.plain
        assert not cell.spans or all(s.style == "bold" or s.style == "dim" for s in cell.spans)
        # What reaches the terminal holds the key visibly, never the raw escape bytes.
        screen_text = "".join(seg.text for strip in app.screen._compositor.render_strips() for seg in strip)
        assert "[bold red]boom[reverse]" in screen_text
        assert not any(ch in screen_text for ch in "\x1b\x07\x9b")
        svg = app.export_screenshot()
        assert "[bold red]boom[reverse]" in svg.replace("&#160;", " ")
        assert "\u241b[2J" in screen_text  # the preview shows the escape, visibly
        await pilot.press("y")
        await settle(pilot)
        assert app.clipboard == f"local://datasets/{evil}"  # the clipboard gets the real key
        assert all("\x1b" not in n for n in notes(app))


async def test_upload_file_with_progress_then_listed(tmp_path: Path):
    store = demo_store()
    src = tmp_path / "weights.bin"
    src.write_bytes(b"w" * 40_000)
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await open_path(pilot, "datasets", "models/")
        store.pause_after = 3  # 3 chunks of 4 KiB move, then the transfer waits
        await pilot.press("u")
        await pilot.pause()
        assert isinstance(app.screen, InputPrompt)
        app.screen.query_one("Input").value = str(src)
        await pilot.press("enter")
        bar = app.screen.query_one(TransferBar)
        # 3 chunks move, then the store holds the transfer: the bar's poll shows where it stands
        await wait_for(pilot, lambda: "12.0 KiB/39.1 KiB" in screen_text(app), what="the progress shown")
        assert bar.active
        assert "12.0 KiB/39.1 KiB" in screen_text(app)
        assert app.screen.query_one("#transfer-progress").percentage == pytest.approx(12288 / 40000)
        store.gate.set()
        await settle(pilot)
        assert not bar.active
        assert store.buckets["datasets"]["models/weights.bin"][0] == src.read_bytes()
        assert "weights.bin" in names(app)
        assert any("uploaded weights.bin" in n for n in notes(app))


async def test_upload_folder(tmp_path: Path):
    store = demo_store()
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(b"a")
    (folder / "sub" / "b.png").write_bytes(b"b")
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await open_path(pilot, "datasets")
        await pilot.press("u")
        app.screen.query_one("Input").value = str(folder)
        await pilot.press("enter")
        await settle(pilot)
        assert set(k for k in store.buckets["datasets"] if k.startswith("imgs/")) == {"imgs/a.png", "imgs/sub/b.png"}
        assert "imgs/" in names(app)


async def test_upload_cancel_with_esc_keeps_nothing(tmp_path: Path):
    store = demo_store()
    src = tmp_path / "big.bin"
    src.write_bytes(b"z" * 100_000)
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await open_path(pilot, "datasets")
        store.gate.clear()
        await pilot.press("u")
        app.screen.query_one("Input").value = str(src)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.query_one(TransferBar).active, what="the upload started")
        assert app.screen.query_one(TransferBar).active
        await pilot.press("escape")
        await settle(pilot)
        store.gate.set()
        assert "big.bin" not in store.buckets["datasets"]
        assert not app.screen.query_one(TransferBar).active
        assert any("cancelled" in n for n in notes(app))


async def test_download_file_and_folder(tmp_path: Path):
    store = demo_store()
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await open_path(pilot, "datasets")
        app.screen.objects.move_cursor(row=names(app).index("README.md"))
        await pilot.press("d")
        await pilot.pause()
        field = app.screen.query_one("Input")
        assert field.value.endswith("README.md")  # a sensible default destination
        field.value = str(tmp_path / "readme.md")
        await pilot.press("enter")
        await settle(pilot)
        assert (tmp_path / "readme.md").read_text().startswith("# Digits")
        app.screen.objects.move_cursor(row=names(app).index("digits/"))
        await pilot.press("d")
        app.screen.query_one("Input").value = str(tmp_path / "dl")
        await pilot.press("enter")
        await settle(pilot)
        assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["config.yaml", "meta.json", "train.csv"]


async def test_download_cancel_leaves_no_file(tmp_path: Path):
    store = demo_store()
    store.add("datasets", "blob.bin", b"q" * 100_000)
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await open_path(pilot, "datasets")
        app.screen.objects.move_cursor(row=names(app).index("blob.bin"))
        store.gate.clear()
        await pilot.press("d")
        app.screen.query_one("Input").value = str(tmp_path / "blob.bin")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.query_one(TransferBar).active, what="the download started")
        await pilot.press("escape")
        await settle(pilot)
        store.gate.set()
        assert list(tmp_path.iterdir()) == []


async def test_delete_object_and_prefix_with_confirmation():
    store = demo_store()
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await open_path(pilot, "datasets")
        app.screen.objects.move_cursor(row=names(app).index("README.md"))
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert "README.md" in store.buckets["datasets"]
        await pilot.press("x")
        await pilot.press("y")
        await settle(pilot)
        assert "README.md" not in store.buckets["datasets"]
        assert "README.md" not in names(app)
        app.screen.objects.move_cursor(row=names(app).index("digits/"))
        await pilot.press("x", "y")
        await settle(pilot)
        assert not any(k.startswith("digits/") for k in store.buckets["datasets"])
        assert any("deleted 3 objects" in n for n in notes(app))


async def test_new_bucket_and_bad_name():
    store = demo_store()
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("b")
        await pilot.pause()
        app.screen.query_one("Input").value = "fresh-data"
        await pilot.press("enter")
        await settle(pilot)
        assert "fresh-data" in store.buckets and "fresh-data" in names(app)
        await pilot.press("plus")
        app.screen.query_one("Input").value = "Bad_Name"
        await pilot.press("enter")
        await settle(pilot)
        assert "Bad_Name" not in store.buckets
        assert any("invalid bucket name" in n for n in notes(app))


async def test_copy_uri_and_presigned_url():
    app = app_for(demo_store("s3"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await open_path(pilot, "datasets")
        app.screen.objects.move_cursor(row=names(app).index("README.md"))
        await pilot.press("y")
        assert app.clipboard == "s3://datasets/README.md"
        await pilot.press("Y")
        await settle(pilot)
        assert app.clipboard.startswith("https://") and "datasets/README.md" in app.clipboard


async def test_presigned_url_only_on_s3():
    app = app_for(demo_store("local"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await open_path(pilot, "datasets")
        await pilot.press("y")
        assert app.clipboard == "local://datasets/README.md"
        app.screen.action_copy_url()
        await pilot.pause()
        assert app.clipboard == "local://datasets/README.md"
        assert any("need an S3 store" in n for n in notes(app))


async def test_read_only_hides_and_refuses_writes(tmp_path: Path):
    store = demo_store()
    app = app_for(store, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await open_path(pilot, "datasets")
        footer_keys = {b.binding.action for b in app.screen.active_bindings.values() if b.enabled}
        assert not {"upload", "delete", "new_bucket"} & footer_keys
        await pilot.press("u", "x", "b")
        await pilot.pause()
        assert isinstance(app.screen, BucketsScreen)  # no prompt opened
        app.screen.action_upload()
        app.screen.action_delete()
        await pilot.pause()
        assert isinstance(app.screen, BucketsScreen)
        assert sum("read-only" in n for n in notes(app)) == 2
        assert "README.md" in store.buckets["datasets"]
        await pilot.press("d")  # reading is still allowed
        await pilot.pause()
        assert isinstance(app.screen, InputPrompt)


async def test_use_as_training_data_opens_editor_with_the_prefix():
    app = app_for(demo_store())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await open_path(pilot, "datasets")
        app.screen.objects.move_cursor(row=names(app).index("digits/"))
        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, EditorScreen)
        import yaml

        data = yaml.safe_load(app.screen.area.text)
        assert data["data_stores"][0]["training_data"] == {"container": "datasets", "prefix": "digits/"}


class FailingStore(MemoryStore):
    def list(self, *a, **kw):
        from backend.facade import StoreError

        raise StoreError("connection refused by 127.0.0.1:9")


async def test_store_errors_are_notifications_not_crashes():
    store = FailingStore()
    store.add("datasets", "a", "b")
    app = app_for(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await open_path(pilot, "datasets")
        assert any("connection refused" in n for n in notes(app))
        assert isinstance(app.screen, BucketsScreen) and app.is_running
