"""The local agent as a single-node scheduler: cores and memory held, why a run waits."""
from __future__ import annotations

from pathlib import Path

import pytest

from backend.errors import BadInput
from backend.runs import RunState

from .local_helpers import engine, get, manifest, seed_home, stop_everything, submit, wait_for

pytestmark = pytest.mark.e2e

# Waits for a file the test creates, so a run stays busy exactly as long as the test needs.
HOLD = 'python -c "import os; print(sorted(os.sched_getaffinity(0)))"; while [ ! -f "$GO" ]; do sleep 0.05; done'


def wait_state(run_id: str, *states: str, timeout: float = 60):
    return wait_for(lambda: (r := get(run_id)).state.value in states and r, timeout)


def log_of(home: Path, rid: str) -> str:
    try:
        return (home / "state" / "runs" / rid / "logs" / "learner-1" / "training-log.txt").read_text()
    except OSError:
        return ""


@pytest.mark.slow
def test_a_cpu_run_holds_its_core_pinned_and_the_next_waits_saying_why(dlaas_home, tmp_path, cli):
    # Four cpu slots but one core for runs: the second gpus: 0 run waits for the core, not a slot.
    seed_home(dlaas_home, '[profiles.local]\ncpu_slots = 4\ncpus = 1\n')
    go = tmp_path / "go"
    try:
        a = submit(manifest(tmp_path, "a", command=HOLD, gpus=0, env={"GO": str(go)}, max_duration="10m"))
        b = submit(manifest(tmp_path, "b", command=HOLD, gpus=0, env={"GO": str(go)}, max_duration="10m"))
        wait_state(a, "PROCESSING")
        wait_for(lambda: "[" in log_of(dlaas_home, a))
        import os

        first_core = sorted(os.sched_getaffinity(0))[0]
        assert log_of(dlaas_home, a).splitlines()[0] == f"[{first_core}]"  # pinned to the one core
        waiting = wait_for(lambda: (r := get(b)).message and r)
        assert waiting.state == RunState.QUEUED
        assert waiting.message == "CPUs busy: needs 1 core(s), 0 of 1 free"
        c = submit(manifest(tmp_path, "c", command="true", gpus=0))
        assert get(c).message == "behind 1 run"
        table = cli("runs")
        assert table.returncode == 0, table.stderr
        assert "WAITING FOR" in table.stdout and "CPUs busy" in table.stdout  # cut to 80 columns
        listed = {r["id"]: r for r in __import__("json").loads(cli("runs", "--json").stdout)}
        assert listed[b]["message"].startswith("CPUs busy") and listed[c]["message"] == "behind 1 run"
        # b's estimate waits for a's core: a's end at the latest (its max_duration: a bound), not "now".
        from datetime import datetime, timedelta

        assert listed[b]["eta_upper_bound"] is True
        ends = get(a).admitted_at + timedelta(seconds=600)
        assert abs((datetime.fromisoformat(listed[b]["eta"]) - ends).total_seconds()) <= 1.5, (listed[b], ends)
        go.write_text("")
        assert wait_state(a, "COMPLETED").state == RunState.COMPLETED
        assert wait_state(b, "COMPLETED").state == RunState.COMPLETED
        assert get(b).admitted_at >= get(a).finished_at
        assert wait_state(c, "COMPLETED").message == ""
    finally:
        stop_everything(dlaas_home)


@pytest.mark.slow
def test_a_run_over_its_memory_fails_with_c202_and_the_figure(dlaas_home, tmp_path):
    seed_home(dlaas_home, '[profiles.local]\ncpu_slots = 2\n')
    try:
        hog = submit(manifest(tmp_path, "hog", gpus=0, memory="200MiB",
                              command='python -c "b = bytearray(600 * 2**20); print(len(b))"'))
        run = wait_state(hog, "FAILED", "COMPLETED")
        assert run.state == RunState.FAILED, run.message
        assert run.error_code == "C202"
        assert "limit 200 MiB per learner, enforced by RLIMIT_DATA" in run.message
        # the same command inside its limit runs to completion
        ok = submit(manifest(tmp_path, "fits", gpus=0, memory="1GiB",
                             command='python -c "b = bytearray(300 * 2**20); print(len(b))"'))
        assert wait_state(ok, "FAILED", "COMPLETED").state == RunState.COMPLETED
    finally:
        stop_everything(dlaas_home)


