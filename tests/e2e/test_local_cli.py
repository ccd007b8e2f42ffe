"""The run commands over the local engine: logs -f, wait, delete, rerun, sweeps, learners, storing again."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.ledger import db
from backend.runs import RunState

from .local_helpers import WAIT_S, agent_pid, manifest, runs_json, seed_home, stop_everything, wait_for

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(dlaas_home: Path):
    seed_home(dlaas_home, '[profiles.local]\ncpu_slots = 2\n')
    yield dlaas_home
    stop_everything(dlaas_home)


def submit_json(cli, *args) -> list[dict]:
    res = cli("submit", *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.slow
def test_logs_follow_ends_with_the_run_and_wait_exit_codes(home, tmp_path, cli):
    run = submit_json(cli, str(manifest(tmp_path, env={"SLEEP": "0.3", "EPOCHS": "4"})))[0]
    follow = subprocess.run([sys.executable, "-m", "dlaas_tui", "logs", run["id"], "-f"],
                            capture_output=True, text=True, timeout=WAIT_S, cwd=REPO)
    assert follow.returncode == 0
    assert [ln for ln in follow.stdout.splitlines() if ln.startswith("epoch=")][-1].startswith("epoch=4")
    assert cli("wait", run["id"]).returncode == 0
    failing = submit_json(cli, str(manifest(tmp_path, "bad", command="exit 2")))[0]
    assert cli("wait", run["id"], failing["id"], "--timeout", str(WAIT_S), timeout=WAIT_S + 60).returncode == 1
    slow = submit_json(cli, str(manifest(tmp_path, "slow", command="sleep 20")))[0]
    res = cli("wait", slow["id"], "--timeout", "0.5")
    assert res.returncode == 124
    res = cli("wait", "training-nosuchid")
    assert res.returncode == 1 and "training-nosuchid" in res.stderr


def test_delete_keeps_results_and_refuses_live_runs(home, tmp_path, cli):
    done = submit_json(cli, str(manifest(tmp_path)))[0]["id"]
    assert cli("wait", done).returncode == 0
    live = submit_json(cli, str(manifest(tmp_path, "live", command="sleep 20")))[0]["id"]
    res = cli("delete", live)
    assert res.returncode == 2 and live in res.stderr and "halt" in res.stderr
    assert cli("delete", done).returncode == 0
    assert done not in {r["id"] for r in runs_json(cli)}
    assert (home / "store" / "tiny-results" / done / "learner-1" / "training-log.txt").is_file()
    assert cli("show", done).returncode == 1


@pytest.mark.slow
def test_rerun_runs_the_same_code_again(home, tmp_path, cli):
    first = submit_json(cli, str(manifest(tmp_path)))[0]["id"]
    assert cli("wait", first).returncode == 0
    res = cli("rerun", first, "--json")
    assert res.returncode == 0, res.stderr
    again = json.loads(res.stdout)[0]["id"]
    assert again != first
    assert cli("wait", again).returncode == 0
    assert (home / "store" / "tiny-results" / again / "_submitted_code" / "model.zip").is_file()
    assert json.loads(cli("show", again, "--json").stdout)["metrics"]["loss"] == 0.125


@pytest.mark.slow
def test_sweep_expands_into_runs_with_params(home, tmp_path, cli):
    m = manifest(tmp_path, "sweep", command="EPOCHS=${epochs} python train.py",
                 sweep={"method": "grid", "parameters": {"epochs": {"values": [1, 2]}},
                        "metric": {"name": "accuracy", "goal": "maximize"}})
    dry = cli("submit", str(m), "--dry-run", "--json")
    assert dry.returncode == 0 and len(json.loads(dry.stdout)) == 2
    docs = list(__import__("yaml").safe_load_all(cli("submit", str(m), "--dry-run", "-o", "yaml").stdout))
    assert [d["framework"]["command"] for d in docs] == ["EPOCHS=1 python train.py", "EPOCHS=2 python train.py"]
    assert runs_json(cli) == []
    runs = submit_json(cli, str(m), "--experiment", "exp-a")
    assert sorted(r["params"]["epochs"] for r in runs) == [1, 2]
    assert {r["experiment"] for r in runs} == {"exp-a"}
    assert cli("wait", *[r["id"] for r in runs]).returncode == 0
    for r in runs:
        got = json.loads(cli("show", r["id"], "--json").stdout)
        assert got["primary_metric"] == "accuracy" and got["metric_goal"] == "maximize"
        assert got["metrics"]["loss"] == 0.5 ** r["params"]["epochs"]


def test_two_learners_get_rank_env_and_own_logs(home, tmp_path, cli):
    cmd = 'echo "rank=$RANK world=$WORLD_SIZE learner=$LEARNER_ID of $NUM_LEARNERS $MASTER_ADDR:$MASTER_PORT"'
    run = submit_json(cli, str(manifest(tmp_path, "ddp", command=cmd, learners=2)))[0]
    assert run["gpus"] == 2
    assert cli("wait", run["id"]).returncode == 0
    out = home / "store" / "tiny-results" / run["id"]
    l1 = (out / "learner-1" / "training-log.txt").read_text()
    l2 = (out / "learner-2" / "training-log.txt").read_text()
    assert "rank=0 world=2 learner=1 of 2 127.0.0.1:" in l1
    assert "rank=1 world=2 learner=2 of 2 127.0.0.1:" in l2
    assert l1.split(":")[-1] == l2.split(":")[-1]  # one rendezvous port
    assert "learner=2" in cli("logs", run["id"], "--learner", "2").stdout


@pytest.mark.slow
def test_a_run_cut_off_in_storing_finishes_storing(home, tmp_path, cli):
    from backend.facade import open_backend

    rid = submit_json(cli, str(manifest(tmp_path)))[0]["id"]
    assert cli("wait", rid).returncode == 0
    cli("agent", "stop")
    # Rewind the stored results and the run to the middle of STORING, as a crash would leave them:
    # the run's working results (removed once it ended) are back where the command wrote them.
    out = home / "store" / "tiny-results" / rid
    work = home / "state" / "runs" / rid / "results"
    work.mkdir()
    (work / "model.txt").write_bytes((out / "model.txt").read_bytes())
    for f in ("run.json", "learner-1/training-log.txt", "model.txt"):
        (out / f).unlink()
    conn = db.connect(open_backend().paths.db_file)
    with db.write(conn):
        conn.execute("UPDATE runs SET state = 'STORING', finished_at = NULL, outcome = ? WHERE id = ?",
                     (json.dumps({"state": "COMPLETED", "code": None, "message": ""}), rid))
    conn.close()
    assert cli("runs").returncode == 0  # brings the agent back
    wait_for(lambda: agent_pid(home))
    wait_for(lambda: json.loads(cli("show", rid, "--json").stdout)["state"] == "COMPLETED", interval=0.2)
    assert (out / "run.json").is_file() and (out / "model.txt").is_file()
    assert "loss=0.125" in (out / "learner-1" / "training-log.txt").read_text()


@pytest.mark.slow
def test_halt_a_queued_run_and_show_text(home, tmp_path, cli):
    blockers = [submit_json(cli, str(manifest(tmp_path, f"b{i}", command="sleep 20")))[0]["id"]
                for i in range(2)]
    queued = submit_json(cli, str(manifest(tmp_path, "q")))[0]
    assert queued["state"] == "QUEUED" and queued["queue_position"] == 1
    res = cli("halt", queued["id"], *blockers)
    assert res.returncode == 0, res.stdout + res.stderr
    assert all(f"{r}: HALTED" in res.stdout for r in [queued["id"], *blockers])
    text = cli("show", queued["id"]).stdout
    assert "HALTED" in text and "halted while queued" in text
    table = cli("runs").stdout  # piped: nothing cut (a terminal's width is test_cli_tables' business)
    assert all(rid in table for rid in [queued["id"], *blockers]) and "…" not in table, table
    assert table.count("HALTED") == 3


@pytest.mark.slow
def test_config_edits_apply_to_the_running_agent(home, tmp_path, cli):
    (home / "config.toml").write_text('[profiles.local]\ncpu_slots = 2\ntier = "free"\n')
    first = submit_json(cli, str(manifest(tmp_path, "a", command="sleep 20")))[0]["id"]
    second = submit_json(cli, str(manifest(tmp_path, "b", command="sleep 20")))[0]["id"]
    wait_for(lambda: json.loads(cli("show", first, "--json").stdout)["state"] == "PROCESSING", interval=0.2)
    assert json.loads(cli("show", second, "--json").stdout)["queue_position"] == 1
    cfg = home / "config.toml"
    before = cfg.stat().st_mtime_ns
    cfg.write_text('[profiles.local]\ncpu_slots = 2\ntier = "unlimited"\n')
    if cfg.stat().st_mtime_ns == before:  # a coarse clock: make the edit visible without a sleep
        os.utime(cfg, ns=(before + 10**9, before + 10**9))
    wait_for(lambda: json.loads(cli("show", second, "--json").stdout)["state"] == "PROCESSING", interval=0.2)
    assert cli("halt", first, second).returncode == 0


@pytest.mark.slow
def test_runs_json_fast_path_matches_the_run_objects(home, tmp_path, cli):
    from backend.facade import open_backend

    done = submit_json(cli, str(manifest(tmp_path, "done")))[0]["id"]
    assert cli("wait", done).returncode == 0
    blockers = [submit_json(cli, str(manifest(tmp_path, f"b{i}", command="sleep 20")))[0]["id"]
                for i in range(2)]
    queued = submit_json(cli, str(manifest(tmp_path, "q")))[0]["id"]
    assert cli("halt", queued, *blockers).returncode == 0
    fast = runs_json(cli)
    engine = open_backend().engine
    try:
        assert fast == json.loads(json.dumps([r.to_json() for r in engine.list_runs()]))
        assert [r["id"] for r in runs_json(cli, "--state", "HALTED", "--limit", "2")] == \
            [r.id for r in engine.list_runs(states=[RunState.HALTED], limit=2)]
    finally:
        engine.close()
    assert {r["state"] for r in fast} == {"COMPLETED", "HALTED"}
