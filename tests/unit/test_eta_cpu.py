"""Queue ETAs on a box whose devices are cpu slots, and with the box's cores and memory: a run that
asks for no GPU still holds a slot (one per learner) and its cores and memory, so the estimate waits
for running runs to free them, by the scheduler's own rules (backend/eta.py's `slots_held` and
`box_short`, which `plan` admits by). Read from the local engine's ledger as a listing reads it."""
from __future__ import annotations

import json
import os
import random
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from backend.engines.local import eta
from backend.engines.local.scheduler import GATE_FILTER, Box, FreeDevice, plan
from backend.eta import format_eta, slots_held
from backend.ledger import db

GiB = 2**30
NOW = 100_000.0


@pytest.fixture
def conn(tmp_path):
    c = db.connect(tmp_path / "state" / "state.db")
    yield c
    c.close()


def add(conn, rid: str, *, gpus: int = 0, learners: int = 1, at: float = 0.0, max_s: float | None = 600,
        cores: int | None = None, memory_gib: float = 0, running_on: list[str] | None = None,
        started: float = 0.0, wait: dict | None = None) -> None:
    """A QUEUED run (or, with `running_on`, one PROCESSING on those devices since NOW - started).
    cores/memory_gib: what it holds of the box (recorded at submit as cpus_total/memory_total);
    wait: its gate (spec.wait: a hold, prerequisites, a begin time), which admission waits out."""
    spec = {"command": "true", "manifest_name": rid, "cpus_total": learners if cores is None else cores,
            "memory_total": int(memory_gib * GiB)}
    if wait is not None:
        spec["wait"] = wait
    if max_s is not None:
        spec["max_duration_s"] = max_s
    with db.write(conn):
        db.insert_run(conn, {
            "id": rid, "name": rid, "profile": "local", "state": "QUEUED", "priority": "normal", "prio": 0,
            "submitted_at": 1000.0 + at, "gpus": gpus, "learners": learners, "spec": spec,
        }, db.next_seq(conn))
    if running_on is not None:
        with db.write(conn):
            db.set_fields(conn, rid, {"state": "PROCESSING", "assigned": running_on, "admitted_at": NOW - started})


def starts(conn, *, slots: int = 0, tier: int = 0, gpus: dict | None = None,
           box: tuple[int | None, int | None] | None = None) -> dict[str, float]:
    """Seconds from NOW to each QUEUED run's estimated start, as engine_etas asks: a cpu-slot box
    (`slots`) or a GPU box (`gpus`)."""
    capacity = len(gpus) if gpus else slots
    capacity = min(tier, capacity) if tier else capacity
    etas = eta.local_etas(conn, capacity, now=NOW, caps={}, devices=gpus or {}, tier=tier,
                          cpu_slots=0 if gpus else slots, box=box)
    return {rid: e.at.timestamp() - NOW for rid, e in etas.items()}


def bounds(conn, **kw) -> dict[str, bool]:
    capacity = kw.get("slots", 0)
    return {rid: e.bound for rid, e in eta.local_etas(conn, capacity, now=NOW, caps={}, cpu_slots=capacity).items()}


def test_on_a_one_slot_box_a_queued_cpu_run_starts_when_the_running_one_ends(conn):
    # The case seen in the queue: "cpu slots busy: needs 1, 0 free" next to "#1 ~now".
    add(conn, "r", max_s=600, running_on=["cpu:0"], started=100)  # its bound: ends at +500
    add(conn, "q1", at=1, max_s=300)
    add(conn, "q2", at=2, max_s=100)
    got = starts(conn, slots=1)
    assert got == {"q1": 500, "q2": 800}
    assert bounds(conn, slots=1) == {"q1": True, "q2": True}  # max_duration: an upper bound, shown ≤
    e = eta.local_etas(conn, 1, now=NOW, caps={}, cpu_slots=1)["q1"]
    assert format_eta(e.at, datetime.fromtimestamp(NOW, timezone.utc), bound=e.bound) == "≤8m"


def test_on_a_two_slot_box_queued_cpu_runs_take_the_slots_as_they_free(conn):
    add(conn, "r", max_s=600, running_on=["cpu:0"], started=100)  # ends at +500
    add(conn, "a", at=1, max_s=300)  # the free slot: now; ends at +300
    add(conn, "b", at=2, max_s=100)  # a's slot at +300; ends at +400
    add(conn, "c", at=3, max_s=50)  # b's slot at +400 (before r ends)
    add(conn, "d", at=4, max_s=50)  # c's slot at +450
    assert starts(conn, slots=2) == {"a": 0, "b": 300, "c": 400, "d": 450}


