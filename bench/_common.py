"""Helpers the benchmarks share: best-of-N timing and one printed row per figure."""
from __future__ import annotations

import time
from collections.abc import Callable


def timed(fn: Callable[[], object], repeat: int = 3) -> float:
    """The best of `repeat` wall-clock timings: the least disturbed run on a shared machine."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def row(label: str, value: float, unit: str, target: str, anchor: str) -> None:
    print(f"{label:<44} {value:>10.3f} {unit:<6} target {target:<10} anchor {anchor}")
