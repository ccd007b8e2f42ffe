"""Figures for the core: the fake engine at 10,000 runs, the metrics parser, cost metering.

Each figure is printed next to its target and an anchor measured in the same run on this machine:
  - seeding 10,000 runs vs building 10,000 bare Run objects;
  - an incremental changes() after one clock step vs a full listing;
  - parsing log lines vs Katib's default regex over the same lines (which gets `lr=1e-05` wrong).
Run: `.venv/bin/python bench/bench_core.py`.
"""
from __future__ import annotations

import re
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.cost import PriceTable, run_cost  # noqa: E402
from backend.engines.fake import FakeClock, FakeEngine  # noqa: E402
from backend.metrics import parse_metrics_line  # noqa: E402
from backend.runs import Run, RunEvent, RunState  # noqa: E402
from _common import row, timed  # noqa: E402  (bench/ is on sys.path when run as a script)

KATIB = re.compile(r"([\w|-]+)\s*=\s*((-?\d+)(\.\d+)?)")


def main() -> int:
    clock = FakeClock()

    def seed() -> FakeEngine:
        engine = FakeEngine(FakeClock(), devices=8, tier_gpus=4)
        engine.seed(10_000)
        return engine

    def bare() -> list[Run]:
        now = clock.now()
        return [Run(f"training-{i:08d}", "x", RunState.QUEUED, now) for i in range(10_000)]

    anchor = timed(bare)
    row("seed 10,000 runs (fake engine)", timed(seed, 1), "s", "<= 1 s", f"10,000 bare Run objects {anchor:.3f} s")

    engine = seed()
    full = timed(lambda: engine.list_runs())
    cursor = engine.changes().cursor
    engine.clock.advance(1)
    t0 = time.perf_counter()
    delta = engine.changes(cursor)
    incremental = time.perf_counter() - t0
    row("list_runs over 10,000", full, "s", "<= 0.5 s", "-")
    row(
        f"changes() after 1 s ({len(delta.runs)} changed)", incremental * 1000, "ms", "<= 10 ms",
        f"full listing {full * 1000:.1f} ms",
    )

    lines = [
        f"2026-11-27T02:00:{i % 60:02d}Z epoch={i} loss={1 / (i + 1):.6f} accuracy=.{i % 100:02d} lr=1e-05"
        for i in range(50_000)
    ]
    ours = timed(lambda: [parse_metrics_line(line) for line in lines])
    katib = timed(lambda: [KATIB.findall(line) for line in lines])
    row("parse 50,000 log lines", len(lines) / ours / 1000, "k/s", ">= 20k/s", f"Katib regex {len(lines) / katib / 1000:.0f} k/s")
    assert parse_metrics_line(lines[3]).values["lr"] == 1e-05
    assert KATIB.findall("lr=1e-05")[0][1] == "1"  # the anchor's known mistake

    t0 = clock.now()
    events = [RunEvent("r", t0, RunState.QUEUED)]
    for k in range(100):  # a run preempted 100 times
        events.append(RunEvent("r", t0 + timedelta(seconds=10 * k + 1), RunState.PENDING))
        events.append(RunEvent("r", t0 + timedelta(seconds=10 * k + 5), RunState.QUEUED))
    prices = PriceTable.defaults()
    cost = timed(lambda: [run_cost(events, "H100", 8, prices, t0) for _ in range(1000)])
    row("run_cost x1000 (201-event ledger)", cost * 1000, "ms", "<= 200 ms", "-")
    return 0


if __name__ == "__main__":
    sys.exit(main())
