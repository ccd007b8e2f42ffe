"""GPU sharing (gpu_memory + share): where the planner puts sharing runs, and what NVML says they use."""
from __future__ import annotations

from backend.engines.local.fake_nvml import FakeNVML
from backend.engines.local.nvml import process_memory
from backend.engines.local.scheduler import FreeDevice, SharedGpu, plan

GiB = 2**30


def gpu(uuid: str, total: int = 48 * GiB, gtype: str = "A100") -> FreeDevice:
    return FreeDevice(uuid, gtype, total)


def run(rid: str, need: int = 1, *, cap: int | None = None, share: bool = False, want: str | None = None):
    """A queue item as the agent reads it: id, devices, profile, type, learners, cores, memory, cap, share."""
    return (rid, need, "local", want, 1, 0, 0, cap, int(share))


def placed(got):
    return [(a.run_id, a.devices, a.shared) for a in got]


def test_sharing_runs_share_one_gpu_while_their_caps_fit():
    shared: dict[str, SharedGpu] = {}
    why: dict[str, str] = {}
    queue = [run("a", cap=20 * GiB, share=True), run("b", cap=20 * GiB, share=True),
             run("c", cap=20 * GiB, share=True)]
    got = plan(queue, [gpu("GPU-1")], {"local": None}, match_type=True, shared=shared, why=why)
    # 48 GiB holds two 20 GiB caps, not three
    assert placed(got) == [("a", ("GPU-1",), True), ("b", ("GPU-1",), True)]
    assert shared["GPU-1"].room == 8 * GiB
    assert why["c"].startswith("GPUs busy: needs 1 with 20 GiB of GPU memory free, 0 fit")


def test_a_run_joins_the_fullest_shared_gpu_that_fits_before_taking_a_free_one():
    shared = {"GPU-1": SharedGpu("GPU-1", "A100", 30 * GiB, 48 * GiB),
              "GPU-2": SharedGpu("GPU-2", "A100", 10 * GiB, 48 * GiB)}
    got = plan([run("a", cap=8 * GiB, share=True), run("b", cap=20 * GiB, share=True)],
               [gpu("GPU-3")], {"local": None}, match_type=True, shared=shared)
    # a fits GPU-2's 10 GiB (the fullest); b needs 20 GiB: GPU-1 has 30
    assert placed(got) == [("a", ("GPU-2",), True), ("b", ("GPU-1",), True)]
    assert shared["GPU-2"].room == 2 * GiB and shared["GPU-1"].room == 10 * GiB
    assert "GPU-3" not in shared  # the free GPU was not needed


def test_exclusive_runs_never_share_and_shared_gpus_are_not_free():
    shared: dict[str, SharedGpu] = {}
    queue = [run("s", cap=10 * GiB, share=True), run("x"), run("y")]
    got = plan(queue, [gpu("GPU-1"), gpu("GPU-2")], {"local": None}, match_type=True, shared=shared,
               best_effort=True)
    # s takes GPU-1 and shares it; x gets GPU-2 alone; y finds nothing free though GPU-1 has room
    assert placed(got) == [("s", ("GPU-1",), True), ("x", ("GPU-2",), False)]
    # and a sharing run never joins a GPU an exclusive run holds (it is neither free nor shared)
    got = plan([run("t", cap=1 * GiB, share=True)], [], {"local": None}, match_type=True, shared={})
    assert got == []


def test_a_gpu_with_an_exclusive_run_takes_no_sharing_run_and_a_capped_exclusive_run_does_not_share():
    # gpu_memory without share: an exclusive run (its cap is only watched)
    shared: dict[str, SharedGpu] = {}
    got = plan([run("capped", cap=10 * GiB), run("s", cap=10 * GiB, share=True)], [gpu("GPU-1")],
               {"local": None}, match_type=True, shared=shared)
    assert placed(got) == [("capped", ("GPU-1",), False)]
    assert shared == {}


def test_a_cap_larger_than_the_gpu_does_not_go_there_and_types_are_matched():
    free = [gpu("GPU-small", 16 * GiB, "T4"), gpu("GPU-big", 80 * GiB, "H100")]
    got = plan([run("a", cap=20 * GiB, share=True)], free, {"local": None}, match_type=True, shared={})
    assert placed(got) == [("a", ("GPU-big",), True)]
    got = plan([run("t", cap=4 * GiB, share=True, want="T4")], free, {"local": None}, match_type=True,
               shared={"GPU-x": SharedGpu("GPU-x", "H100", 70 * GiB, 80 * GiB)})
    assert placed(got) == [("t", ("GPU-small",), True)]


def test_a_multi_gpu_sharing_run_takes_distinct_gpus_and_counts_against_the_tier():
    shared = {"GPU-1": SharedGpu("GPU-1", "A100", 20 * GiB, 48 * GiB)}
    got = plan([run("two", 2, cap=20 * GiB, share=True)], [gpu("GPU-2")], {"local": None}, match_type=True,
               shared=shared)
    assert placed(got) == [("two", ("GPU-1", "GPU-2"), True)]
    assert shared["GPU-1"].room == 0 and shared["GPU-2"].room == 28 * GiB
    why: dict[str, str] = {}
    assert plan([run("two", 2, cap=1 * GiB, share=True)], [gpu("GPU-3"), gpu("GPU-4")], {"local": 1},
                match_type=True, shared={}, why=why) == []
    assert why["two"].startswith("tier limit")


def test_on_cpu_slots_sharing_runs_hold_slots_like_any_run():
    slots = [FreeDevice(f"cpu:{i}", "cpu") for i in range(2)]
    got = plan([run("a", cap=GiB, share=True), run("b", cap=GiB, share=True), run("c", cap=GiB, share=True)],
               slots, {"local": None}, cpu_slots=True, shared={})
    assert placed(got) == [("a", ("cpu:0",), False), ("b", ("cpu:1",), False)]


def test_nvml_reports_each_process_gpu_memory_by_device():
    fake = FakeNVML({"gpus": [
        {"name": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-1", "memory_total": 40 * GiB,
         "processes": [11, {"pid": 12, "used_memory": 3 * GiB}, {"pid": 13, "used_memory": None}]},
        {"name": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-2", "memory_total": 40 * GiB, "processes": None,
         "mig": [{"name": "NVIDIA A100-SXM4-40GB MIG 3g.20gb", "uuid": "MIG-1", "memory_total": 20 * GiB,
                  "processes": [{"pid": 14, "used_memory": GiB}]}]},
    ]})
    # pids without a figure are left out; MIG slices answer by their own uuid
    assert process_memory(fake) == {"GPU-1": {12: 3 * GiB}, "MIG-1": {14: GiB}}
    assert fake.initialized == 0
    assert process_memory(FakeNVML({"gpus": [], "error": "driver_not_loaded"})) == {}
