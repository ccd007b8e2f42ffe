"""Queue ETAs with GPU sharing (`share: true` + `gpu_memory:`): the simulation places runs GPU by GPU
by the scheduler's own rule (backend/eta.py's `sharing_candidates`, which `plan` places by), read from
the local engine's ledger as a listing reads it."""
from __future__ import annotations

import os
import random

import pytest

from backend.engines.local import eta
from backend.engines.local.scheduler import FreeDevice, SharedGpu, plan
from backend.ledger import db

GiB = 2**30
NOW = 100_000.0
GPUS = {"GPU-1": 48 * GiB, "GPU-2": 48 * GiB}


@pytest.fixture
def conn(tmp_path):
    c = db.connect(tmp_path / "state" / "state.db")
    yield c
    c.close()


def add(conn, rid: str, *, cap_gib: int | None = None, share: bool = False, gpus: int = 1, at: float = 0.0,
        max_s: float = 600, running_on: list[str] | None = None, started: float = 0.0) -> None:
    """A QUEUED run (or, with `running_on`, one PROCESSING on those GPUs since NOW - started)."""
    spec = {"command": "true", "max_duration_s": max_s, "manifest_name": rid}
    if cap_gib is not None:
        spec["gpu_memory"] = cap_gib * GiB
    if share:
        spec["share"] = True
    with db.write(conn):
        db.insert_run(conn, {
            "id": rid, "name": rid, "profile": "local", "state": "QUEUED", "priority": "normal", "prio": 0,
            "submitted_at": 1000.0 + at, "gpus": gpus, "learners": 1, "spec": spec,
        }, db.next_seq(conn))
    if running_on is not None:
        with db.write(conn):
            db.set_fields(conn, rid, {"state": "PROCESSING", "assigned": running_on, "admitted_at": NOW - started})


def starts(conn, devices=GPUS, tier: int = 0, capacity: int | None = None) -> dict[str, float]:
    """Seconds from NOW to each QUEUED run's estimated start."""
    etas = eta.local_etas(conn, len(devices) if capacity is None else capacity, now=NOW, caps={},
                          devices=devices, tier=tier)
    return {rid: e.at.timestamp() - NOW for rid, e in etas.items()}


def test_two_sharing_runs_that_fit_one_gpu_start_together_and_a_third_waits_for_room(conn):
    one = {"GPU-1": 48 * GiB}
    add(conn, "a", cap_gib=20, share=True, at=1, max_s=300)
    add(conn, "b", cap_gib=20, share=True, at=2, max_s=500)
    add(conn, "c", cap_gib=20, share=True, at=3, max_s=100)
    got = starts(conn, one)
    assert got["a"] == 0 and got["b"] == 0  # 20 + 20 GiB fit in 48 GiB: together, at once
    assert got["c"] == 300  # 8 GiB left: it joins when `a` leaves (and `b` still runs)
    # Counted as whole GPUs (no GPUs given, as before sharing was simulated) they would queue.
    whole = eta.local_etas(conn, 1, now=NOW, caps={})
    assert [whole[r].at.timestamp() - NOW for r in "abc"] == [0, 300, 800]


def test_sharing_runs_whose_caps_do_not_fit_together_queue(conn):
    one = {"GPU-1": 48 * GiB}
    add(conn, "a", cap_gib=30, share=True, at=1, max_s=300)
    add(conn, "b", cap_gib=30, share=True, at=2, max_s=300)
    add(conn, "big", cap_gib=64, share=True, at=3, max_s=60)  # larger than the GPU: never placed
    add(conn, "after", at=4, max_s=60)
    got = starts(conn, one)
    assert got == {"a": 0, "b": 300}  # nothing behind a run that can never start is estimated


def test_a_running_sharing_run_is_joined_on_its_own_gpu_and_an_exclusive_run_waits_for_a_free_one(conn):
    add(conn, "s0", cap_gib=10, share=True, max_s=400, running_on=["GPU-1"], started=100)  # ends at +300
    add(conn, "x0", max_s=700, running_on=["GPU-2"], started=100)  # exclusive, ends at +600
    add(conn, "s1", cap_gib=10, share=True, at=1, max_s=200)  # joins s0 on GPU-1 at once, ends at +200
    add(conn, "x1", at=2, max_s=100)  # exclusive: GPU-1 is free once s0 and s1 have both left (+300)
    add(conn, "s2", cap_gib=10, share=True, at=3, max_s=50)  # FIFO: not before x1; x1 leaves GPU-1 at +400
    got = starts(conn)
    assert got == {"s1": 0, "x1": 300, "s2": 400}


def test_an_exclusive_run_holds_its_gpu_whole_and_a_capped_run_without_share_is_exclusive(conn):
    add(conn, "x0", cap_gib=4, max_s=300, running_on=["GPU-1"])  # gpu_memory without share: exclusive
    add(conn, "s1", cap_gib=4, share=True, at=1, max_s=100)  # takes GPU-2, the only free one
    add(conn, "s2", cap_gib=4, share=True, at=2, max_s=100)  # joins s1 on GPU-2, never x0's GPU-1
    add(conn, "x1", at=3, max_s=100)  # GPU-1 frees at +300, GPU-2 (both sharers gone) at +100
    assert starts(conn) == {"s1": 0, "s2": 0, "x1": 100}


def test_the_tier_counts_each_sharing_runs_gpus_as_the_scheduler_does(conn):
    add(conn, "a", cap_gib=10, share=True, at=1, max_s=300)
    add(conn, "b", cap_gib=10, share=True, at=2, max_s=300)
    assert starts(conn, {"GPU-1": 48 * GiB}) == {"a": 0, "b": 0}
    # A tier of 1 GPU: the two would fit one GPU, but each asks for one, so the second waits.
    assert starts(conn, {"GPU-1": 48 * GiB}, tier=1, capacity=1) == {"a": 0, "b": 300}


