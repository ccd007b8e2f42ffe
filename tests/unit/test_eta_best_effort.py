"""Queue ETAs under `queue_policy = "best-effort"`: admission (`plan(best_effort=True)`) lets a run that
fits pass one that does not, so the estimate simulates that rule: at now, then at each expected end,
every waiting run that fits starts, in queue order. Strict FIFO (the default) is what it was."""
from __future__ import annotations

import json
import random
from datetime import timedelta
from types import SimpleNamespace

import pytest

from backend.engines.local import eta, sweeps
from backend.engines.local.scheduler import Box, FreeDevice, SharedGpu, plan
from backend.engines.local.sweeps import SweepGovernor, SweepPolicy
from backend.eta import queue_etas
from backend.ledger import db
from backend.runs import RunState
from tests.unit.test_eta import T0, run
from tests.unit.test_eta_cpu import NOW, add, cpu_box_engine

GiB = 2**30
S = RunState


def at(etas) -> dict[str, float]:
    return {rid: (e.at - T0).total_seconds() for rid, e in etas.items()}


def starts(conn, *, best_effort: bool, slots: int = 0, tier: int = 0, gpus: dict | None = None,
           box: tuple[int | None, int | None] | None = None, caps: dict | None = None) -> dict[str, float]:
    """Seconds from NOW to each QUEUED run's estimated start, as engine_etas asks (test_eta_cpu.starts
    with the policy)."""
    capacity = len(gpus) if gpus else slots
    capacity = min(tier, capacity) if tier else capacity
    etas = eta.local_etas(conn, capacity, now=NOW, caps={} if caps is None else caps, devices=gpus or {}, tier=tier,
                          cpu_slots=0 if gpus else slots, box=box, best_effort=best_effort)
    return {rid: e.at.timestamp() - NOW for rid, e in etas.items()}


@pytest.fixture
def conn(tmp_path):
    c = db.connect(tmp_path / "state" / "state.db")
    yield c
    c.close()


# -- hand-made cases -------------------------------------------------------------------------------

def test_a_small_run_behind_a_blocked_big_one_starts_now_under_best_effort_and_waits_under_fifo():
    runs = [run("r", S.PROCESSING, name="r", admitted=-100, max_s=600, gpus=2),  # ends at +500
            run("big", name="big", max_s=300, gpus=3, at=1),  # 2 of 4 free: waits for r
            run("small", name="small", max_s=100, gpus=1, at=2),  # fits now
            run("after", name="after", max_s=50, gpus=1, at=3)]  # fits now too
    fifo = at(queue_etas(runs, capacity=4, now=T0))
    best = at(queue_etas(runs, capacity=4, now=T0, best_effort=True))
    assert fifo == {"big": 500, "small": 500, "after": 600}  # nothing passes big: all behind it wait
    # small and after take the 2 free GPUs now; big needs 3: r's 2 at +500 plus small's, back at +100.
    assert best == {"small": 0, "after": 0, "big": 500}
    # And one more small run: none free now, so it takes small's GPU at +100, before big (which it passes
    # again: at +100 big still finds only 1 of the 3 it needs).
    more = [*runs, run("late", name="late", max_s=30, gpus=1, at=4)]
    assert at(queue_etas(more, capacity=4, now=T0, best_effort=True)) == {
        "small": 0, "after": 0, "late": 50, "big": 500}


def test_the_bound_mark_follows_the_ends_a_passing_run_waits_through():
    runs = [run("done", S.COMPLETED, name="small", took=40),  # small is learned: ~40 s
            run("r", S.PROCESSING, name="r", admitted=-100, max_s=600, gpus=1),  # a bound: ends at +500
            run("big", name="big", max_s=300, gpus=2, at=1),
            run("small", name="small", gpus=1, at=2),
            run("small2", name="small", gpus=1, at=3)]
    etas = queue_etas(runs, capacity=2, now=T0, best_effort=True)
    assert at(etas) == {"small": 0, "small2": 40, "big": 500}
    assert [etas[r].bound for r in ("small", "small2", "big")] == [False, False, True]


def test_a_run_that_can_never_fit_gets_no_eta_and_blocks_nobody_under_best_effort(conn):
    add(conn, "r", max_s=600, running_on=["cpu:0"], started=100, cores=2)  # ends at +500
    add(conn, "huge", at=1, max_s=10, cores=64)  # more cores than the box has
    add(conn, "a", at=2, max_s=300, cores=2)
    add(conn, "b", at=3, max_s=100, cores=2)  # 4 cores: r and a hold them, b waits for a (+300)
    assert starts(conn, best_effort=True, slots=8, box=(4, None)) == {"a": 0, "b": 300}
    assert starts(conn, best_effort=False, slots=8, box=(4, None)) == {}  # FIFO: everything waits on huge