def test_a_learned_duration_is_an_estimate_not_a_bound(conn):
    add(conn, "done", max_s=None)
    with db.write(conn):
        db.set_fields(conn, "done", {"state": "COMPLETED", "admitted_at": 10.0, "finished_at": 70.0})
    with db.write(conn):  # a run of the same manifest, running for 20 s: learned to end at +40
        db.insert_run(conn, {"id": "r", "name": "done", "profile": "local", "state": "QUEUED", "priority": "normal",
                             "prio": 0, "submitted_at": 1001.0, "gpus": 0, "learners": 1,
                             "spec": {"command": "true", "manifest_name": "done", "cpus_total": 1}},
                      db.next_seq(conn))
        db.set_fields(conn, "r", {"state": "PROCESSING", "assigned": ["cpu:0"], "admitted_at": NOW - 20})
    add(conn, "q", at=2)
    assert starts(conn, slots=1) == {"q": 40}
    assert bounds(conn, slots=1) == {"q": False}


def test_a_running_cpu_run_with_no_known_end_leaves_what_waits_for_its_slot_without_an_eta(conn):
    add(conn, "r", max_s=None, running_on=["cpu:0"])  # no max_duration, nothing learned: end unknown
    add(conn, "a", at=1, max_s=300)
    add(conn, "b", at=2, max_s=300)
    assert starts(conn, slots=1) == {}  # no invented "now", nor any time, for either
    # Two slots: a takes the free one now; b gets a's when it ends (+300), not r's, whose end is unknown.
    assert starts(conn, slots=2) == {"a": 0, "b": 300}


def test_learners_of_a_cpu_run_hold_a_slot_each_up_to_the_boxs_slots(conn):
    add(conn, "ddp", learners=2, at=1, max_s=300)  # both slots of the box
    add(conn, "one", at=2, max_s=100)  # waits for ddp to end
    add(conn, "wide", learners=5, at=3, max_s=100)  # more learners than slots: it holds all 2, never waits forever
    assert starts(conn, slots=2, box=(16, None)) == {"ddp": 0, "one": 300, "wide": 400}


def test_gpu_and_cpu_runs_on_a_cpu_slot_box_share_the_slots_and_the_tier_counts_gpus_only(conn):
    add(conn, "g", gpus=1, at=1, max_s=300)  # a GPU run on a box without GPUs: a slot stands in
    add(conn, "c", gpus=0, at=2, max_s=200)  # the second slot
    add(conn, "g2", gpus=1, at=3, max_s=100)  # a slot frees at +200 (c)
    assert starts(conn, slots=2) == {"g": 0, "c": 0, "g2": 200}
    # A tier of 1 GPU: g2 waits for g's GPU (+300) although c's slot is free at +200; c is not held
    # back by the tier (it asks for no GPU).
    assert starts(conn, slots=2, tier=1) == {"g": 0, "c": 0, "g2": 300}


def test_gpu_less_runs_on_a_gpu_box_hold_no_gpu_but_their_cores_and_memory(conn):
    gpus = {"GPU-1": 80 * GiB}
    add(conn, "train", gpus=1, max_s=600, running_on=["GPU-1"], started=100, cores=4)  # ends at +500
    add(conn, "prep", gpus=0, at=1, max_s=300, cores=2)  # cores free (8 - 4): now, no GPU needed
    add(conn, "eval", gpus=1, at=2, max_s=100, cores=1)  # waits for the GPU: +500
    assert starts(conn, gpus=gpus, box=(8, None)) == {"prep": 0, "eval": 500}
    add(conn, "big", gpus=0, at=3, max_s=50, cores=6)  # FIFO behind eval; 6 cores: at +500 4 + 2 are free
    assert starts(conn, gpus=gpus, box=(8, None))["big"] == 500
    assert starts(conn, gpus=gpus, box=(6, None)) == {"prep": 0, "eval": 500, "big": 600}  # when eval ends


