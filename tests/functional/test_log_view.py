"""The log view: opens at the tail, follows a writer, wraps, hides timestamps, searches, saves,
and never lets a log line drive the terminal."""
from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path

from textual.app import App, ComposeResult

from dlaas_tui.widgets import log_file
from dlaas_tui.widgets.log_file import LogFile
from dlaas_tui.widgets.log_view import LogView, compile_search

from .tui_fixtures import wait_for, widget_text


class LogApp(App[None]):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        yield LogView(self.path, save_name="saved.log")


def write_lines(path: Path, lines, mode: str = "w") -> None:
    with open(path, mode, encoding="utf-8") as fh:
        for line in lines:
            fh.write(line + "\n")


async def test_opens_at_the_tail(tmp_path):
    path = tmp_path / "big.log"
    write_lines(path, (f"line {i}" for i in range(200_000)))
    app = LogApp(path)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: "line 199999" in widget_text(view), what="the tail shown")
        text = widget_text(view)
        assert "line 199999" in text.splitlines()[-1] or "line 199999" in text
        assert "line 0\n" not in text
        assert view.follow
        # Scroll-back fills in from the end while the view stays where it is.
        await wait_for(pilot, lambda: view.log_file.fully_indexed)
        assert view.line_count == 200_000
        assert "line 199999" in widget_text(view)
        await pilot.press("g")
        assert widget_text(view).startswith("line 0 ")
        assert not view.follow


async def test_follows_a_writer_and_stops_following_when_scrolled_up(tmp_path):
    path = tmp_path / "live.log"
    write_lines(path, (f"old {i}" for i in range(100)))
    app = LogApp(path)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: "old 99" in widget_text(view), what="the log shown")
        write_lines(path, (f"new {i}" for i in range(500)), mode="a")
        await wait_for(pilot, lambda: "new 499" in widget_text(view))
        await pilot.press("k")
        assert not view.follow
        write_lines(path, ["after scroll"], mode="a")
        await wait_for(pilot, lambda: view.line_count == 601)
        assert "after scroll" not in widget_text(view)
        await pilot.press("s")
        assert view.follow
        await wait_for(pilot, lambda: "after scroll" in widget_text(view))
        # An unfinished last line shows, then completes in place.
        with open(path, "a") as fh:
            fh.write("partial")
        await wait_for(pilot, lambda: "partial" in widget_text(view))
        with open(path, "a") as fh:
            fh.write(" done\n")
        await wait_for(pilot, lambda: "partial done" in widget_text(view))
        assert view.line_count == 602


async def test_wrap_and_timestamps_toggle(tmp_path):
    path = tmp_path / "ts.log"
    write_lines(path, [f"2026-01-05T09:00:0{i}Z message {i} " + "x" * 150 for i in range(5)])
    app = LogApp(path)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: "message 4" in widget_text(view), what="the log shown")
        text = widget_text(view)
        assert "message 4" in text and "2026-01-05T09" not in text
        await pilot.press("t")
        assert "2026-01-05T09:00:04Z message 4" in widget_text(view)
        await pilot.press("w")
        assert view.wrap
        rows = [r for r in widget_text(view).splitlines() if r.strip()]
        assert len(rows) >= 12  # each 181-character line became three rows
        assert rows[-1].rstrip().endswith("x")


async def test_search_highlights_every_match_and_jumps(tmp_path):
    path = tmp_path / "search.log"
    write_lines(path, [f"step {i} {'ERROR disk' if i % 100 == 7 else 'ok'}" for i in range(1000)])
    app = LogApp(path)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: "step 999 " in widget_text(view), what="the log shown")
        await pilot.press("g")
        view.set_search("error")
        await wait_for(pilot, lambda: view.current_match == 7)
        assert view.line_count == 1000  # highlighting, never filtering
        strip = view.render_line(view.current_match - int(view.scroll_y))
        styled = [seg for seg in strip if seg.text == "ERROR"]
        assert styled and styled[0].style.bgcolor is not None
        await pilot.press("n")
        await wait_for(pilot, lambda: view.current_match == 107)
        await pilot.press("n")
        await wait_for(pilot, lambda: view.current_match == 207)
        await pilot.press("N")
        await wait_for(pilot, lambda: view.current_match == 107)
        view.set_search(r"step 9\d9 ")
        await wait_for(pilot, lambda: view.current_match == 909)


def test_compile_search_regex_text_and_smart_case():
    text, raw = compile_search("Err.r")
    assert text.search("Error") and not text.search("error")
    text, raw = compile_search("a(")  # not a regex: taken literally
    assert text.search("xa(y") and raw.search(b"xa(y")
    assert compile_search("") is None and compile_search(".*") is None


async def test_ctrl_s_saves_the_log(tmp_path, monkeypatch):
    path = tmp_path / "run.log"
    write_lines(path, [f"l{i}" for i in range(50)])
    monkeypatch.chdir(tmp_path)
    app = LogApp(path)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: "l49" in widget_text(view), what="the log shown")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: (tmp_path / "saved.log").exists())
        assert (tmp_path / "saved.log").read_bytes() == path.read_bytes()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: (tmp_path / "saved-1.log").exists())