def test_a_run_asking_more_gpus_than_exist_gets_no_eta_under_best_effort():
    runs = [run("wide", name="wide", max_s=60, gpus=8, at=1), run("one", name="one", max_s=60, gpus=1, at=2)]
    assert at(queue_etas(runs, capacity=4, now=T0, best_effort=True)) == {"one": 0}
    assert at(queue_etas(runs, capacity=4, now=T0)) == {}  # FIFO: admission waits on it, and so does all behind


def test_a_run_waiting_on_an_unknown_end_holds_back_only_what_needs_it():
    runs = [run("r", S.PROCESSING, name="r", admitted=-10, gpus=2),  # no max_duration, nothing learned
            run("big", name="big", max_s=60, gpus=3, at=1),  # needs r's GPUs: its start is unknown
            run("small", name="small", max_s=60, gpus=1, at=2), run("small2", name="small", max_s=60, gpus=2, at=3)]
    assert at(queue_etas(runs, capacity=4, now=T0, best_effort=True)) == {"small": 0, "small2": 60}
    assert at(queue_etas(runs, capacity=4, now=T0)) == {}


def test_cores_and_memory_on_a_gpu_less_box(conn):
    add(conn, "r", max_s=600, running_on=["cpu:0"], started=100, cores=2, memory_gib=4)  # ends at +500
    add(conn, "fat", at=1, max_s=300, cores=1, memory_gib=6)  # 8 GiB box: 4 left, waits for r
    add(conn, "thin", at=2, max_s=100, cores=1, memory_gib=2)  # fits now
    add(conn, "wide", at=3, max_s=100, cores=3, memory_gib=1)  # 5 cores: 3 left now, 2 once thin started
    add(conn, "thin2", at=4, max_s=50, cores=1, memory_gib=1)
    box = (5, 8 * GiB)
    # FIFO: fat waits for r's memory (+500), and the rest behind it: thin with it; wide and thin2 when
    # thin's memory is back (+600).
    assert starts(conn, best_effort=False, slots=8, box=box) == {"fat": 500, "thin": 500, "wide": 600, "thin2": 600}
    # Best-effort: thin and thin2 now (1 + 1 of the 3 cores, 2 + 1 of the 4 GiB left); wide once thin2
    # (+50) and thin (+100) have given their cores back; fat waits for r's memory at +500.
    assert starts(conn, best_effort=True, slots=8, box=box) == {"thin": 0, "thin2": 0, "wide": 100, "fat": 500}


def test_cpu_slots_on_a_gpu_less_box(conn):
    add(conn, "r", max_s=600, running_on=["cpu:0"], started=100)  # ends at +500
    add(conn, "ddp", learners=2, at=1, max_s=300)  # both slots: waits for r
    add(conn, "one", at=2, max_s=100)  # the free slot: now
    add(conn, "two", at=3, max_s=100)  # then one's slot at +100
    assert starts(conn, best_effort=False, slots=2) == {"ddp": 500, "one": 800, "two": 800}
    assert starts(conn, best_effort=True, slots=2) == {"one": 0, "two": 100, "ddp": 500}
    # A GPU run on a box with 2 cpu slots asking for 3: never admitted, never waited on.
    add(conn, "gpu3", gpus=3, at=4, max_s=10)
    assert starts(conn, best_effort=True, slots=2) == {"one": 0, "two": 100, "ddp": 500}


