"""The cost contract: every engine bills the same shapes to the same micro-dollar.

A run's cost is worked out here, independently of backend/cost.py, from the engine's own ledger:
the spans from PENDING until STORING ends (DESIGN.md), times the billable units (GPUs x learners,
or one cpu slot per learner for a run that asked for no GPU), times the default price of the type,
with the per-run minimum. The live cost the engine shows while the run goes must never exceed the
final cost, and must equal it once the run has ended, in `get_run` and in `list_runs` alike.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest

from backend import clock
from backend.cost import canonical_gpu_type
from backend.runs import Run, RunState

S = RunState
BILLED = {S.PENDING, S.DOWNLOADING, S.PROCESSING, S.STORING}  # DESIGN.md: billing starts/ends here
RATES = {"H100": 6_880_000, "cpu": 50_000}  # DESIGN.md's defaults, micro-dollars per device-hour
HOUR_US = 3_600 * 10**6


def held_intervals(events) -> list[int]:
    """Microseconds of each billed span in the ledger (a run back in QUEUED opens a new one)."""
    spans, start = [], None
    for e in events:
        if e.state is None:
            continue
        if e.state in BILLED and start is None:
            start = e.at
        elif e.state not in BILLED and start is not None:
            delta = e.at - start
            spans.append((delta.days * 86_400 + delta.seconds) * 10**6 + delta.microseconds)
            start = None
    assert start is None, "the run ended but its ledger still bills"
    return spans


def expected_micro(run: Run, events, *, gpus: int, learners: int, minimum_s: int) -> int:
    spans = held_intervals(events)
    if not spans:
        return 0
    units = gpus * learners if gpus else learners
    kind = "cpu" if gpus == 0 else canonical_gpu_type(run.gpu_type)
    rate = RATES[kind]
    charged = max(sum(spans), minimum_s * 10**6)
    return (rate * units * charged + HOUR_US // 2) // HOUR_US


def sampling(harness, run_id: str, samples: list[int | None], until: Callable[[Run], bool]):
    """A wait_for predicate that records the live cost (get_run and list_runs) at every poll."""
    def predicate(run: Run) -> bool:
        samples.append(run.cost_micro_usd)
        listed = [r for r in harness.engine.list_runs() if r.id == run_id]
        samples.extend(r.cost_micro_usd for r in listed)
        return until(run)

    return predicate


def settled_figures(harness, run_id: str) -> set[int | None]:
    """The run's cost in get_run and list_runs once the engine is quiet, read an hour later."""
    with harness.later(3600):
        listed = [r.cost_micro_usd for r in harness.engine.list_runs() if r.id == run_id]
        return {harness.engine.get_run(run_id).cost_micro_usd, *listed}


def billed_more_than(floor: int) -> Callable[[Run], bool]:
    """The live cost has passed `floor`: the run has been billed for a while (no fixed sleep)."""
    return lambda r: (r.cost_micro_usd or 0) > floor


def billed_and_running(harness, tmp_path, name: str) -> tuple[Run, list[int | None]]:
    """A one-GPU run that keeps running, taken in by the engine and billed for a while; the live
    costs sampled on the way (the start the evicted and resumed runs share)."""
    run = harness.submit(tmp_path, kind="long", name=name, gpus=1)
    live: list[int | None] = []
    harness.wait_for(run.id, sampling(harness, run.id, live, lambda r: r.state == S.PROCESSING))
    harness.quiesce()  # the engine has taken in the running attempt (Kubernetes: its pod, in a sync round)
    harness.wait_for(run.id, sampling(harness, run.id, live, billed_more_than(0)))
    return run, live


