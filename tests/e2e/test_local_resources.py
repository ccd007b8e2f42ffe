"""The local agent as a single-node scheduler: cores and memory held, why a run waits."""
from __future__ import annotations

from pathlib import Path

import pytest

from backend.errors import BadInput
from backend.runs import RunState, SubmitRequest

from .local_helpers import engine, manifest, seed_home, stop_everything, wait_for

pytestmark = pytest.mark.e2e

# Waits for a file the test creates, so a run stays busy exactly as long as the test needs.
HOLD = 'python -c "import os; print(sorted(os.sched_getaffinity(0)))"; while [ ! -f "$GO" ]; do sleep 0.05; done'


def submit(path: Path, **kw) -> str:
    eng = engine()
    try:
        return eng.submit(SubmitRequest(manifests=[path], **kw))[0].id
    finally:
        eng.close()


def get(run_id: str):
    eng = engine()
    try:
        return eng.get_run(run_id)
    finally:
        eng.close()


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
        a = submit(manifest(tmp_path, "a", command=HOLD, gpus=0, env={"GO": str(go)}))
        b = submit(manifest(tmp_path, "b", command=HOLD, gpus=0, env={"GO": str(go)}))
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
