"""GPU sharing on the real local agent, with the fake NVML: runs share a GPU while their caps fit,
and a run whose NVML figure goes over its gpu_memory cap is stopped with C207 and the figure."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from backend.runs import RunState

from .local_helpers import get, manifest, seed_home, stop_everything, submit, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

GiB = 2**30
GPU = "GPU-5a5a5a5a-0000-0000-0000-000000000001"
# Writes its shell's pid (in the learner's process group, as a CUDA process would be), then waits
# for a file the test creates.
HOLD = 'echo $$ > "$PIDFILE"; while [ ! -f "$GO" ]; do sleep 0.05; done'


def set_gpu(path: Path, processes: list) -> None:
    """The fake NVML's view of the box, replaced whole (the agent may read it at any moment)."""
    spec = {"gpus": [{"name": "NVIDIA A100-SXM4-40GB", "uuid": GPU, "memory_total": 40 * GiB,
                      "memory_used": 0, "processes": processes}]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(spec))
    os.replace(tmp, path)


def wait_state(run_id: str, *states: str):
    return wait_for(lambda: (r := get(run_id)).state.value in states and r)


def pid_of(tmp: Path, name: str) -> int:
    return wait_for(lambda: (tmp / f"{name}.pid").exists() and (tmp / f"{name}.pid").read_text().strip()
                    and int((tmp / f"{name}.pid").read_text()))


def test_sharing_runs_share_a_gpu_and_one_over_its_cap_is_stopped_with_c207(dlaas_home, tmp_path, monkeypatch, cli):
    nvml = tmp_path / "nvml.json"
    set_gpu(nvml, [])
    monkeypatch.setenv("DLAAS_FAKE_NVML", str(nvml))
    monkeypatch.setenv("DLAAS_GPU_LOCK_DIR", str(tmp_path / "locks"))
    seed_home(dlaas_home, '[profiles.local]\nmemory = "4GiB"\n')
    go = tmp_path / "go"

    def sharing(name: str, **extra):
        env = {"GO": str(go), "PIDFILE": str(tmp_path / f"{name}.pid")}
        return submit(manifest(tmp_path / "m", name, command=HOLD, env=env, gpus=1, memory="256MiB", **extra))

    try:
        a = sharing("a", gpu_memory="16GiB", share=True)
        b = sharing("b", gpu_memory="16GiB", share=True)
        ra, rb = wait_state(a, "PROCESSING"), wait_state(b, "PROCESSING")
        # one 40 GiB GPU holds both 16 GiB caps
        assert ra.assigned == rb.assigned == [f"{GPU} NVIDIA A100-SXM4-40GB"]
        shown = cli("gpus", "--json")
        assert shown.returncode == 0, shown.stderr
        holders = json.loads(shown.stdout)["devices"][0]["held_by"]
        assert sorted(holders.split(", ")) == sorted([a, b])  # both runs named on the shared GPU
        pa, pb = pid_of(tmp_path, "a"), pid_of(tmp_path, "b")
        set_gpu(nvml, [{"pid": pa, "used_memory": int(17.5 * GiB)}, {"pid": pb, "used_memory": 10 * GiB}])
        over = wait_state(a, "FAILED", "COMPLETED")
        assert over.state == RunState.FAILED and over.error_code == "C207", over.message
        assert over.message.startswith(f"learner 1 used 17.5 GiB of its 16 GiB gpu_memory cap on {GPU}")
        assert get(b).state == RunState.PROCESSING  # the run within its cap carries on
        set_gpu(nvml, [{"pid": pb, "used_memory": 10 * GiB}])  # a's process is gone from the GPU
        # A new sharing run joins b on the GPU; an exclusive one waits for the GPU to be free.
        c = sharing("c", gpu_memory="16GiB", share=True)
        rc = wait_state(c, "PROCESSING")
        assert rc.assigned == rb.assigned and get(b).state == RunState.PROCESSING
        x = submit(manifest(tmp_path / "m", "x", command="true", gpus=1, memory="256MiB"))
        go.write_text("")
        for rid in (b, c):
            assert wait_state(rid, "COMPLETED", "FAILED").state == RunState.COMPLETED, get(rid).message
        set_gpu(nvml, [])  # their processes have left the GPU
        assert wait_state(x, "COMPLETED", "FAILED").state == RunState.COMPLETED, get(x).message
        assert get(x).admitted_at >= max(get(b).finished_at, get(c).finished_at)
    finally:
        stop_everything(dlaas_home)