@pytest.mark.parametrize(
    "shape, gpus, learners",
    [("one-gpu", 1, 1), ("cpu-slots", 0, 2), ("multi-learner", 1, 2)],
)
def test_live_cost_never_exceeds_the_final_cost_and_ends_equal(engine_factory, tmp_path, shape, gpus, learners):
    harness = engine_factory(devices=2, minimum_seconds=0)
    run = harness.submit(tmp_path, kind="quick", name=shape, gpus=gpus, learners=learners)
    live: list[int | None] = []
    done = harness.wait_for(run.id, sampling(harness, run.id, live, lambda r: r.state.terminal), timeout=90)
    assert done.state == S.COMPLETED, done.message
    events = harness.engine.events(run.id)
    want = expected_micro(done, events, gpus=gpus, learners=learners, minimum_s=0)
    assert want > 0
    assert done.cost_micro_usd == want, (shape, done.cost_micro_usd, want, held_intervals(events))
    assert all(c is not None and c <= want for c in live), (shape, max(c or 0 for c in live), want)
    assert settled_figures(harness, run.id) == {want}


def test_the_minimum_is_charged_once_per_run(engine_factory, tmp_path):
    harness = engine_factory(devices=2, minimum_seconds=600)
    run = harness.submit(tmp_path, kind="quick", name="minimum", gpus=0, learners=2)
    live: list[int | None] = []
    done = harness.wait_for(run.id, sampling(harness, run.id, live, lambda r: r.state.terminal), timeout=90)
    events = harness.engine.events(run.id)
    assert sum(held_intervals(events)) < 600 * 10**6
    # 600 s x 2 cpu slots x $0.05/h = $0.016667 exactly (rounded half up to the micro-dollar).
    assert done.cost_micro_usd == expected_micro(done, events, gpus=0, learners=2, minimum_s=600) == 16_667
    assert all(c is not None and c <= 16_667 for c in live)
    assert settled_figures(harness, run.id) == {16_667}


def test_an_evicted_run_pays_for_each_interval_once(engine_factory, tmp_path):
    harness = engine_factory(devices=2, minimum_seconds=0)
    run, live = billed_and_running(harness, tmp_path, "evicted")
    harness.evict(run.id)
    back = harness.wait_for(run.id, lambda r: any(e.state == S.QUEUED for e in harness.engine.events(r.id)[1:]))
    assert back.state != S.COMPLETED
    back = harness.wait_for(run.id, sampling(harness, run.id, live, lambda r: r.state == S.PROCESSING))
    harness.wait_for(run.id, sampling(harness, run.id, live, billed_more_than(back.cost_micro_usd or 0)))
    harness.engine.halt(run.id)
    done = harness.wait_for(run.id, sampling(harness, run.id, live, lambda r: r.state.terminal))
    assert done.state == S.HALTED
    events = harness.engine.events(run.id)
    assert len(held_intervals(events)) == 2
    want = expected_micro(done, events, gpus=1, learners=1, minimum_s=0)
    assert done.cost_micro_usd == want
    assert all(c is not None and c <= want for c in live)
    assert settled_figures(harness, run.id) == {want}


def test_a_run_halted_while_queued_costs_zero_even_unpriced(engine_factory, tmp_path):
    harness = engine_factory(devices=1, tier_gpus=1, priced=False)
    busy = harness.submit(tmp_path, kind="long", name="busy")
    waiting = harness.submit(tmp_path, kind="long", name="waiting")
    harness.wait_for(busy.id, lambda r: r.state == S.PROCESSING)
    harness.engine.halt(waiting.id)
    halted = harness.wait_for(waiting.id, lambda r: r.state.terminal)
    assert halted.state == S.HALTED and halted.admitted_at is None
    assert halted.cost_micro_usd == 0 and halted.to_json()["cost_usd"] == 0
    assert settled_figures(harness, waiting.id) == {0}
    harness.engine.halt(busy.id)
    harness.wait_for(busy.id, lambda r: r.state.terminal)