def test_sharing_runs_pass_an_exclusive_run_waiting_for_a_free_gpu(conn):
    from tests.unit.test_eta_share import add as add_gpu

    one = {"GPU-1": 48 * GiB, "GPU-2": 48 * GiB}
    add_gpu(conn, "s0", cap_gib=10, share=True, max_s=400, running_on=["GPU-1"], started=100)  # ends at +300
    add_gpu(conn, "x0", max_s=700, running_on=["GPU-2"], started=100)  # exclusive, ends at +600
    add_gpu(conn, "x1", at=1, max_s=100)  # exclusive: waits for a GPU nobody holds
    add_gpu(conn, "s1", cap_gib=30, share=True, at=2, max_s=200)  # joins s0 on GPU-1 now (10 + 30 <= 48)
    add_gpu(conn, "s2", cap_gib=10, share=True, at=3, max_s=50)  # 8 GiB left on GPU-1: at +200 (s1 gone)
    add_gpu(conn, "s3", cap_gib=4, share=True, at=4, max_s=50)  # fits the 8 GiB left: now
    # FIFO: x1 gets GPU-1 when s0 and s1 have both left (+300), the sharing runs then queue behind it.
    assert starts(conn, best_effort=False, gpus=one) == {"x1": 300, "s1": 400, "s2": 400, "s3": 400}
    # Best-effort: GPU-1 is only free when s0, s1, s2 and s3 have all left: x1 waits until +300 (s0),
    # which the ones passing it end before.
    assert starts(conn, best_effort=True, gpus=one) == {"s1": 0, "s3": 0, "s2": 200, "x1": 300}


def test_a_sweeps_parallel_cap_holds_its_trials_and_lets_others_pass():
    runs = [run(f"t{i}", exp="sw", name=f"sw-{i}", max_s=100, at=i) for i in range(1, 4)]
    runs += [run("big", name="big", max_s=60, gpus=4, at=5), run("other", name="other", max_s=60, at=6)]
    runs.insert(0, run("r", S.PROCESSING, name="r", admitted=-50, max_s=100, gpus=1))  # ends at +50
    best = at(queue_etas(runs, capacity=4, now=T0, caps={"sw": 1}, best_effort=True))
    # t1 now, and other passes big now; big needs all 4 GPUs, so whenever a trial ends (parallel 1) the
    # next trial, ahead of big in the queue and fitting, takes its GPU first: big starts after t3.
    assert best == {"t1": 0, "other": 0, "t2": 100, "t3": 200, "big": 300}
    fifo = at(queue_etas(runs, capacity=4, now=T0, caps={"sw": 1}))
    assert fifo == {"t1": 0, "t2": 100, "t3": 200, "big": 300, "other": 360}


def test_a_gated_run_is_skipped_under_best_effort_too(conn):
    add(conn, "held", at=1, max_s=300, wait={"hold": True})
    add(conn, "a", at=2, max_s=300)
    add(conn, "b", at=3, max_s=100)
    assert starts(conn, best_effort=True, slots=1) == {"a": 0, "b": 300}


def test_best_effort_reads_the_whole_queue_where_a_page_asks_for_its_head(conn):
    # Under FIFO a run's ETA depends only on the runs ahead of it; under best-effort a run behind that
    # passes the head holds what the head waits for, so a page showing only the head counts it too.
    add(conn, "r", max_s=600, running_on=["cpu:0"], started=100)  # ends at +500
    add(conn, "ddp", learners=2, at=1, max_s=300)  # both slots
    add(conn, "one", at=2, max_s=600)  # the free slot now: until +600, so ddp waits for it
    head = eta.local_etas(conn, 2, now=NOW, caps={}, cpu_slots=2, order=["ddp"], best_effort=True)
    assert head["ddp"].at.timestamp() - NOW == 600
    fifo_head = eta.local_etas(conn, 2, now=NOW, caps={}, cpu_slots=2, order=["ddp"])
    assert fifo_head["ddp"].at.timestamp() - NOW == 500


def test_the_engines_estimate_follows_the_profiles_queue_policy(conn, tmp_path, monkeypatch):
    """engine_etas, as `runs` and the TUI call it: the profile's queue_policy picks the rule."""
    add(conn, "r", max_s=600, running_on=["cpu:0"], started=100)  # ends at +500
    add(conn, "ddp", learners=2, at=1, max_s=300)
    add(conn, "one", at=2, max_s=100)

    def got(policy: str) -> dict[str, float]:
        engine = cpu_box_engine(conn, tmp_path, monkeypatch, queue_policy=policy)
        return {rid: e.at.timestamp() - NOW for rid, e in eta.engine_etas(engine).items()}

    assert got("fifo") == {"ddp": 500, "one": 800}
    assert got("best-effort") == {"one": 0, "ddp": 500}


