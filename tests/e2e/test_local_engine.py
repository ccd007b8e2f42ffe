"""The local engine end to end: a real agent process running real commands under DLAAS_HOME."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from backend.runs import RunState

from .local_helpers import (
    WAIT_S,
    agent_pid,
    engine,
    get,
    manifest,
    runs_json,
    seed_home,
    stop_everything,
    submit,
    wait_for,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def home(dlaas_home: Path):
    seed_home(dlaas_home)
    yield dlaas_home
    stop_everything(dlaas_home)


def wait_state(run_id: str, *states: str, timeout: float = WAIT_S):
    return wait_for(lambda: (r := get(run_id)).state.value in states and r, timeout)


@pytest.mark.slow
def test_submit_runs_to_completion_with_results_logs_metrics_and_cost(home, tmp_path, cli):
    m = manifest(tmp_path)
    res = cli("submit", str(m), "--json")
    assert res.returncode == 0, res.stderr
    run = json.loads(res.stdout)[0]
    assert run["id"].startswith("training-") and len(run["id"]) == len("training-") + 8
    assert run["state"] in {"QUEUED", "PENDING", "DOWNLOADING", "PROCESSING", "STORING", "COMPLETED"}
    res = cli("wait", run["id"], "--timeout", str(WAIT_S), timeout=WAIT_S + 60)
    assert res.returncode == 0, res.stdout + res.stderr
    done = json.loads(cli("show", run["id"], "--json").stdout)
    assert done["state"] == "COMPLETED"
    assert done["assigned"] == ["cpu:0"]
    assert done["metrics"]["loss"] == 0.125 and done["metrics"]["lr"] == 1e-05
    assert done["primary_metric"] == "loss"
    # results layout in the results bucket
    out = home / "store" / "tiny-results" / run["id"]
    assert "epoch=3 loss=0.125" in (out / "learner-1" / "training-log.txt").read_text()
    assert (out / "model.txt").read_text().startswith("sum=6.0")
    assert (out / "_submitted_code" / "model.zip").is_file()
    lines = (out / "learner-1" / "metrics.jsonl").read_text().splitlines()
    assert {"name": "loss", "value": 0.125} .items() <= json.loads(
        [ln for ln in lines if '"loss"' in ln][-1]).items()
    doc = json.loads((out / "run.json").read_text())
    assert [e["state"] for e in doc["events"] if e["state"]] == [
        "QUEUED", "PENDING", "DOWNLOADING", "PROCESSING", "STORING"]
    # cost: the 60 s minimum at the cpu price (0.05 $/h) for one slot, in integer micro-dollars
    assert done["cost_usd"] == pytest.approx(60 * 0.05 / 3600, abs=1e-6) and done["cost_usd"] > 0
    # logs and results commands
    assert "epoch=2" in cli("logs", run["id"]).stdout
    assert cli("logs", run["id"], "--tail", "1").stdout.count("\n") == 1
    res = cli("results", run["id"], str(tmp_path / "dl"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "dl" / "model.txt").is_file()


@pytest.mark.slow
def test_tier_free_admits_one_at_a_time_in_order(dlaas_home, tmp_path):
    seed_home(dlaas_home, '[profiles.local]\ntier = "free"\ncpu_slots = 3\n')
    try:
        ids = [submit(manifest(tmp_path, f"r{i}", env={"SLEEP": "0.6"})) for i in range(3)]
        first = wait_state(ids[0], "PROCESSING", "STORING", "COMPLETED")
        assert first
        r1, r2 = get(ids[1]), get(ids[2])
        if r1.state == RunState.QUEUED:
            assert (r1.queue_position, r2.queue_position) == (1, 2)
        for rid in ids:
            wait_state(rid, "COMPLETED")
        runs = sorted((get(r) for r in ids), key=lambda r: r.admitted_at)
        assert [r.id for r in runs] == ids
        # never two at once: each admitted after the previous finished
        for a, b in zip(runs, runs[1:]):
            assert b.admitted_at >= a.finished_at
    finally:
        stop_everything(dlaas_home)


@pytest.mark.slow
def test_priorities_reorder_the_queue(dlaas_home, tmp_path):
    seed_home(dlaas_home, '[profiles.local]\ntier = "free"\n')
    try:
        blocker = submit(manifest(tmp_path, "blocker", env={"SLEEP": "1"}))
        wait_state(blocker, "PENDING", "DOWNLOADING", "PROCESSING")
        low = submit(manifest(tmp_path, "low", priority="low"))
        normal = submit(manifest(tmp_path, "normal"))
        high = submit(manifest(tmp_path, "high", priority="high"))
        positions = {rid: get(rid).queue_position for rid in (low, normal, high)}
        assert positions == {high: 1, normal: 2, low: 3}
        for rid in (low, normal, high):
            wait_state(rid, "COMPLETED")
        order = sorted((high, normal, low), key=lambda r: get(r).admitted_at)
        assert order == [high, normal, low]
    finally:
        stop_everything(dlaas_home)


@pytest.mark.slow
def test_halt_in_processing_stops_the_group_and_stores_the_log(home, tmp_path, cli):
    m = manifest(tmp_path, command="echo started; sleep 60 & sleep 60; echo never")
    rid = submit(m)
    wait_state(rid, "PROCESSING")
    wait_for(lambda: "started" in (home / "state" / "runs" / rid / "logs" / "learner-1" /
                                   "training-log.txt").read_text())
    pid = json.loads(
        __import__("sqlite3").connect(home / "state" / "state.db").execute(
            "SELECT procs FROM runs WHERE id = ?", (rid,)).fetchone()[0])[0]["pid"]
    res = cli("halt", rid)
    assert res.returncode == 0, res.stderr
    assert f"{rid}: HALTED" in res.stdout
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole group, the background sleep included, is gone
    stored = home / "store" / "tiny-results" / rid / "learner-1" / "training-log.txt"
    assert "started" in stored.read_text() and "never" not in stored.read_text()


@pytest.mark.slow
def test_failing_command_fails_with_code_and_last_lines(home, tmp_path):
    rid = submit(manifest(tmp_path, env={"EXIT_CODE": "3"}))
    run = wait_state(rid, "FAILED", "COMPLETED")
    assert run.state == RunState.FAILED and run.error_code == "C201"
    assert "exited with 3" in run.message and "loss=0.125" in run.message
    oom = submit(manifest(tmp_path, "oom", command="echo 'CUDA out of memory. Tried'; exit 1"))
    assert wait_state(oom, "FAILED").error_code == "C202"
    slow = submit(manifest(tmp_path, "slow", command="sleep 30", max_duration="1s"))
    run = wait_state(slow, "FAILED")
    assert run.error_code == "C203"


def test_model_zip_with_parent_entry_is_refused(home, tmp_path, cli):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("train.py", "print('hi')\n")
        zf.writestr("../evil.py", "print('escaped')\n")
    res = cli("submit", str(manifest(tmp_path)), "--model", str(bad))
    assert res.returncode == 2  # refused user input, as C104 is
    assert "C102" in res.stderr and "../evil.py" in res.stderr
    assert runs_json(cli) == []


def test_unmapped_framework_and_oversized_request_are_refused(home, tmp_path, cli):
    res = cli("submit", str(manifest(tmp_path, framework={"name": "caffe", "command": "true"})))
    assert res.returncode == 2 and "C104" in res.stderr and "pytorch" in res.stderr
    res = cli("submit", str(manifest(tmp_path, "big", gpus=2, learners=2)))
    assert res.returncode == 2 and "C104" in res.stderr and "needs 4" in res.stderr
    assert runs_json(cli) == []


@pytest.mark.slow
def test_kill_9_of_the_agent_mid_run_is_recovered(dlaas_home, tmp_path, cli):
    seed_home(dlaas_home, '[profiles.local]\ncpu_slots = 2\n')
    try:
        marker = tmp_path / "starts"
        cmd = f"echo x >> {marker}; echo begin; sleep 3; echo end loss=0.5"
        keep = submit(manifest(tmp_path, "keep", command=cmd))
        lose = submit(manifest(tmp_path, "lose", command="sleep 60"))
        queued = [submit(manifest(tmp_path, f"q{i}", command="true", gpus=2)) for i in range(2)]
        wait_state(keep, "PROCESSING")
        wait_state(lose, "PROCESSING")
        before = [get(q).queue_position for q in queued]
        pid = agent_pid(dlaas_home)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: agent_pid(dlaas_home) is None)
        # the "lose" run's process vanishes while no agent watches
        lose_pid = int((dlaas_home / "state" / "runs" / lose / "state" / "learner-1.pid").read_text())
        os.killpg(lose_pid, signal.SIGKILL)
        assert [get(q).queue_position for q in queued] == before == [1, 2]
        res = cli("runs")  # any command restarts the agent
        assert res.returncode == 0
        assert wait_for(lambda: agent_pid(dlaas_home) not in (None, -1, pid))  # a new agent, by its pid
        assert wait_state(keep, "COMPLETED", "FAILED").state == RunState.COMPLETED
        lost = wait_state(lose, "FAILED", "COMPLETED")
        assert lost.error_code == "S401"
        for q in queued:
            assert wait_state(q, "COMPLETED", "FAILED").state == RunState.COMPLETED
        assert marker.read_text() == "x\n"  # started once, never twice
        stored = dlaas_home / "store" / "tiny-results" / keep / "learner-1" / "training-log.txt"
        assert "end loss=0.5" in stored.read_text()
        assert get(keep).metrics["loss"] == 0.5
    finally:
        stop_everything(dlaas_home)


def test_two_agents_started_at_once_one_runs(home):
    procs = [subprocess.Popen([sys.executable, "-m", "backend.agent"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        pid = wait_for(lambda: agent_pid(home))
        # the loser exits by itself; the winner is the one the lock names
        exited = wait_for(lambda: [p for p in procs if p.poll() is not None])
        assert len(exited) == 1 and exited[0].returncode == 0
        alive = [p for p in procs if p.poll() is None]
        assert [p.pid for p in alive] == [pid]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.mark.slow
def test_cli_agent_start_status_stop(home, cli):
    res = cli("agent", "status")
    assert res.returncode == 1 and "not running" in res.stdout
    res = cli("agent", "start")
    pid = agent_pid(home)
    assert res.returncode == 0 and str(pid) in res.stdout
    # its own session, not ours, and no controlling terminal: it outlives the shell that started it
    assert os.getsid(pid) != os.getsid(0)
    proc_stat = Path(f"/proc/{pid}/stat").read_text()
    assert proc_stat[proc_stat.rfind(")") + 2 :].split()[4] == "0"  # tty_nr
    assert str(pid) in cli("agent", "status").stdout
    state = home / "state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    wait_for(lambda: (state / "state.db").exists(), 60)  # the agent opens its ledger after writing its pid
    for name in ("agent.pid", "agent.log", "agent.lock", "agent.sock", "state.db"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    assert cli("agent", "start").stdout.strip().endswith(str(pid))  # not a second one
    res = cli("agent", "stop")
    assert res.returncode == 0 and agent_pid(home) is None


def test_an_agent_whose_home_is_deleted_stops_and_leaves_the_new_home_alone(home, cli):
    """`rm -rf` of a home under its agent: the agent stops by itself (it does not serve a directory
    that is gone for ever), and an agent started meanwhile in the home made again keeps its pid file."""
    import shutil

    from backend.store.files import process_alive

    assert cli("agent", "start").returncode == 0
    old = wait_for(lambda: (p := agent_pid(home)) and p > 0 and p)
    state = home / "state"
    shutil.rmtree(state)
    assert cli("agent", "start").returncode == 0  # a new home, a new agent, while the old one may still run
    new = wait_for(lambda: agent_pid(home) not in (None, -1, old) and agent_pid(home))
    try:
        assert wait_for(lambda: not process_alive(old)), f"agent {old} kept serving a deleted home"
        assert agent_pid(home) == new and process_alive(new)  # its pid file was not taken away
        assert (state / "agent.pid").read_text().split()[0] == str(new)
    finally:
        if process_alive(old):
            os.kill(old, signal.SIGKILL)


@pytest.mark.slow
def test_two_homes_on_one_fake_two_gpu_box_never_share_a_gpu(tmp_path, cli):
    gpus = tmp_path / "gpus.json"
    gpus.write_text(json.dumps({"gpus": [
        {"uuid": "GPU-aaaa-0001", "name": "NVIDIA H100 80GB HBM3", "memory_total": 85899345920},
        {"uuid": "GPU-bbbb-0002", "name": "NVIDIA H100 80GB HBM3", "memory_total": 85899345920},
    ]}))
    locks = tmp_path / "locks"
    homes = [tmp_path / "alice", tmp_path / "bob"]
    env_of = {h: {"DLAAS_HOME": str(h), "DLAAS_FAKE_NVML": str(gpus), "DLAAS_GPU_LOCK_DIR": str(locks)}
              for h in homes}
    try:
        ids: dict[Path, list[str]] = {}
        for h in homes:
            h.mkdir()
            seed_home(h)
            ms = [str(manifest(tmp_path / h.name, f"{h.name}{i}", env={"SLEEP": "0.4"})) for i in range(3)]
            res = cli("submit", *ms, "--json", env=env_of[h])
            assert res.returncode == 0, res.stderr
            ids[h] = [r["id"] for r in json.loads(res.stdout)]
        spans = []
        for h in homes:
            res = cli("wait", *ids[h], "--timeout", str(WAIT_S), env=env_of[h], timeout=WAIT_S + 60)
            assert res.returncode == 0, res.stdout + res.stderr
            for r in json.loads(cli("runs", "--json", env=env_of[h]).stdout):
                uuid = r["assigned"][0].split()[0]
                spans.append((uuid, r["admitted_at"], r["finished_at"], h.name))
                seen = (h / "store" / "tiny-results" / r["id"] / "model.txt").read_text()
                assert f"devices='{uuid}'" in seen  # CUDA_VISIBLE_DEVICES = the assigned UUID
        assert {s[0] for s in spans} <= {"GPU-aaaa-0001", "GPU-bbbb-0002"}
        for i, a in enumerate(spans):
            for b in spans[i + 1 :]:
                if a[0] == b[0]:
                    assert a[2] <= b[1] or b[2] <= a[1], f"{a} and {b} overlap on one GPU"
    finally:
        for h in homes:
            if h.exists():
                stop_everything(h)


@pytest.mark.slow
def test_hundred_submits_from_ten_processes_all_recorded(home, tmp_path):
    m = manifest(tmp_path, command="true", gpus=1)
    script = (
        "import sys\n"
        "from backend.facade import open_backend, SubmitRequest\n"
        "e = open_backend().engine\n"
        "for _ in range(10):\n"
        "    print(e.submit(SubmitRequest(manifests=[sys.argv[1]]))[0].id, flush=True)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(m)], stdout=subprocess.PIPE, text=True)
             for _ in range(10)]
    got = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        got += out.split()
    assert len(got) == len(set(got)) == 100
    eng = engine()
    try:
        assert {r.id for r in eng.list_runs()} == set(got)
    finally:
        eng.close()


def test_a_run_asking_for_no_gpu_holds_a_cpu_slot(home, tmp_path, cli):
    """On cpu slots, a `gpus: 0` run holds the slot it is billed for: assigned, busy in `gpus`; the
    next one waits for it."""
    first = submit(manifest(tmp_path, "slot-a", command="sleep 30", gpus=0))
    second = submit(manifest(tmp_path, "slot-b", command="true", gpus=0))
    try:
        running = wait_state(first, "PROCESSING")
        assert running.assigned == ["cpu:0"]
        waiting = get(second)
        assert waiting.state is RunState.QUEUED and waiting.queue_position == 1
        eng = engine()
        try:  # the TUI's first screenful: the queue's head, as list_runs shows it
            assert [(r.id, r.queue_position) for r in eng.queue_head(5)] == [(second, 1)]
        finally:
            eng.close()
        shown = json.loads(cli("gpus", "--json").stdout)
        held = {d["uuid"]: d["held_by"] for d in shown["devices"]}
        assert held == {"cpu:0": first}
    finally:
        cli("halt", first)
    assert wait_state(second, "COMPLETED", "FAILED", timeout=40).state is RunState.COMPLETED