def test_every_engine_gives_the_same_learned_eta(engine_factory, tmp_path):
    """backend/eta.py on every engine: nothing known -> no ETA; after a run of the manifest has
    completed, a queued run's ETA is the running one's admission plus what that run took."""
    harness = engine_factory(devices=1, tier_gpus=1)
    blocker = harness.submit(tmp_path, kind="long", name="learn")
    waiting = harness.submit(tmp_path, kind="quick", name="learn")
    harness.wait_for(blocker.id, lambda r: r.state == S.PROCESSING)
    assert harness.engine.get_run(waiting.id).eta is None  # no max_duration, nothing completed: unknown
    harness.engine.halt(blocker.id)
    first = harness.wait_for(waiting.id, lambda r: r.state.terminal, timeout=90)
    assert first.state == S.COMPLETED
    took = (first.finished_at - first.admitted_at).total_seconds()
    running = harness.submit(tmp_path, kind="long", name="learn")
    queued = harness.submit(tmp_path, kind="quick", name="learn")
    running = harness.wait_for(running.id, lambda r: r.state == S.PROCESSING)
    seen = harness.wait_for(queued.id, lambda r: r.eta is not None, timeout=30)
    assert seen.state == S.QUEUED and not seen.eta_bound and seen.to_json()["eta_upper_bound"] is False
    looked = (harness.clock.now() if hasattr(harness, "clock") else clock.now()).timestamp()
    expected = running.admitted_at.timestamp() + took  # or "now", once the running run is past it
    # an engine may keep an ETA that moved by under a second (the Kubernetes ledger does)
    assert expected - 1.5 <= seen.eta.timestamp() <= max(expected, looked) + 1.5, (seen.eta, took)
    harness.engine.halt(queued.id)
    harness.engine.halt(running.id)
    harness.wait_for(running.id, lambda r: r.state.terminal)


def test_a_resumed_run_pays_for_each_attempt_once(engine_factory, tmp_path):
    harness = engine_factory(devices=2, minimum_seconds=0)
    run, live = billed_and_running(harness, tmp_path, "resumed")
    harness.engine.halt(run.id)
    first = harness.wait_for(run.id, sampling(harness, run.id, live, lambda r: r.state.terminal))
    assert first.state == S.HALTED
    harness.engine.resume(run.id)
    harness.wait_for(run.id, sampling(harness, run.id, live, lambda r: r.state == S.PROCESSING))
    harness.wait_for(run.id, sampling(harness, run.id, live, billed_more_than(first.cost_micro_usd or 0)))
    harness.engine.halt(run.id)
    done = harness.wait_for(run.id, sampling(harness, run.id, live, lambda r: r.state.terminal))
    events = harness.engine.events(run.id)
    assert len(held_intervals(events)) == 2
    want = expected_micro(done, events, gpus=1, learners=1, minimum_s=0)
    assert done.cost_micro_usd == want and want > first.cost_micro_usd
    assert all(c is not None and c <= want for c in live), (live, want)
    # what the first attempt cost stays on the bill while the run waits again (it never goes back)
    assert all(a <= b for a, b in zip(live, live[1:])), live
    assert settled_figures(harness, run.id) == {want}


def test_the_live_cost_grows_while_the_run_holds_its_devices(engine_factory, tmp_path):
    """What makes `settled_figures` a check: read an hour later, a run still running costs more
    (and one that has ended, the same: see the tests above)."""
    harness = engine_factory(devices=2, minimum_seconds=0)
    run = harness.submit(tmp_path, kind="long", name="growing", gpus=1)
    now = harness.wait_for(run.id, lambda r: r.state == S.PROCESSING).cost_micro_usd or 0
    with harness.later(3600):
        later = harness.engine.get_run(run.id).cost_micro_usd
    # most of an hour more, at the cheapest rate there is (a harness may price a cpu slot)
    assert later is not None and later - now >= min(RATES.values()) * 9 // 10, (now, later)
    harness.engine.halt(run.id)
    assert harness.wait_for(run.id, lambda r: r.state.terminal).state == S.HALTED