def test_the_fake_engine_estimates_by_its_queue_policy():
    from backend.engines.fake import FakeClock, FakeEngine
    from tests.unit.test_fake_engine import manifest

    engine = FakeEngine(FakeClock(), devices=2, queue_policy="best-effort", durations={"PROCESSING": 1000})
    hold = engine.submit_manifest(manifest("hold", gpus=1, max_duration="10m"))
    big = engine.submit_manifest(manifest("big", gpus=2, max_duration="1m"))
    small = engine.submit_manifest(manifest("small", gpus=1, max_duration="5m"))  # passes big: admitted
    small2 = engine.submit_manifest(manifest("small2", gpus=1, max_duration="1m"))
    assert engine.get_run(hold.id).admitted_at is not None and engine.get_run(small.id).admitted_at is not None
    now = engine.clock.now()
    got = {r.name: (engine.get_run(r.id).eta - now).total_seconds() for r in (big, small2)}
    # small2 takes small's GPU when it ends (+300), passing big again, which needs both GPUs: +600.
    # (Simulated as FIFO, small2 would wait for big: +660.)
    assert got == {"small2": 300, "big": 600}


# -- the same state, the same rule: the ETA's "now" is what admission starts -----------------------

def add_run(conn, rid: str, *, gpus: int = 0, learners: int = 1, at: float = 0.0, max_s: float = 300,
            cores: int = 1, memory_gib: float = 0, cap_gib: int | None = None, share: bool = False,
            experiment: str | None = None, wait: dict | None = None, running_on: list[str] | None = None) -> None:
    """test_eta_cpu.add and test_eta_share.add in one: a QUEUED run (or one PROCESSING on `running_on`)
    with its cores and memory, a sharing cap, a sweep and a gate."""
    spec = {"command": "true", "manifest_name": rid, "cpus_total": cores, "memory_total": int(memory_gib * GiB),
            "max_duration_s": max_s}
    if cap_gib is not None:
        spec["gpu_memory"] = cap_gib * GiB
    if share:
        spec["share"] = True
    if wait is not None:
        spec["wait"] = wait
    with db.write(conn):
        db.insert_run(conn, {
            "id": rid, "name": rid, "profile": "local", "state": "QUEUED", "priority": "normal", "prio": 0,
            "submitted_at": 1000.0 + at, "gpus": gpus, "learners": learners, "spec": spec, "experiment": experiment,
        }, db.next_seq(conn))
    if running_on is not None:
        with db.write(conn):
            db.set_fields(conn, rid, {"state": "PROCESSING", "assigned": running_on, "admitted_at": NOW})


def admitted_by_agent(conn, *, devices: dict[str, int | None], gpu_box: bool, tier: int,
                      box_total: tuple[int, int | None]) -> set[str]:
    """What the agent admits now under best-effort (backend/agent/agent.py `admit`): passes of
    `plan(best_effort=True)` over the sweep governor's queue (its `parallel` caps, and the SQL that skips
    runs asking more than is free), each pass on what the previous ones left, until one admits nothing
    (the agent passes every half second)."""
    gov = SweepGovernor(conn, halt_run=None)
    admitted: set[str] = set()
    for _pass in range(50):
        rows = conn.execute(
            "SELECT assigned, gpus * learners, COALESCE(json_extract(spec, '$.share'), 0), "
            "json_extract(spec, '$.gpu_memory'), json_extract(spec, '$.cpus_total'), "
            "json_extract(spec, '$.memory_total') FROM runs WHERE state = 'PROCESSING'").fetchall()
        held, caps, exclusive, used_gpus, used_cpus, used_mem = set(), {}, set(), 0, 0, 0
        for assigned, need, share, cap, cpus, mem in rows:
            for uuid in json.loads(assigned):
                held.add(uuid)
                if share and cap:
                    caps[uuid] = caps.get(uuid, 0) + int(cap)
                else:
                    exclusive.add(uuid)
            used_gpus, used_cpus, used_mem = used_gpus + need, used_cpus + cpus, used_mem + mem
        free = [FreeDevice(u, None if gpu_box else "cpu", total) for u, total in devices.items() if u not in held]
        shared = {u: SharedGpu(u, None, None if devices[u] is None else devices[u] - c, devices[u])
                  for u, c in caps.items() if u not in exclusive} if gpu_box else {}
        cores, memory = box_total
        box = Box(cpus=cores - used_cpus, memory=None if memory is None else memory - used_mem, cpus_total=cores,
                  memory_total=memory)
        room = {"local": max(0, tier - used_gpus) if tier else None}
        todo = plan(gov.queue(best_effort=True, free=len(free) + len(shared)), free, room, best_effort=True,
                    match_type=gpu_box, cpu_slots=not gpu_box, slot_count=len(devices), box=box, shared=shared)
        if not todo:
            return admitted
        for adm in todo:
            admitted.add(adm.run_id)
            with db.write(conn):
                db.set_fields(conn, adm.run_id, {"state": "PROCESSING", "assigned": list(adm.devices),
                                                 "admitted_at": NOW})
    raise AssertionError("admission did not settle")