def test_more_cores_or_memory_than_runs_may_hold_is_refused_with_c104(dlaas_home, tmp_path):
    seed_home(dlaas_home, '[profiles.local]\ncpus = 1\nmemory = "1GiB"\n')
    with pytest.raises(BadInput) as err:
        submit(manifest(tmp_path, "wide", gpus=0, cpus=2))
    assert err.value.code == "C104" and "needs 2 core(s)" in str(err.value)
    with pytest.raises(BadInput) as err:
        submit(manifest(tmp_path, "fat", gpus=0, memory="2GiB"))
    assert err.value.code == "C104" and "needs 2 GiB of memory" in str(err.value)


@pytest.mark.slow
def test_dependencies_start_after_their_prerequisite_and_fail_with_it(dlaas_home, tmp_path, cli):
    seed_home(dlaas_home, '[profiles.local]\ncpu_slots = 4\n')
    go = tmp_path / "go"
    try:
        first = submit(manifest(tmp_path, "first", command=HOLD, gpus=0, env={"GO": str(go)}))
        res = cli("submit", str(manifest(tmp_path, "second", command="true", gpus=0)), "--after", "@")
        assert res.returncode == 0, res.stderr
        second = res.stdout.strip()
        third = submit(manifest(tmp_path, "third", command="true", gpus=0, depends_on=[second]))
        wait_state(first, "PROCESSING")
        # the reason follows the prerequisite's state (it may say DOWNLOADING for a pass or two first)
        waiting = wait_for(lambda: (r := get(second)).message == f"waiting for {first} (PROCESSING)" and r)
        assert waiting.state == RunState.QUEUED
        assert waiting.depends_on == [first]
        tree = cli("runs", "--tree")
        assert tree.returncode == 0, tree.stderr
        lines = tree.stdout.splitlines()
        assert lines[0].startswith(f"{first}  first  PROCESSING")
        assert lines[1].startswith(f"└─ {second}  second  QUEUED")
        assert lines[2].startswith(f"   └─ {third}  third  QUEUED")
        go.write_text("")
        assert wait_state(third, "COMPLETED", "FAILED").state == RunState.COMPLETED
        assert get(second).admitted_at >= get(first).finished_at
        assert get(third).admitted_at >= get(second).finished_at
        # A prerequisite that fails takes its dependents (and theirs) with it, without starting them.
        bad = submit(manifest(tmp_path, "bad", command=HOLD, gpus=0, env={"GO": str(tmp_path / "never")}))
        child = submit(manifest(tmp_path, "child", gpus=0, depends_on=bad))
        grandchild = submit(manifest(tmp_path, "grandchild", gpus=0, depends_on=[child]))
        wait_state(bad, "PROCESSING")
        assert cli("halt", bad).returncode == 0
        run = wait_state(grandchild, "FAILED")
        assert (run.error_code, run.started_at) == ("C206", None)
        assert run.message == f"not started: {child}, which it depends on, ended FAILED (C206)"
        run = get(child)
        assert (run.state, run.error_code) == (RunState.FAILED, "C206")
        assert run.message == f"not started: {bad}, which it depends on, ended HALTED"
        # and one that has already failed is refused at submit, naming it
        res = cli("submit", str(manifest(tmp_path, "late", gpus=0)), "--after", child)
        assert res.returncode == 2 and f"{child} already ended FAILED" in res.stderr
        res = cli("submit", str(manifest(tmp_path, "ghost", gpus=0)), "--after", "training-nosuchxx")
        assert res.returncode == 2 and "no run 'training-nosuchxx'" in res.stderr
    finally:
        stop_everything(dlaas_home)


@pytest.mark.slow
def test_hold_release_and_begin(dlaas_home, tmp_path, cli):
    seed_home(dlaas_home, '[profiles.local]\ncpu_slots = 2\n')
    try:
        res = cli("submit", str(manifest(tmp_path, "held", command="true", gpus=0)), "--hold")
        assert res.returncode == 0, res.stderr
        held = res.stdout.strip()
        later = submit(manifest(tmp_path, "later", command="true", gpus=0), begin_at=__import__(
            "backend.clock", fromlist=["time"]).time() + 3600)
        assert wait_for(lambda: get(later).message.startswith("begins at "))
        assert get(held).message == "held (release it to let it start)"
        runner = submit(manifest(tmp_path, "runner", command="true", gpus=0))
        assert wait_state(runner, "COMPLETED").state == RunState.COMPLETED  # gated runs block nobody
        assert get(held).state == RunState.QUEUED and get(later).state == RunState.QUEUED
        res = cli("release", held)
        assert res.returncode == 0, res.stderr
        assert wait_state(held, "COMPLETED").state == RunState.COMPLETED
        assert get(later).state == RunState.QUEUED
        res = cli("hold", held)
        assert res.returncode == 2 and "only a queued run can be held" in res.stderr
        from backend import clock

        begin = clock.time() + 2
        soon = submit(manifest(tmp_path, "soon", command="true", gpus=0), begin_at=begin)
        run = wait_state(soon, "COMPLETED", "FAILED")
        assert run.state == RunState.COMPLETED and run.admitted_at.timestamp() >= begin
    finally:
        stop_everything(dlaas_home)