def test_runs_queue_on_the_boxs_cores_and_memory_whatever_their_slots(conn):
    add(conn, "r", max_s=600, running_on=["cpu:0"], started=100, cores=2, memory_gib=4)  # ends at +500
    add(conn, "a", at=1, max_s=300, cores=1, memory_gib=2)  # fits: 1 core, 4 GiB left
    add(conn, "b", at=2, max_s=100, cores=1, memory_gib=2)  # no core left until a ends (+300)
    assert starts(conn, slots=8, box=(3, None)) == {"a": 0, "b": 300}
    # Memory: 8 GiB, r holds 4, a 2: b's 2 GiB fits (4 + 2 + 2 = 8). c's 3 GiB waits: b's 2 GiB back
    # at +100 are not enough, a's too at +300 are.
    assert starts(conn, slots=8, box=(16, 8 * GiB)) == {"a": 0, "b": 0}
    add(conn, "c", at=3, max_s=100, cores=1, memory_gib=3)
    assert starts(conn, slots=8, box=(16, 8 * GiB)) == {"a": 0, "b": 0, "c": 300}
    # Cores the box can never give: nothing is estimated from that run on.
    add(conn, "huge", at=4, max_s=10, cores=64)
    add(conn, "after", at=5, max_s=10)
    got = starts(conn, slots=8, box=(16, 8 * GiB))
    assert "huge" not in got and "after" not in got


def test_a_run_held_back_by_a_gate_gets_no_eta_and_is_not_waited_on(conn):
    # Admission does not see a held run, or one waiting for a prerequisite: the one behind it starts.
    add(conn, "held", at=1, max_s=300, wait={"hold": True})
    add(conn, "after-dep", at=2, max_s=300, wait={"after": ["held"]})
    add(conn, "free", at=3, max_s=300)
    add(conn, "next", at=4, max_s=100)
    assert starts(conn, slots=1) == {"free": 0, "next": 300}


def test_a_run_asking_more_than_the_box_or_tier_gives_has_no_eta_and_fifo_waits_on_it(conn):
    # Seen in the TUI: a 64-GPU run on a box of 2 cpu slots read "#1 ~now" beside the scheduler's
    # "cpu slots busy: needs 64, 2 free": the estimate held it to 2 slots, admission never does.
    add(conn, "huge", gpus=64, at=1, max_s=300)
    add(conn, "small", at=2, max_s=100)
    assert starts(conn, slots=2) == {}
    assert starts(conn, gpus={"GPU-0": 80 * GiB, "GPU-1": 80 * GiB}) == {}  # 2 GPUs, not 64
    with db.write(conn):
        db.set_fields(conn, "huge", {"gpus": 2})
    assert starts(conn, slots=2) == {"huge": 0, "small": 300}
    assert starts(conn, slots=2, tier=1) == {}  # the tier allows 1 GPU at once: 2 never start


def _admitted_by_plan(conn, *, slots, tier, box_total, gpu_box):
    """What one FIFO admission pass admits, as the agent calls `plan` (backend/agent/agent.py)."""
    rows = conn.execute(
        "SELECT id, state, gpus * learners, assigned, learners, json_extract(spec, '$.cpus_total'), "
        "json_extract(spec, '$.memory_total') FROM runs "
        f"WHERE state != 'QUEUED' OR {GATE_FILTER} ORDER BY prio DESC, submitted_at, id").fetchall()
    held, used_gpus, used_cpus, used_mem, queue = set(), 0, 0, 0, []
    for rid, state, need, assigned, learners, cpus, mem in rows:
        if state == "QUEUED":
            queue.append((rid, need, "local", None, learners, cpus, mem))
        else:
            held.update(json.loads(assigned))
            used_gpus, used_cpus, used_mem = used_gpus + need, used_cpus + cpus, used_mem + mem
    devices = [f"GPU-{i}" for i in range(slots)] if gpu_box else [f"cpu:{i}" for i in range(slots)]
    free = [FreeDevice(d, None if gpu_box else "cpu", 80 * GiB if gpu_box else None) for d in devices
            if d not in held]
    cores, memory = box_total
    box = Box(cpus=cores - used_cpus, memory=None if memory is None else memory - used_mem, cpus_total=cores,
              memory_total=memory)
    room = {"local": max(0, tier - used_gpus) if tier else None}
    return {a.run_id for a in plan(queue, free, room, match_type=gpu_box, cpu_slots=not gpu_box,
                                   slot_count=len(devices), box=box)}