@pytest.mark.parametrize("seed", range(120))
def test_the_runs_estimated_to_start_now_are_those_best_effort_admission_starts(tmp_path, seed):
    """Random boxes (GPUs, some shared, or cpu slots; a tier; cores and memory), running runs, and a
    queue of runs of every kind (GPU-less, multi-GPU, sharing, too big to ever fit, gated, sweep trials
    under a `parallel` cap): the runs the best-effort ETA starts now are those admission starts."""
    rnd = random.Random(seed)
    conn = db.connect(tmp_path / "state" / "state.db")
    gpu_box = rnd.random() < 0.5
    count = rnd.randint(1, 4)
    tier = rnd.choice((0, 0, 1, 2))
    cores = rnd.randint(2, 8)
    memory = rnd.choice((None, 16 * GiB))
    if gpu_box:
        devices: dict[str, int | None] = {f"GPU-{i}": rnd.choice((24, 48, 80)) * GiB for i in range(count)}
    else:
        devices = {f"cpu:{i}": None for i in range(count)}
    free = list(devices)
    used = used_cpus = 0
    for n in range(rnd.randint(0, count)):  # what already runs: on free devices, within the tier and box
        if gpu_box and rnd.random() < 0.4 and free:  # sharing runs on one GPU
            uuid = free.pop(0)
            for k in range(rnd.randint(1, 2)):
                if tier and used + 1 > tier or used_cpus + 1 > cores:
                    break
                add_run(conn, f"run-{n}-{k}", gpus=1, cap_gib=rnd.choice((4, 8, 16)), share=True, max_s=600,
                        memory_gib=1, running_on=[uuid])
                used, used_cpus = used + 1, used_cpus + 1
            continue
        learners = rnd.choice((1, 1, 2))
        gpus = rnd.choice((0, 0, 1))
        need = gpus * learners
        take = need if gpu_box else min(need, count) if need else min(learners, count)
        if take > len(free) or (tier and need > tier - used) or used_cpus + 1 > cores:
            continue
        on, free = free[:take], free[take:]
        used, used_cpus = used + need, used_cpus + 1
        add_run(conn, f"run-{n}", gpus=gpus, learners=learners, memory_gib=2, max_s=600, running_on=on)
    parallel = rnd.choice((None, 1, 2))
    if parallel:
        with db.write(conn):
            sweeps.record_policies(conn, {"sw": SweepPolicy(parallel=parallel)}, now=NOW)
    trials = [{"gpus": rnd.choice((0, 1)), "cores": rnd.randint(1, 2), "memory_gib": rnd.choice((1, 2))}
              for _ in range(2)]  # one experiment's trials may differ (two manifests under one cap)
    for i in range(rnd.randint(1, 8)):
        kind = rnd.random()
        if kind < 0.25:  # a trial of the sweep
            add_run(conn, f"q{i}", at=i + 1, experiment="sw", **rnd.choice(trials))
            continue
        gpus = rnd.choice((0, 0, 1, 1, 2, 5))  # 5: more than any box here has
        sharing = gpu_box and gpus and rnd.random() < 0.5
        add_run(conn, f"q{i}", gpus=gpus, learners=rnd.choice((1, 1, 2)) if not gpus else 1, at=i + 1,
                max_s=rnd.choice((100, 300)), cores=rnd.choice((1, 1, 2, 3, 64)), memory_gib=rnd.choice((1, 2, 6)),
                cap_gib=rnd.choice((4, 8, 16, 30)) if sharing else None, share=bool(sharing),
                wait={"hold": True} if rnd.random() < 0.15 else None)
    capacity = min(tier, count) if tier else count
    etas = eta.local_etas(conn, capacity, now=NOW, devices=devices if gpu_box else {}, tier=tier,
                          cpu_slots=0 if gpu_box else count, box=(cores, memory), best_effort=True)
    now_etas = {rid for rid, e in etas.items() if abs(e.at.timestamp() - NOW) < 1}
    admitted = admitted_by_agent(conn, devices=devices, gpu_box=gpu_box, tier=tier, box_total=(cores, memory))
    conn.close()
    assert now_etas == admitted, (gpu_box, devices, tier, cores, memory, parallel)