@pytest.mark.slow
def test_a_failing_run_is_retried_each_attempt_in_the_events_and_billed(dlaas_home, tmp_path, cli):
    seed_home(dlaas_home, '[profiles.local]\ncpu_slots = 2\n')
    marker = tmp_path / "attempts"
    # fails twice, then succeeds: the third attempt of max_retries: 2
    cmd = f'echo x >> "{marker}"; n=$(wc -l < "{marker}"); echo "attempt $n"; [ "$n" -ge 3 ]'
    try:
        rid = submit(manifest(tmp_path, "flaky", command=cmd, gpus=0, max_retries=2))
        run = wait_state(rid, "COMPLETED", "FAILED")
        assert run.state == RunState.COMPLETED and run.error_code is None, run.message
        eng = engine()
        try:
            events = eng.events(rid)
        finally:
            eng.close()
        requeued = [e.message for e in events if e.state == RunState.QUEUED][1:]
        assert len(requeued) == 2
        assert requeued[0].startswith("retry: attempt 2 of at most 3, after attempt 1 failed "
                                      "(C201: learner 1 exited with 1")
        assert [e.state.value for e in events if e.state].count("PROCESSING") == 3
        log = (dlaas_home / "state" / "runs" / rid / "logs" / "learner-1" / "training-log.txt").read_text()
        assert "attempt 1\n" in log and "dlaas: attempt 3 started" in log and log.rstrip().endswith("attempt 3")
        shown = cli("show", rid)
        assert "attempt         3" in shown.stdout, shown.stdout
        # retries exhausted: FAILED with the last attempt's code
        always = submit(manifest(tmp_path, "broken", command="exit 4", gpus=0, max_retries=1))
        run = wait_state(always, "FAILED", "COMPLETED")
        assert (run.state, run.error_code) == (RunState.FAILED, "C201")
        # a halted run is not retried
        halted = submit(manifest(tmp_path, "halted", command="sleep 60", gpus=0, max_retries=3))
        wait_state(halted, "PROCESSING")
        assert cli("halt", halted).returncode == 0
        assert wait_state(halted, "HALTED").state == RunState.HALTED
    finally:
        stop_everything(dlaas_home)


@pytest.mark.slow
def test_a_run_waiting_for_gpus_says_who_holds_them(dlaas_home, tmp_path, monkeypatch):
    import json
    import os

    from backend.engines.local.gpulock import try_acquire

    gpus = tmp_path / "gpus.json"
    gpus.write_text(json.dumps({"gpus": [
        # busy with a process no agent started (this test's own pid stands for it)
        {"uuid": "GPU-aaaa-0001", "name": "NVIDIA H100 80GB HBM3", "memory_total": 85899345920,
         "processes": [os.getpid()]},
        {"uuid": "GPU-bbbb-0002", "name": "NVIDIA H100 80GB HBM3", "memory_total": 85899345920},
    ]}))
    monkeypatch.setenv("DLAAS_FAKE_NVML", str(gpus))
    monkeypatch.setenv("DLAAS_GPU_LOCK_DIR", str(tmp_path / "locks"))
    seed_home(dlaas_home)
    other = try_acquire("GPU-bbbb-0002", owner="training-elsewhere")  # another user's agent, say
    assert other is not None
    try:
        rid = submit(manifest(tmp_path, "wants-a-gpu", command="true", gpus=1))
        run = wait_for(lambda: (r := get(rid)).message and r)
        assert run.state == RunState.QUEUED
        assert run.message.startswith("GPUs busy: needs 1, 0 free (")
        assert f"held by {__import__('getpass').getuser()}'s agent (pid {os.getpid()})" in run.message
        assert "used by a process we did not start" in run.message
        other.release()
        assert wait_state(rid, "COMPLETED", "FAILED").state == RunState.COMPLETED
    finally:
        other.release()
        stop_everything(dlaas_home)
