"""Admission order and queue positions, without an agent."""
from __future__ import annotations

from backend.engines.local.scheduler import FreeDevice, plan

CPU = [FreeDevice(f"cpu:{i}", "cpu") for i in range(4)]


def q(*items):
    return [(rid, need, "local", gtype) for rid, need, gtype in items]


def test_fifo_admits_from_the_head_and_never_passes():
    queue = q(("a", 1, None), ("b", 3, None), ("c", 1, None))
    got = plan(queue, CPU[:2], {"local": None})
    assert [a.run_id for a in got] == ["a"]  # b needs 3 of the 1 left; c must not pass it
    assert got[0].devices == ("cpu:0",)


def test_best_effort_lets_a_smaller_run_pass():
    queue = q(("a", 1, None), ("b", 3, None), ("c", 1, None))
    got = plan(queue, CPU[:2], {"local": None}, best_effort=True)
    assert [(a.run_id, a.devices) for a in got] == [("a", ("cpu:0",)), ("c", ("cpu:1",))]


def test_tier_limits_devices_per_profile():
    queue = q(("a", 1, None), ("b", 1, None))
    assert [a.run_id for a in plan(queue, CPU, {"local": 1})] == ["a"]
    assert plan(queue, CPU, {"local": 0}) == []


def test_gpu_type_matching_on_real_gpus():
    free = [FreeDevice("GPU-1", "A100"), FreeDevice("GPU-2", "H100")]
    got = plan(q(("a", 1, "H100"), ("b", 1, None)), free, {"local": None}, match_type=True)
    assert [(a.run_id, a.devices) for a in got] == [("a", ("GPU-2",)), ("b", ("GPU-1",))]


def test_zero_gpu_runs_need_no_device():
    assert [a.run_id for a in plan(q(("a", 0, None)), [], {"local": 1})] == ["a"]
