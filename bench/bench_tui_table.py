"""The runs table with 10,000 runs, next to Textual's DataTable in the same run.

Targets (issue 4): first paint of 10,000 runs <= 0.2 s; a 1 Hz tick with 5 % of runs changed
<= 20 ms of main-thread time. Both are measured inside a headless app: the data work plus one
render of every visible line (what a frame costs). The anchor is DataTable doing the same.

    python bench/bench_tui_table.py [--runs N]
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
HOME = tempfile.mkdtemp(prefix="bench-tui-")
os.environ.setdefault("DLAAS_HOME", HOME)

from textual.app import App, ComposeResult  # noqa: E402
from textual.widgets import DataTable  # noqa: E402

from backend.engines.fake.clock import FakeClock  # noqa: E402
from backend.engines.fake.engine import FakeEngine  # noqa: E402
from backend.facade import RunState  # noqa: E402
from dlaas_tui.widgets.run_table import COLUMNS, RunTable, layout  # noqa: E402

FIRST_PAINT_TARGET = 0.2
TICK_TARGET = 0.020


def render_visible(widget) -> None:
    for y in range(widget.size.height):
        widget.render_line(y)


def changed_runs(runs, fraction: float, round_: int):
    step = max(1, int(1 / fraction))
    out = []
    for i, run in enumerate(runs[round_ % step :: step]):
        out.append(
            dataclasses.replace(
                run,
                cost_micro_usd=(run.cost_micro_usd or 0) + 1000 * (round_ + 1),
                state=RunState.PROCESSING if i % 2 else run.state,
                updated_at=run.submitted_at + timedelta(seconds=round_),
            )
        )
    return out


class TableApp(App[None]):
    def __init__(self, widget) -> None:
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget


async def bench_ours(runs, clock, rounds: int) -> tuple[float, list[float]]:
    table = RunTable(clock=clock.now)
    app = TableApp(table)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        t0 = time.perf_counter()
        table.apply(runs, full=True)
        render_visible(table)
        first = time.perf_counter() - t0
        await pilot.pause()
        ticks = []
        for r in range(rounds):
            changed = changed_runs(runs, 0.05, r)
            t0 = time.perf_counter()
            table.apply(changed)
            table.tick()
            render_visible(table)
            ticks.append(time.perf_counter() - t0)
            await pilot.pause()
    return first, ticks


async def bench_datatable(runs, rounds: int) -> tuple[float, list[float]]:
    from dlaas_tui.widgets.run_table import format_cost, format_gpus, format_queue

    table = DataTable()
    app = TableApp(table)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        keys = [c.key for c in COLUMNS]
        widths = {c.key: w for c, w in layout(160)}
        t0 = time.perf_counter()
        for c in COLUMNS:
            table.add_column(c.title, key=c.key, width=widths.get(c.key, len(c.title)))
        table.add_rows(
            [[r.id, r.name, r.experiment or "", r.state.value, format_queue(r), format_gpus(r),
              ",".join(r.assigned), "", format_cost(r), "", ""] for r in runs]
        )
        # DataTable keys rows itself; update_cell needs its keys.
        row_keys = list(table.rows)
        await pilot.pause()
        first = time.perf_counter() - t0
        index = {r.id: row_keys[i] for i, r in enumerate(runs)}
        ticks = []
        for rnd in range(rounds):
            changed = changed_runs(runs, 0.05, rnd)
            t0 = time.perf_counter()
            for run in changed:
                table.update_cell(index[run.id], "state", run.state.value)
                table.update_cell(index[run.id], "cost", format_cost(run))
            await pilot.pause()
            ticks.append(time.perf_counter() - t0)
        del keys
    return first, ticks


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    clock = FakeClock()
    engine = FakeEngine(clock, devices=64)
    t0 = time.perf_counter()
    engine.seed(args.runs)
    runs = engine.list_runs()
    print(f"seeded {len(runs):,} runs in {time.perf_counter() - t0:.2f} s")

    first, ticks = asyncio.run(bench_ours(runs, clock, args.rounds))
    dt_first, dt_ticks = asyncio.run(bench_datatable(runs, min(args.rounds, 3)))
    tick = sorted(ticks)[len(ticks) // 2]
    dt_tick = sorted(dt_ticks)[len(dt_ticks) // 2]
    ok_first = first <= FIRST_PAINT_TARGET
    ok_tick = tick <= TICK_TARGET
    print(f"first paint, {len(runs):,} runs:   RunTable {first * 1000:8.1f} ms   target <= {FIRST_PAINT_TARGET * 1000:.0f} ms"
          f"   anchor DataTable {dt_first * 1000:8.1f} ms   {'OK' if ok_first else 'MISSED'}")
    print(f"tick, 5 % changed (median):   RunTable {tick * 1000:8.1f} ms   target <= {TICK_TARGET * 1000:.0f} ms"
          f"   anchor DataTable {dt_tick * 1000:8.1f} ms (update_cell x2 per run + frame)   {'OK' if ok_tick else 'MISSED'}")
    print(f"tick max over {len(ticks)} rounds: {max(ticks) * 1000:.1f} ms")
    shutil.rmtree(HOME, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