def test_sharing_runs_keep_their_gpu_locked_across_an_agent_kill_and_are_still_watched(
        dlaas_home, tmp_path, monkeypatch, cli):
    import signal

    from backend.engines.local.gpulock import held_by, try_acquire

    from .local_helpers import agent_pid

    nvml = tmp_path / "nvml.json"
    set_gpu(nvml, [])
    monkeypatch.setenv("DLAAS_FAKE_NVML", str(nvml))
    monkeypatch.setenv("DLAAS_GPU_LOCK_DIR", str(tmp_path / "locks"))
    seed_home(dlaas_home)
    go = tmp_path / "go"

    def sharing(name: str, go: Path = go):
        env = {"GO": str(go), "PIDFILE": str(tmp_path / f"{name}.pid")}
        return submit(manifest(tmp_path / "m", name, command=HOLD, env=env, gpus=1, memory="256MiB",
                               gpu_memory="10GiB", share=True))

    try:
        a, b = sharing("a"), sharing("b")
        wait_state(a, "PROCESSING"), wait_state(b, "PROCESSING")
        pa, pb = pid_of(tmp_path, "a"), pid_of(tmp_path, "b")
        pid = agent_pid(dlaas_home)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: agent_pid(dlaas_home) is None)
        # no agent: the runs' own processes still hold the GPU's host-wide lock
        assert held_by(GPU) is not None and try_acquire(GPU, owner="someone-else") is None
        assert cli("runs").returncode == 0  # any command restarts the agent
        # (the new agent holds its lock a moment before its pid file names it)
        wait_for(lambda: agent_pid(dlaas_home) not in (None, -1, pid))
        set_gpu(nvml, [{"pid": pa, "used_memory": 4 * GiB}, {"pid": pb, "used_memory": int(10.6 * GiB)}])
        over = wait_state(b, "FAILED", "COMPLETED")
        assert over.error_code == "C207" and "used 10.6 GiB of its 10 GiB gpu_memory cap" in over.message
        set_gpu(nvml, [{"pid": pa, "used_memory": 4 * GiB}])
        assert get(a).state == RunState.PROCESSING
        # A new sharing run does not join a GPU whose lock only a's process holds (inherited from the
        # killed agent), though 36 GiB are free: it would hold nothing once a ends. It waits, saying
        # so once the agent has seen that only a's process is on the GPU (b's has left it).
        go_c = tmp_path / "go-c"
        c = sharing("c", go_c)
        waiting = wait_for(lambda: ((r := get(c)).state != RunState.QUEUED or "held by runs here" in r.message) and r)
        assert waiting.state == RunState.QUEUED, waiting.message
        go.write_text("")
        assert wait_state(a, "COMPLETED", "FAILED").state == RunState.COMPLETED
        set_gpu(nvml, [])
        # a gone, c takes the GPU's lock itself: nobody else can take the GPU while c runs
        wait_state(c, "PROCESSING")
        assert wait_for(lambda: (held_by(GPU) or {}).get("owner")) == c
        assert try_acquire(GPU, owner="someone-else") is None
        go_c.write_text("")
        assert wait_state(c, "COMPLETED", "FAILED").state == RunState.COMPLETED, get(c).message
        wait_for(lambda: held_by(GPU) is None)  # the last holder gone, the lock is free
    finally:
        stop_everything(dlaas_home)
