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


def test_zero_gpu_runs_hold_a_cpu_slot_where_slots_are_the_devices():
    # What the run is billed for (one slot per learner) is what it holds: assigned, and busy.
    queue = [("a", 0, "local", None, 1), ("b", 0, "local", None, 2), ("c", 0, "local", None, 1)]
    got = plan(queue, CPU[:3], {"local": None}, cpu_slots=True)
    assert [(a.run_id, a.devices) for a in got] == [("a", ("cpu:0",)), ("b", ("cpu:1", "cpu:2"))]
    # fifo: with every slot taken, the next one waits its turn
    assert plan(queue[2:], [], {"local": None}, cpu_slots=True) == []
    # tiers count GPUs: a slot for a run that asked for none is not refused by a GPU tier
    assert [a.run_id for a in plan(queue[:1], CPU[:1], {"local": 0}, cpu_slots=True)] == ["a"]


def test_a_gpu_less_run_with_more_learners_than_the_box_has_slots_still_starts():
    # Two learners asking for no GPU on a one-slot box: they share the one slot rather than wait forever.
    queue = [("ddp", 0, "local", None, 2)]
    got = plan(queue, CPU[:1], {"local": None}, cpu_slots=True, slot_count=1)
    assert [(a.run_id, a.devices) for a in got] == [("ddp", ("cpu:0",))]
    # with the slot taken by another run, it waits its turn as any other run does
    assert plan(queue, [], {"local": None}, cpu_slots=True, slot_count=1) == []


def test_cores_and_memory_queue_runs_whatever_their_gpus():
    from backend.engines.local.scheduler import Box

    # (id, gpus, profile, type, learners, cores, memory bytes)
    queue = [("a", 0, "local", None, 1, 1, 2**30), ("b", 1, "local", None, 1, 1, 2**30),
             ("c", 0, "local", None, 1, 1, 2**30)]
    box = Box(cpus=2, memory=8 * 2**30, cpus_total=2, memory_total=8 * 2**30)
    why: dict[str, str] = {}
    got = plan(queue, CPU, {"local": None}, box=box, why=why)
    assert [a.run_id for a in got] == ["a", "b"]  # c waits for a core although it needs no GPU
    assert box.cpus == 0 and box.memory == 6 * 2**30
    assert why == {"c": "CPUs busy: needs 1 core(s), 0 of 2 free"}
    box = Box(cpus=8, memory=3 * 2**30, cpus_total=8, memory_total=4 * 2**30)
    why = {}
    big = [("a", 0, "local", None, 1, 1, 2 * 2**30), ("b", 0, "local", None, 1, 1, 2 * 2**30),
           ("c", 0, "local", None, 1, 1, 2**30)]
    assert [a.run_id for a in plan(big, [], {"local": None}, box=box, why=why)] == ["a"]
    assert why == {"b": "memory busy: needs 2 GiB, 1 GiB of 4 GiB free"}
    # best-effort: the small one passes the one whose memory does not fit
    box = Box(cpus=8, memory=3 * 2**30, cpus_total=8, memory_total=4 * 2**30)
    assert [a.run_id for a in plan(big, [], {"local": None}, box=box, best_effort=True)] == ["a", "c"]


def test_waiting_runs_say_why():
    why: dict[str, str] = {}
    plan(q(("a", 2, None)), CPU[:1], {"local": None}, why=why, match_type=True,
         busy_note="GPU 1 held by bob's agent (pid 7)")
    assert why == {"a": "GPUs busy: needs 2, 1 free (GPU 1 held by bob's agent (pid 7))"}
    why = {}
    plan(q(("a", 2, None)), CPU, {"local": 1}, why=why)
    assert why == {"a": "tier limit: profile local may take 1 more GPU(s), this run needs 2"}


def test_cli_text_keeps_printable_text_and_shows_control_characters():
    from dlaas_tui.cli.output import safe_text

    assert safe_text("CPUs busy: needs 1 core(s)") == "CPUs busy: needs 1 core(s)"
    assert safe_text("é ü\u200b") == "é ü\u200b"  # printable or harmless: kept as is
    assert safe_text("a\x1b[31mb\tc\x9b\x7f") == "a\\x1b[31mb\tc\\x9b\\x7f"


def test_begin_times_read_against_the_one_clock():
    from datetime import datetime, timedelta, timezone

    import pytest

    from backend import clock
    from backend.errors import BadInput
    from backend.runs import parse_begin

    at = datetime(2031, 3, 4, 12, 30, tzinfo=timezone.utc)
    with clock.use(clock.FrozenClock(at)):
        local = at.astimezone()
        assert parse_begin("+90m") == at.timestamp() + 5400
        got = datetime.fromtimestamp(parse_begin("22:00")).astimezone()
        assert (got.hour, got.minute) == (22, 0) and 0 < got.timestamp() - at.timestamp() <= 86400
        earlier = (local - timedelta(minutes=1)).strftime("%H:%M")  # already past today: tomorrow
        assert 86000 < parse_begin(earlier) - at.timestamp() <= 86400
        assert parse_begin("2031-03-05T08:00+00:00") == datetime(2031, 3, 5, 8, tzinfo=timezone.utc).timestamp()
        for bad in ("soon", "+5", "25:99"):
            with pytest.raises(BadInput):
                parse_begin(bad)
