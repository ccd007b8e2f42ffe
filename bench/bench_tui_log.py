"""The log view on a 1 GB, 10-million-line log and under a writer appending 200,000 lines/s.

Targets (issue 4): open at the tail <= 0.3 s; while a writer appends 200,000 lines/s a keypress is
answered within 100 ms; once the writer stops its last line is on screen within 0.5 s. Issue 22:
right after opening, `g` shows the first line and `G` the last within 1 s each, whatever the
scroll-back index is doing (anchor: `head -n 40`). Anchors in
the same run: Textual's Log ingesting lines (its rate, extrapolated to 10 M lines), and `tail -n 40`
on the same file. NOTES.md: toolong 1.5.0 took 30 s to show the last line of such a file.
Big files go under /tmp and are deleted at the end.

    python bench/bench_tui_log.py [--lines N] [--rate LINES_PER_S] [--seconds S]
"""
from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from textual import events  # noqa: E402
from textual.app import App, ComposeResult  # noqa: E402
from textual.widgets import Log  # noqa: E402

from dlaas_tui.widgets.log_view import LogView  # noqa: E402

OPEN_TARGET = 0.3
KEY_TARGET = 0.100
CATCH_UP_TARGET = 0.5
TOP_BOTTOM_TARGET = 1.0

WRITER = r"""
import sys, time
path, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
batch = rate // 20
n = 0
with open(path, "a", buffering=1 << 20) as fh:
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        fh.write("".join(f"writer line {n + i:09d} loss=0.{(n + i) % 1000:03d} some more text\n" for i in range(batch)))
        fh.flush()
        n += batch
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    fh.write(f"LAST LINE {n}\n")
print(n)
"""


def make_big_file(path: Path, lines: int) -> None:
    per_chunk = 100_000
    pad = "x" * 68
    with open(path, "wb") as fh:
        for start in range(0, lines, per_chunk):
            end = min(lines, start + per_chunk)
            fh.write("".join(f"{i:010d} step={i} loss=0.{i % 997:03d} {pad}\n" for i in range(start, end)).encode())


class ViewApp(App[None]):
    def __init__(self, widget) -> None:
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget


def last_text(view: LogView) -> str:
    return "\n".join(view.render_line(y).text for y in range(view.size.height))


async def bench_open(path: Path, lines: int) -> float:
    view = LogView()
    app = ViewApp(view)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        wanted = f"{lines - 1:010d}"
        t0 = time.perf_counter()
        view.open(path)
        while wanted not in last_text(view):
            await asyncio.sleep(0.001)
        await pilot.pause()  # the frame that shows it
        return time.perf_counter() - t0


async def bench_top_bottom(path: Path, lines: int) -> tuple[float, float, bool]:
    """Seconds from `g` to the first line on screen, then from `G` to the last, right after opening."""
    view = LogView()
    app = ViewApp(view)
    first, last = f"{0:010d} ", f"{lines - 1:010d} "
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        view.open(path)
        while last not in last_text(view):
            await asyncio.sleep(0.001)
        indexing = not view.log_file.fully_indexed
        timings = []
        for key, wanted, top in (("g", first, True), ("G", last, False)):
            t0 = time.perf_counter()
            await pilot.press(key)
            while not (last_text(view).startswith(wanted) if top else wanted in last_text(view)):
                await asyncio.sleep(0.001)
                if time.perf_counter() - t0 > 120:
                    break
            timings.append(time.perf_counter() - t0)
        return timings[0], timings[1], indexing


async def bench_log_widget(path: Path, sample: int) -> float:
    """Textual's Log: lines per second it ingests (read + write_lines + a frame)."""
    log = Log()
    app = ViewApp(log)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        t0 = time.perf_counter()
        with open(path, encoding="utf-8") as fh:
            batch = []
            for i, line in enumerate(fh):
                if i >= sample:
                    break
                batch.append(line.rstrip("\n"))
                if len(batch) == 10_000:
                    log.write_lines(batch)
                    batch = []
            log.write_lines(batch)
        await pilot.pause()
        return sample / (time.perf_counter() - t0)