async def test_markup_ansi_and_osc_are_shown_literally(tmp_path):
    path = tmp_path / "evil.log"
    evil = [
        "[bold red]not bold[/bold red] [link=https://evil.example]click[/link]",
        "\x1b[31mred\x1b[0m \x1b]8;;https://evil.example\x07link\x1b]8;;\x07 \x1b]52;c;cGF3bmVk\x07",
        "\x1b]0;new title\x07 bell\x07 c1-csi\x9b31m tab\tend",
    ]
    write_lines(path, evil)
    app = LogApp(path)
    async with app.run_test(size=(160, 24)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: view.line_count == 3 and "c1-csi" in widget_text(view), what="the log shown")
        segments = [seg for y in range(view.size.height) for seg in view.render_line(y)]
        text = "".join(seg.text for seg in segments)
        for ch in "\x1b\x07\x9b\t":
            assert ch not in text
        assert "[bold red]not bold[/bold red] [link=https://evil.example]click[/link]" in text
        assert "␛[31mred␛[0m ␛]8;;https://evil.example␇link" in text
        assert "␛]52;c;cGF3bmVk␇" in text and "\\x9b31m" in text
        assert all(seg.style is None or seg.style.link is None for seg in segments)


async def test_a_ten_megabyte_line_stays_responsive(tmp_path):
    path = tmp_path / "one.log"
    with open(path, "w") as fh:
        fh.write("start " + "y" * (10 * 1024 * 1024) + " end\n")
        fh.write("next line\n")
    app = LogApp(path)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: "next line" in widget_text(view) and "start yyyy" in widget_text(view),
                       what="both lines shown")
        text = widget_text(view)
        assert "next line" in text and "start yyyy" in text
        started = time.perf_counter()
        await pilot.press("w", "k", "t", "w")
        assert time.perf_counter() - started < 5  # generous: a shared machine; the point is no hang
        assert "more bytes]" in "".join(seg.text for seg in view.render_line(0)) or view.wrap is False


def test_log_file_index_matches_splitlines(tmp_path, monkeypatch):
    """Random files, tiny blocks: every line, append and search agrees with str.split."""
    monkeypatch.setattr(log_file, "BLOCK", 64)
    for trial in range(150):
        rnd = random.Random(trial)
        lines = [("x" * rnd.choice([0, 1, 5, 30, 70, 200])) + str(i) for i in range(rnd.randint(0, 60))]
        text = "\n".join(lines) + ("\n" if rnd.random() < 0.5 and lines else "")
        path = tmp_path / f"f{trial}.log"
        path.write_text(text)
        lf = LogFile(path)
        while lf.step(1).changed:
            pass
        expected = text.split("\n")
        if expected and expected[-1] == "":
            expected.pop()
        assert [lf.raw_line(i).decode() for i in range(lf.line_count)] == expected
        extra = "".join(rnd.choice(["a", "b\n", "cc\n", "\n"]) for _ in range(rnd.randint(0, 40)))
        with open(path, "a") as fh:
            fh.write(extra)
        result = lf.step(1)
        expected2 = (text + extra).split("\n")
        if expected2 and expected2[-1] == "":
            expected2.pop()
        assert [lf.raw_line(i).decode() for i in range(lf.line_count)] == expected2
        assert result.added_bottom == len(expected2) - len(expected)
        hits = [i for i, line in enumerate(expected2) if "5" in line]
        snap = lf.blocks_in_order()
        assert lf.search(re.compile(b"5"), -1, False, snap) == (hits[0] if hits else None)
        assert lf.search(re.compile(b"5"), len(expected2), True, snap) == (hits[-1] if hits else None)
        lf.close()


def test_log_file_truncation_starts_over(tmp_path):
    path = tmp_path / "rot.log"
    write_lines(path, [f"a{i}" for i in range(100)])
    lf = LogFile(path)
    write_lines(path, ["fresh"])
    result = lf.step()
    assert result.reset and lf.line_count == 1 and lf.raw_line(0) == b"fresh"
    lf.close()


def test_log_file_empty_then_written(tmp_path):
    path = tmp_path / "empty.log"
    path.write_text("")
    lf = LogFile(path)
    assert lf.line_count == 0
    write_lines(path, ["first"])
    assert lf.step().added_bottom == 1 and lf.raw_line(0) == b"first"
    lf.close()


def test_open_is_independent_of_file_size(tmp_path):
    """Opening indexes one block at the end, however long the file is."""
    path = tmp_path / "long.log"
    with open(path, "wb") as fh:
        chunk = b"".join(b"%08d some log text to make the line longer\n" % i for i in range(100_000))
        for _ in range(30):  # ~150 MB
            fh.write(chunk)
    lf = LogFile(path)
    assert lf.indexed_bytes <= log_file.BLOCK
    assert lf.raw_line(lf.line_count - 1).startswith(b"00099999")
    lf.close()
    os.unlink(path)


async def test_an_empty_log_says_so_rather_than_line_1_of_0(tmp_path):
    """No line yet: the status says what its owner knows (default "empty log"), never "line 1 of 0";
    the first line written brings the line count back."""
    path = tmp_path / "empty.log"
    path.write_text("")
    app = LogApp(path)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: view._status.startswith("empty log  ·  follow on"), what="the empty status")
        view.set_empty_note("no log yet: the run has not started")
        assert view._status.startswith("no log yet: the run has not started  ·  follow on")
        assert "of 0" not in view._status
        write_lines(path, ["started"], mode="a")
        await wait_for(pilot, lambda: view._status.startswith("line 1 of 1  ·  "), what="the line counted")
        assert "started" in widget_text(view)