@pytest.mark.parametrize("seed", range(40))
def test_fifo_is_the_default_and_best_effort_starts_at_least_what_fifo_starts_now(seed):
    """The default is strict FIFO (the same ETAs whether the flag is left out or False); best-effort
    starts now every run FIFO starts now, and more where a run that waits is passed."""
    rnd = random.Random(seed)
    runs = []
    for i in range(rnd.randint(0, 3)):
        runs.append(run(f"r{i}", S.PROCESSING, name=f"r{i}", admitted=-rnd.randint(0, 100), max_s=rnd.choice((200, 600)),
                        gpus=rnd.randint(1, 2)))
    for i in range(rnd.randint(1, 8)):
        runs.append(run(f"q{i}", name=f"q{i}", max_s=rnd.choice((60, 300)), gpus=rnd.randint(1, 3), at=i + 1))
    fifo = queue_etas(runs, capacity=4, now=T0)
    default = queue_etas(runs, capacity=4, now=T0, best_effort=False)
    best = queue_etas(runs, capacity=4, now=T0, best_effort=True)
    assert fifo == default
    assert {r for r, e in fifo.items() if e.at == T0} <= {r for r, e in best.items() if e.at == T0}
    assert all(e.at - T0 < timedelta(days=1) for e in best.values())


def test_the_kubernetes_engine_estimates_as_its_best_effort_cluster_queue_admits():
    """setup.py renders the ClusterQueue with queueingStrategy BestEffortFIFO: Kueue admits a workload
    that fits past one that does not, and `_refresh_etas` simulates that."""
    from time import monotonic

    from backend.engines.kubernetes import setup
    from backend.engines.kubernetes.engine import KubernetesEngine

    objs = setup.cluster_objects(namespace="team-a", queue="q", gpus=4, gpu_product=None, priorities={"normal": 0})
    assert [o["spec"]["queueingStrategy"] for o in objs if o["kind"] == "ClusterQueue"] == ["BestEffortFIFO"]
    runs = {r.id: r for r in (run("r", S.PROCESSING, name="r", admitted=-100, max_s=600, gpus=2),
                              run("big", name="big", max_s=300, gpus=3, at=1),
                              run("small", name="small", max_s=100, gpus=1, at=2))}
    engine = object.__new__(KubernetesEngine)
    engine._eta_capacity = (monotonic(), 4)  # the tier's GPUs, as read less than a minute ago
    engine.ledger = SimpleNamespace(runs=lambda: list(runs.values()), put_run=lambda r: runs.__setitem__(r.id, r))
    engine.cluster_now = lambda: T0
    engine._refresh_etas()
    assert {rid: (runs[rid].eta - T0).total_seconds() for rid in ("big", "small")} == {"small": 0, "big": 500}


def test_runs_taken_to_end_at_one_moment_free_their_devices_together():
    # Both running runs are past their expected end: both are taken to end now, together, so the big
    # run first in the queue gets both GPUs, rather than the small one taking the first to come back.
    runs = [run("r1", S.PROCESSING, name="r1", admitted=-700, max_s=600, gpus=1),
            run("r2", S.PROCESSING, name="r2", admitted=-900, max_s=600, gpus=1),
            run("big", name="big", max_s=300, gpus=2, at=1), run("small", name="small", max_s=100, gpus=1, at=2)]
    assert at(queue_etas(runs, capacity=2, now=T0, best_effort=True)) == {"big": 0, "small": 300}


def test_past_its_work_limit_the_simulation_gives_no_eta_rather_than_a_wrong_one(monkeypatch):
    from backend import eta as model

    rnd = random.Random(7)
    runs = [run(f"r{i}", S.PROCESSING, name=f"r{i}", admitted=-rnd.randint(0, 300), max_s=600, gpus=1) for i in range(2)]
    for i in range(300):  # unlike runs (their cores differ): each end tries every shape still waiting
        q = run(f"q{i}", name=f"m{i % 5}", max_s=rnd.choice((60, 120, 300)), gpus=rnd.randint(0, 3), at=i + 1)
        q.cpus_total = rnd.randint(1, 40)
        runs.append(q)
    full = queue_etas(runs, capacity=4, now=T0, box=(48, None), best_effort=True)
    monkeypatch.setattr(model, "_BEST_EFFORT_TRIES", 500)
    cut = queue_etas(runs, capacity=4, now=T0, box=(48, None), best_effort=True)
    assert 0 < len(cut) < len(full) == 300
    assert all(full[rid] == e for rid, e in cut.items())  # those it gives are those it gives unbounded