async def bench_writer(path: Path, rate: int, seconds: float) -> tuple[list[float], float, int]:
    path.write_text("")
    view = LogView(path)
    app = ViewApp(view)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(rate), str(seconds)],
                                  stdout=subprocess.PIPE, text=True)
        latencies = []
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end and writer.poll() is None:
            await asyncio.sleep(0.2)
            # A key as the terminal driver delivers it; answered = its action has run and the
            # frame after it has been composed.
            before = view.timestamps
            t0 = time.perf_counter()
            app.post_message(events.Key("t", "t"))
            while view.timestamps == before:
                await asyncio.sleep(0.001)
            view.render_line(0)
            latencies.append(time.perf_counter() - t0)
        if view.wrap:
            await pilot.press("w")
        await pilot.press("s") if not view.follow else None
        written = int(writer.communicate()[0].strip())
        t_stop = time.perf_counter()
        while f"LAST LINE {written}" not in last_text(view):
            await asyncio.sleep(0.005)
            if time.perf_counter() - t_stop > 30:
                break
        await pilot.pause()
        catch_up = time.perf_counter() - t_stop
    return latencies, catch_up, written


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--rate", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-log-", dir="/tmp"))
    big = tmp / "big.log"
    try:
        t0 = time.perf_counter()
        make_big_file(big, args.lines)
        size = big.stat().st_size
        print(f"wrote {args.lines:,} lines, {size / 1e9:.2f} GB in {time.perf_counter() - t0:.1f} s")

        opened = asyncio.run(bench_open(big, args.lines))
        t0 = time.perf_counter()
        subprocess.run(["tail", "-n", "40", str(big)], stdout=subprocess.DEVNULL, check=True)
        tail_s = time.perf_counter() - t0
        rate = asyncio.run(bench_log_widget(big, 200_000))
        log_estimate = args.lines / rate
        print(f"open at the tail:  LogView {opened * 1000:7.1f} ms   target <= {OPEN_TARGET * 1000:.0f} ms   "
              f"anchors: Textual Log {rate:,.0f} lines/s -> {log_estimate:,.0f} s for the file; "
              f"tail -n 40 {tail_s * 1000:.1f} ms; toolong 1.5.0 30 s (NOTES.md)   "
              f"{'OK' if opened <= OPEN_TARGET else 'MISSED'}")
        top_s, bottom_s, indexing = asyncio.run(bench_top_bottom(big, args.lines))
        t0 = time.perf_counter()
        subprocess.run(["head", "-n", "40", str(big)], stdout=subprocess.DEVNULL, check=True)
        head_s = time.perf_counter() - t0
        worst = max(top_s, bottom_s)
        print(f"g then G after opening{' (index still running)' if indexing else ''}: first line "
              f"{top_s * 1000:7.1f} ms, last line {bottom_s * 1000:7.1f} ms   target <= "
              f"{TOP_BOTTOM_TARGET * 1000:.0f} ms each   anchor: head -n 40 {head_s * 1000:.1f} ms   "
              f"{'OK' if worst <= TOP_BOTTOM_TARGET else 'MISSED'}")
        big.unlink()

        live = tmp / "live.log"
        latencies, catch_up, written = asyncio.run(bench_writer(live, args.rate, args.seconds))
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        worst = latencies[-1]
        print(f"writer wrote {written:,} lines in {args.seconds:.0f} s ({written / args.seconds:,.0f} lines/s)")
        print(f"keypress while writing: median {p50 * 1000:6.1f} ms, worst {worst * 1000:6.1f} ms over "
              f"{len(latencies)} keys   target <= {KEY_TARGET * 1000:.0f} ms   "
              f"anchor: Textual Log ingests {rate:,.0f} lines/s headless   "
              f"{'OK' if worst <= KEY_TARGET else 'MISSED'}")
        print(f"last line on screen after the writer stops: {catch_up * 1000:6.1f} ms   "
              f"target <= {CATCH_UP_TARGET * 1000:.0f} ms   {'OK' if catch_up <= CATCH_UP_TARGET else 'MISSED'}")
    finally:
        for f in tmp.glob("*"):
            f.unlink()
        tmp.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