def test_a_gpu_of_unknown_memory_takes_one_sharing_run_and_no_more(conn):
    add(conn, "a", cap_gib=1, share=True, at=1, max_s=300)
    add(conn, "b", cap_gib=1, share=True, at=2, max_s=300)
    assert starts(conn, {"GPU-1": None}) == {"a": 0, "b": 300}


def test_without_sharing_runs_the_estimate_is_the_count_of_devices_as_before(conn):
    add(conn, "r", max_s=600, running_on=["GPU-1"], started=100)
    for i in range(4):
        add(conn, f"q{i}", cap_gib=8, at=i + 1, max_s=100)  # capped, not sharing
    with_gpus = eta.local_etas(conn, 2, now=NOW, caps={}, devices=GPUS, tier=0)
    counted = eta.local_etas(conn, 2, now=NOW, caps={})
    assert with_gpus == counted
    assert [counted[f"q{i}"].at.timestamp() - NOW for i in range(4)] == [0, 100, 200, 300]


@pytest.mark.parametrize("seed", range(30))
def test_the_runs_estimated_to_start_now_are_those_the_scheduler_admits(tmp_path, seed):
    """Same state, same rule: a queue the scheduler admits in one pass (FIFO) starts now in the ETA,
    and the first run it holds back does not."""
    rnd = random.Random(seed)
    conn = db.connect(tmp_path / "state" / "state.db")
    devices = {f"GPU-{i}": rnd.choice((24, 40, 80)) * GiB for i in range(rnd.randint(1, 4))}
    shared: dict[str, SharedGpu] = {}
    free = []
    for n, (uuid, total) in enumerate(devices.items()):  # what already runs on each GPU
        kind = rnd.choice(("free", "free", "exclusive", "sharing"))
        if kind == "exclusive":
            add(conn, f"run-{n}", max_s=600, running_on=[uuid])
        elif kind == "sharing":
            caps = [rnd.choice((4, 8, 16)) for _ in range(rnd.randint(1, 2))]
            for k, cap in enumerate(caps):
                add(conn, f"run-{n}-{k}", cap_gib=cap, share=True, max_s=600, running_on=[uuid])
            shared[uuid] = SharedGpu(uuid, None, total - sum(caps) * GiB, total)
        else:
            free.append(FreeDevice(uuid, None, total))
    queue = []
    for i in range(rnd.randint(1, 6)):
        sharing = rnd.random() < 0.6
        cap = rnd.choice((4, 8, 16, 30)) if sharing or rnd.random() < 0.3 else None
        need = min(rnd.choice((1, 1, 1, 2)), len(devices))
        add(conn, f"q{i}", cap_gib=cap, share=sharing, gpus=need, at=i + 1, max_s=300)
        queue.append((f"q{i}", need, "local", None, 1, 0, 0, cap * GiB if cap else None, int(sharing)))
    admitted = {a.run_id for a in plan(queue, free, {"local": None}, match_type=True, shared=shared)}
    now_etas = {rid for rid, s in starts(conn, devices).items() if s == 0}
    conn.close()
    assert now_etas == admitted, (devices, queue)


def test_the_gpus_and_their_memory_come_from_nvml_and_a_box_without_gpus_has_none(tmp_path, monkeypatch):
    from backend.engines.local import nvml

    fake = tmp_path / "nvml.json"
    fake.write_text('{"gpus": [{"name": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-a", "memory_total": %d, '
                    '"memory_used": 0, "processes": []}]}' % (40 * GiB))
    monkeypatch.setenv("DLAAS_FAKE_NVML", str(fake))
    assert nvml.estimate_devices(2) == (1, {"GPU-a": 40 * GiB})
    assert nvml.device_count(2) == 1
    monkeypatch.delenv("DLAAS_FAKE_NVML")
    if not any(map(os.path.exists, nvml.NVIDIA_DEVICE_NODES)):
        assert nvml.estimate_devices(2) == (2, {})  # cpu slots: nothing to share, pynvml not loaded


def test_the_engines_estimate_places_sharing_runs_on_the_gpus_nvml_reports(conn, tmp_path, monkeypatch):
    """engine_etas, as `runs` and the TUI call it: the GPUs and their memory from (fake) NVML."""
    from types import SimpleNamespace

    fake = tmp_path / "nvml.json"
    fake.write_text('{"gpus": [{"name": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-e", "memory_total": %d, '
                    '"memory_used": 0, "processes": []}]}' % (40 * GiB))
    monkeypatch.setenv("DLAAS_FAKE_NVML", str(fake))
    monkeypatch.setattr(eta.clock, "time", lambda: NOW)
    add(conn, "a", cap_gib=16, share=True, max_s=300, running_on=["GPU-e"], started=100)
    add(conn, "b", cap_gib=16, share=True, at=1, max_s=300)  # 16 + 16 GiB fit 40: joins a at once
    add(conn, "c", cap_gib=16, share=True, at=2, max_s=300)  # 8 GiB left: when a leaves (+200)
    engine = SimpleNamespace(conn=conn, backend=SimpleNamespace(
        config=SimpleNamespace(tier_gpus=lambda profile: 0), profile=SimpleNamespace(cpu_slots=777)))
    got = {rid: e.at.timestamp() - NOW for rid, e in eta.engine_etas(engine).items()}
    assert got == {"b": 0, "c": 200}
