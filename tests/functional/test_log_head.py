"""The top of a huge log (issue 22, item 11): `g`/Home show the first line at once, whatever the
scroll-back index is doing, and `G`/End the last; the head and the index join without a jump."""
from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from dlaas_tui.widgets import log_file
from dlaas_tui.widgets.log_file import LogFile
from dlaas_tui.widgets.log_view import LogView

from .tui_fixtures import wait_for, widget_text

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]
LINES = 3_000_000


@pytest.fixture(scope="module")
def huge_log(tmp_path_factory) -> Path:
    """Three million numbered lines (~80 MB), written in a second or two."""
    path = tmp_path_factory.mktemp("huge") / "huge.log"
    with open(path, "w", encoding="utf-8") as fh:
        step = 200_000
        for start in range(0, LINES, step):
            fh.write("".join(f"line {i} epoch={i % 97} loss=0.{i:07d}\n" for i in range(start, start + step)))
    return path


class Steps:
    """Counts the index's steps (the view takes one a tick), so a test can wait for ticks, not time."""

    def __init__(self) -> None:
        self.count = 0
        self.step = LogFile.step  # the counted step, once counted_steps has patched it in

    async def more(self, pilot, n: int) -> None:
        target = self.count + n
        await wait_for(pilot, lambda: self.count >= target, what=f"{n} more steps of the log index")
        await pilot.pause()  # what the last tick refreshed is drawn


def counted_steps(monkeypatch) -> Steps:
    """LogFile.step, counted; a test may wrap it further by patching again and calling `steps.step`."""
    real = LogFile.step
    steps = Steps()

    def step(self, *args, **kwargs):
        steps.count += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LogFile, "step", step)
    steps.step = step
    return steps


class LogApp(App[None]):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        yield LogView(self.path, save_name="saved.log")


def first_shown(view: LogView) -> str:
    return widget_text(view).splitlines()[0].strip()


def status(view: LogView) -> str:
    return view._status


async def timed_press(pilot, key: str, view: LogView, predicate) -> float:
    started = time.monotonic()
    await pilot.press(key)
    await wait_for(pilot, predicate, timeout=5.0)
    return time.monotonic() - started


@pytest.mark.parametrize("size", SIZES)
async def test_top_and_bottom_of_a_huge_log_while_the_index_is_stalled(size, huge_log, monkeypatch):
    """The index makes no progress at all: the first lines still come from the head of the file."""
    stalled = {"on": True}
    steps = counted_steps(monkeypatch)

    def step(self, budget_s: float = 0.008):
        return steps.step(self, 0.0 if stalled["on"] else budget_s)

    monkeypatch.setattr(LogFile, "step", step)
    app = LogApp(huge_log)
    async with app.run_test(size=size) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: f"line {LINES - 1} " in widget_text(view))
        assert not view.log_file.fully_indexed
        height = view.scrollable_content_region.height

        for key in ("g", "home"):
            took = await timed_press(pilot, key, view, lambda: first_shown(view).startswith("line 0 "))
            assert took < 1.0, f"{key}: {took:.2f}s"
            assert "line 1 of" in status(view) and not view.follow
            await pilot.press("j")
            await wait_for(pilot, lambda: first_shown(view).startswith("line 1 "))
            await pilot.press("pagedown", "pagedown", "pagedown")
            await wait_for(pilot, lambda: first_shown(view).startswith(f"line {1 + 3 * height} "))
            assert f"line {2 + 3 * height:,} of" in status(view)
            for key_end in ("G", "end"):
                took = await timed_press(pilot, key_end, view, lambda: f"line {LINES - 1} " in widget_text(view))
                assert took < 1.0, f"{key_end}: {took:.2f}s"
                assert view.follow
                await pilot.press("g")
                await wait_for(pilot, lambda: first_shown(view).startswith("line 0 "))

        # Far down the head, then the index is let go: when it reaches the top the view stays put.
        for _ in range(40):
            await pilot.press("pagedown")
        at = int(first_shown(view).split()[1])
        assert at == 40 * height
        stalled["on"] = False
        await wait_for(pilot, lambda: view.log_file.fully_indexed and not view.at_head, timeout=60)
        await steps.more(pilot, 3)  # the view's ticks after the join
        assert first_shown(view).startswith(f"line {at} ")
        assert not view.at_head and f"of {LINES:,} " in status(view) + " "
        await pilot.press("g")
        await wait_for(pilot, lambda: first_shown(view).startswith("line 0 "))
        await pilot.press("G")
        await wait_for(pilot, lambda: f"line {LINES - 1} " in widget_text(view))


@pytest.mark.parametrize("size", SIZES)
async def test_g_right_after_opening_a_huge_log_reaches_line_one(size, huge_log, monkeypatch):
    """The index runs as it does for a user: `g` at once, then again while it works, then after."""
    steps = counted_steps(monkeypatch)
    app = LogApp(huge_log)
    async with app.run_test(size=size) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: f"line {LINES - 1} " in widget_text(view))
        took = await timed_press(pilot, "g", view, lambda: first_shown(view).startswith("line 0 "))
        assert took < 1.0, f"g: {took:.2f}s"
        # Whatever the index does now, the view stays on the first line.
        for _ in range(10):
            await steps.more(pilot, 1)  # one more step of the index at a time
            assert first_shown(view).startswith("line 0 ")
        await wait_for(pilot, lambda: view.log_file.fully_indexed and not view.at_head, timeout=60)
        await steps.more(pilot, 3)  # the view's ticks after the join
        assert first_shown(view).startswith("line 0 ")
        took = await timed_press(pilot, "end", view, lambda: f"line {LINES - 1} " in widget_text(view))
        assert took < 1.0, f"end: {took:.2f}s"


def test_head_and_scroll_back_join_into_one_index(tmp_path, monkeypatch):
    """Random files, tiny blocks: the head reads the file's first lines, and once it meets the
    scroll-back every line number is the file's own."""
    monkeypatch.setattr(log_file, "BLOCK", 64)
    for trial in range(120):
        rnd = random.Random(trial)
        lines = [("x" * rnd.choice([0, 1, 5, 30, 70, 200])) + str(i) for i in range(rnd.randint(1, 80))]
        text = "\n".join(lines) + ("\n" if rnd.random() < 0.5 else "")
        path = tmp_path / f"f{trial}.log"
        path.write_text(text)
        expected = text.split("\n")
        if expected[-1] == "":
            expected.pop()
        lf = LogFile(path)
        want = rnd.randint(1, len(expected))
        lf.index_head(want, budget_s=1)
        assert [lf.head_raw_line(i).decode() for i in range(min(want, lf.head_lines))] == expected[: min(want, lf.head_lines)]
        assert lf.head_lines >= want or lf.head_complete
        added = 0
        while not lf.fully_indexed:
            added += lf.step(1).added_top
        assert [lf.raw_line(i).decode() for i in range(lf.line_count)] == expected
        assert lf.head_lines == 0
        lf.close()