@pytest.mark.parametrize("seed", range(40))
def test_the_runs_estimated_to_start_now_are_those_the_scheduler_admits(tmp_path, seed):
    """Same state, same rules: on a cpu-slot box or a GPU box, with running runs on some devices and
    holding cores and memory, the queued runs the ETA starts now are those `plan` admits in one FIFO pass."""
    rnd = random.Random(seed)
    conn = db.connect(tmp_path / "state" / "state.db")
    gpu_box = rnd.random() < 0.3
    slots = rnd.randint(1, 4)
    tier = rnd.choice((0, 0, 1, 2))
    cores = rnd.randint(2, 8)
    memory = rnd.choice((None, 16 * GiB))
    devices = [f"GPU-{i}" for i in range(slots)] if gpu_box else [f"cpu:{i}" for i in range(slots)]
    free = list(devices)
    used = 0
    for n in range(rnd.randint(0, slots)):  # what already runs: on free devices, within the tier
        learners = rnd.choice((1, 1, 2))
        gpus = rnd.choice((0, 0, 1))
        need = gpus * learners
        take = need if gpu_box else slots_held(need, learners, slots)
        if take > len(free) or (tier and need > tier - used):
            continue
        on, free = free[:take], free[take:]
        used += need
        add(conn, f"run-{n}", gpus=gpus, learners=learners, cores=1, memory_gib=2, max_s=600, running_on=on)
    for i in range(rnd.randint(1, 6)):
        learners = rnd.choice((1, 1, 2, 3))
        gpus = rnd.choice((0, 0, 1))
        if gpus and learners > (min(tier, slots) if tier else slots) and rnd.random() < 0.7:
            learners = 1  # else a run that never fits: admission waits on it for good, the ETA too
        add(conn, f"q{i}", gpus=gpus, learners=learners, at=i + 1, max_s=300,
            cores=min(cores, rnd.randint(1, 3)), memory_gib=rnd.choice((1, 2, 6)),
            wait={"hold": True} if rnd.random() < 0.2 else None)
    admitted = _admitted_by_plan(conn, slots=slots, tier=tier, box_total=(cores, memory), gpu_box=gpu_box)
    now_etas = {rid for rid, s in starts(conn, slots=0 if gpu_box else slots, tier=tier,
                                          gpus={d: 80 * GiB for d in devices} if gpu_box else None,
                                          box=(cores, memory)).items() if s == 0}
    conn.close()
    assert now_etas == admitted, (gpu_box, slots, tier, cores, memory)


def cpu_box_engine(conn, tmp_path, monkeypatch, **profile):
    """A stand-in local engine over `conn`, as engine_etas reads one, on a box where (fake) NVML finds
    no GPU: 8 cores, 64 GiB, a profile of 2 cpu slots and no tier (`profile`: its other fields)."""
    from backend.engines.local import limits

    fake = tmp_path / "nvml.json"
    fake.write_text('{"gpus": []}')
    monkeypatch.setenv("DLAAS_FAKE_NVML", str(fake))
    monkeypatch.setattr(eta.clock, "time", lambda: NOW)
    monkeypatch.setattr(limits, "machine_cores", lambda: tuple(range(8)))
    monkeypatch.setattr(limits, "machine_memory", lambda: 64 * GiB)
    eta._capacity.clear()
    return SimpleNamespace(conn=conn, backend=SimpleNamespace(
        config=SimpleNamespace(tier_gpus=lambda profile: 0),
        profile=SimpleNamespace(**{"cpu_slots": 2, "cpus": None, "memory": None, **profile})))


def test_the_engines_estimate_counts_cpu_slots_and_the_boxs_cores(conn, tmp_path, monkeypatch):
    """engine_etas, as `runs` and the TUI call it: (fake) NVML finds no GPU, so the profile's cpu slots
    are the devices; the cores and memory are the ones the agent admits by (limits.capacity)."""
    engine = cpu_box_engine(conn, tmp_path, monkeypatch, cpus=2)
    add(conn, "r", max_s=600, running_on=["cpu:0"], started=100)  # ends at +500
    add(conn, "a", at=1, max_s=300)  # the second slot: now
    add(conn, "b", at=2, max_s=100)  # both slots held: when a ends (+300)
    add(conn, "c", at=3, max_s=100, cores=2)  # a profile of 2 cores: r and b hold them until +500
    got = {rid: e.at.timestamp() - NOW for rid, e in eta.engine_etas(engine).items()}
    assert got == {"a": 0, "b": 300, "c": 500}
    assert os.environ["DLAAS_FAKE_NVML"] == str(tmp_path / "nvml.json")
