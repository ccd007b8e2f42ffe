"""Experiments on the real local engine: sweeps, parallel caps, max_failed, early stop, budgets, ETAs,
grouping, and the `experiments` commands."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from .local_helpers import WAIT_S, manifest, runs_json, seed_home, stop_everything, wait_for

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]

CURVE = """\
import os, time
kind = os.environ["HP_KIND"]
bad = kind == "bad"
for step in range(1, (80 if bad else 60) + 1):
    loss = 5.0 + step * 0.01 if bad else 1.0 / step
    print(f"step={step} loss={loss}", flush=True)
    time.sleep(0.25 if bad else 0.002)
"""


@pytest.fixture
def home(dlaas_home: Path):
    seed_home(dlaas_home, "[profiles.local]\ncpu_slots = 2\n")
    yield dlaas_home
    stop_everything(dlaas_home)


def configure(home: Path, text: str) -> None:
    (home / "config.toml").write_text(text)


def submit_json(cli, *args) -> list[dict]:
    res = cli("submit", *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def sweep_manifest(tmp: Path, name: str, command: str, sweep: dict, *, files: dict | None = None,
                   **fields) -> Path:
    folder = tmp / f"sweep-{name}"
    (folder / "model").mkdir(parents=True)
    for fname, text in (files or {"noop.txt": ""}).items():
        (folder / "model" / fname).write_text(text)
    doc = {
        "name": name, "gpus": 0,
        "data_stores": [{"id": "d", "type": "local", "training_data": {"container": "tiny-data"},
                         "training_results": {"container": "tiny-results"}}],
        "framework": {"name": "python", "command": command}, "sweep": sweep, **fields,
    }
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def billed_spans(run_id: str) -> tuple[float, float]:
    from backend.facade import open_backend

    events = open_backend().engine.events(run_id)
    start = next(e.at for e in events if e.state and e.state.value == "PENDING")
    end = [e.at for e in events if e.state and e.state.terminal][-1]
    return start.timestamp(), end.timestamp()


def max_overlap(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    most = cur = 0
    for _, d in edges:
        cur += d
        most = max(most, cur)
    return most


@pytest.mark.slow
def test_grid_sweep_of_the_sample_completes_with_a_correct_leaderboard(home, tmp_path, cli):
    src = REPO / "samples" / "pytorch-sweep"
    folder = tmp_path / "pytorch-sweep"
    shutil.copytree(src / "model", folder / "model")
    doc = yaml.safe_load((src / "manifest.yml").read_text())
    doc["framework"]["command"] = doc["framework"]["command"].replace("--epochs 15", "--epochs 2")
    (folder / "manifest.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    runs = submit_json(cli, str(folder / "manifest.yml"))
    assert len(runs) == 12 and {r["experiment"] for r in runs} == {"pytorch-sweep"}
    grid = {(lr, h) for lr in (0.003, 0.01, 0.03) for h in (16, 32, 64, 128)}
    assert {(r["params"]["lr"], r["params"]["hidden"]) for r in runs} == grid
    res = cli("wait", *[r["id"] for r in runs], "--timeout", str(3 * WAIT_S), timeout=3 * WAIT_S + 60)
    assert res.returncode == 0, (res.stdout, res.stderr)

    board = json.loads(cli("experiments", "show", "pytorch-sweep", "--json").stdout)
    assert board["metric"] == "accuracy" and board["goal"] == "maximize"
    assert board["counts"] == {"COMPLETED": 12} and board["runs_total"] == 12
    values = [r["value"] for r in board["runs"]]
    assert all(v is not None for v in values) and values == sorted(values, reverse=True)
    assert [r["rank"] for r in board["runs"]] == list(range(1, 13))
    best = board["runs"][0]
    assert best["best"] and board["best"] == best["id"]
    assert not any(r["best"] for r in board["runs"][1:])
    assert board["parameters"] == ["lr", "hidden"]
    # Each row is the run it names: its value is that run's last accuracy, its params its own.
    by_id = {r["id"]: r for r in runs_json(cli)}
    for row in board["runs"]:
        assert row["value"] == by_id[row["id"]]["metrics"]["accuracy"]
        assert row["params"] == by_id[row["id"]]["params"]
    assert board["cost_usd"] == pytest.approx(sum(by_id[r["id"]]["cost_usd"] for r in board["runs"]))
    # `parallel: 2` held: never more than two of its runs held devices at once.
    assert max_overlap([billed_spans(r["id"]) for r in runs]) <= 2
    text = cli("experiments", "show", "pytorch-sweep")
    assert text.returncode == 0 and f"* best: {best['id']}" in text.stdout
    listing = json.loads(cli("experiments", "--json").stdout)
    assert [e["id"] for e in listing] == ["pytorch-sweep"]
    assert listing[0]["best_run"] == best["id"] and listing[0]["runs"] == 12


@pytest.mark.slow
def test_random_sweep_is_reproducible_from_its_seed_and_each_submit_is_a_new_experiment(
        home, tmp_path, cli):
    sweep = {"method": "random", "max_runs": 5, "seed": 42,
             "parameters": {"lr": {"min": 1e-4, "max": 1e-1, "distribution": "log_uniform"},
                            "width": {"min": 8, "max": 256, "distribution": "int_uniform"}}}
    path = sweep_manifest(tmp_path, "rnd", "echo lr=${lr} width=${width} loss=$HP_LR", sweep)
    dry = submit_json(cli, str(path), "--dry-run")
    first = submit_json(cli, str(path))
    second = submit_json(cli, str(path))
    params = [r["params"] for r in first]
    assert len(set(json.dumps(p, sort_keys=True) for p in params)) == 5
    assert [r["params"] for r in second] == params == [r["params"] for r in dry]
    assert {r["experiment"] for r in first} == {"rnd"} and {r["experiment"] for r in second} == {"rnd-2"}
    # Each run saw its own values in the command, the env and config.json.
    run = first[3]
    assert cli("wait", run["id"], "--timeout", str(WAIT_S), timeout=WAIT_S + 60).returncode == 0
    shown = json.loads(cli("show", run["id"], "--json").stdout)
    assert shown["metrics"]["lr"] == pytest.approx(run["params"]["lr"])
    assert shown["metrics"]["width"] == run["params"]["width"]
    assert shown["metrics"]["loss"] == pytest.approx(run["params"]["lr"])
    config = home / "state" / "runs" / run["id"] / "state" / "config.json"
    assert json.loads(config.read_text()) == run["params"]


@pytest.mark.slow
def test_early_stop_halts_a_planted_bad_run(home, tmp_path, cli):
    sweep = {"method": "grid", "parameters": {"kind": {"values": ["good1", "good2", "good3", "bad"]}},
             "metric": {"name": "loss", "goal": "minimize"}, "parallel": 1,
             "early_stop": {"type": "median", "min_runs": 3, "start_step": 2}}
    path = sweep_manifest(tmp_path, "es", "python curve.py", sweep, files={"curve.py": CURVE})
    runs = submit_json(cli, str(path))
    assert cli("wait", *[r["id"] for r in runs], "--timeout", str(WAIT_S), timeout=WAIT_S + 60).returncode == 1
    after = {r["id"]: r for r in runs_json(cli)}
    good, bad = [after[r["id"]] for r in runs[:3]], after[runs[3]["id"]]
    assert [r["state"] for r in good] == ["COMPLETED"] * 3
    assert bad["state"] == "HALTED" and bad["error_code"] == "C204", bad
    assert bad["message"].startswith("early stop:") and "median" in bad["message"]
    start, end = billed_spans(bad["id"])
    assert end - start < 15, "stopped long before its 80 slow steps (20 s) would have ended"
    # Its cost stopped: it no longer ticks.
    cost = bad["cost_usd"]
    assert cost is not None and cost > 0
    assert json.loads(cli("show", bad["id"], "--json").stdout)["cost_usd"] == cost
    board = json.loads(cli("experiments", "show", "es", "--json").stdout)
    assert board["counts"] == {"COMPLETED": 3, "HALTED": 1}
    assert board["runs"][-1]["id"] == bad["id"]  # the worst loss ranks last


@pytest.mark.slow
def test_parallel_caps_and_max_failed_stops_launching(home, tmp_path, cli):
    capped = sweep_manifest(tmp_path, "cap", "sleep 0.6",
                            {"parameters": {"i": {"values": [1, 2, 3, 4, 5]}}, "parallel": 2})
    runs = submit_json(cli, str(capped))
    assert cli("wait", *[r["id"] for r in runs], "--timeout", str(WAIT_S), timeout=WAIT_S + 60).returncode == 0
    assert max_overlap([billed_spans(r["id"]) for r in runs]) == 2

    failing = sweep_manifest(tmp_path, "fail", "exit 3",
                             {"parameters": {"i": {"values": [1, 2, 3, 4, 5, 6]}}, "parallel": 1,
                              "max_failed": 2})
    runs = submit_json(cli, str(failing))
    ids = [r["id"] for r in runs]
    wait_for(lambda: all(r["state"] in ("FAILED", "HALTED") for r in runs_json(cli) if r["id"] in ids))
    states = {r["id"]: r for r in runs_json(cli) if r["id"] in ids}
    failed = [i for i in ids if states[i]["state"] == "FAILED"]
    halted = [i for i in ids if states[i]["state"] == "HALTED"]
    assert len(failed) == 2 and len(halted) == 4
    for i in halted:
        assert states[i]["error_code"] == "C205" and "max_failed" in states[i]["message"]
        assert states[i]["admitted_at"] is None and states[i]["cost_usd"] == 0


@pytest.mark.slow
def test_budget_counts_what_queued_and_running_runs_have_committed(home, tmp_path, cli):
    """A $6 sweep is taken; a second $6 sweep against a $10 budget is refused while the first still
    holds its money, with spent, committed, the estimate and the budget, and nothing is queued."""
    configure(home, "[profiles.local]\ncpu_slots = 1\nbudget = { daily_usd = 10.0 }\n"
                    "[prices]\ncpu = 360.0\n[billing]\nminimum_seconds = 0\n")  # $0.10 a second
    # two trials x 30 s of max_duration x $0.10/s = $6 a sweep
    sweep = {"parameters": {"i": {"values": [1, 2]}}, "parallel": 1}
    first = sweep_manifest(tmp_path, "first", "sleep 30", sweep, max_duration="30s")
    taken = submit_json(cli, str(first))
    assert len(taken) == 2
    budget = json.loads(cli("budget", "--json").stdout)["budget"]
    daily = budget["daily"]
    assert daily["budget_usd"] == 10.0
    assert daily["spent_usd"] + daily["committed_usd"] == pytest.approx(6.0, abs=0.01)
    second = sweep_manifest(tmp_path, "second", "sleep 30", sweep, max_duration="30s")
    res = cli("submit", str(second))
    assert res.returncode == 2, res.stdout
    assert "over the daily budget" in res.stderr and "committed $" in res.stderr
    assert "this submission $6.00" in res.stderr and "budget is $10.00" in res.stderr
    assert "Traceback" not in res.stderr
    assert {r["id"] for r in runs_json(cli)} == {r["id"] for r in taken}
    text = cli("budget")
    assert text.returncode == 0 and "committed $" in text.stdout and "$10.00" in text.stdout
    assert cli("halt", *[r["id"] for r in taken]).returncode == 0


@pytest.mark.slow
def test_budget_refusal_with_the_figures_and_the_estimate_in_dry_run(home, tmp_path, cli):
    configure(home, "[profiles.local]\ncpu_slots = 2\nbudget = { daily_usd = 1.0 }\n"
                    "[prices]\ncpu = 2.0\n")
    sweep = {"parameters": {"i": {"values": [1, 2, 3]}}}
    dear = sweep_manifest(tmp_path, "dear", "true", sweep, max_duration="30m")
    res = cli("submit", str(dear))
    assert res.returncode == 2
    assert "over the daily budget" in res.stderr and "$3.00" in res.stderr and "$1.00" in res.stderr
    assert "Traceback" not in res.stderr
    assert runs_json(cli) == []
    assert not (home / "store" / "tiny-results").exists() or not any((home / "store" / "tiny-results").iterdir())
    dry = cli("submit", str(dear), "--dry-run")
    assert dry.returncode == 0
    assert "estimate" in dry.stdout and "$3.00" in dry.stdout and "REFUSED" in dry.stdout
    cheap = sweep_manifest(tmp_path, "cheap", "true", {"parameters": {"i": {"values": [1]}}},
                           max_duration="10m")
    dry = cli("submit", str(cheap), "--dry-run")
    assert "$0.33" in dry.stdout and "REFUSED" not in dry.stdout
    assert len(submit_json(cli, str(cheap))) == 1


@pytest.mark.slow
def test_eta_order_matches_admission_order(home, tmp_path, cli):
    configure(home, "[profiles.local]\ncpu_slots = 1\n")
    blocker = submit_json(cli, str(manifest(tmp_path, "blocker", command="sleep 30", max_duration="10m")))[0]
    wait_for(lambda: json.loads(cli("show", blocker["id"], "--json").stdout)["state"] == "PROCESSING")
    paths = [str(manifest(tmp_path, f"q{i}", command="sleep 0.2", max_duration="10m", priority=prio))
             for i, prio in enumerate(["normal", "normal", "high", "low", "normal"])]
    queued = submit_json(cli, *paths)
    table = {r["id"]: r for r in runs_json(cli, "--state", "QUEUED")}
    assert all(table[r["id"]]["eta"] for r in queued)
    by_eta = sorted(table.values(), key=lambda r: r["eta"])
    by_position = sorted(table.values(), key=lambda r: r["queue_position"])
    assert [r["id"] for r in by_eta] == [r["id"] for r in by_position]
    assert by_position[0]["name"] == "q2" and by_position[-1]["name"] == "q3"
    text = cli("runs")
    assert "≤" in text.stdout  # nothing of these manifests has run yet: max_duration bounds the ETAs
    shown = cli("show", by_position[0]["id"])
    assert "an upper bound" in shown.stdout and by_position[0]["eta"][:16] in shown.stdout
    assert cli("halt", blocker["id"]).returncode == 0
    assert cli("wait", *[r["id"] for r in queued], "--timeout", str(WAIT_S), timeout=WAIT_S + 60).returncode == 0
    admitted = sorted(runs_json(cli), key=lambda r: r["admitted_at"])
    order = [r["id"] for r in admitted if r["id"] in table]
    assert order == [r["id"] for r in by_eta]


@pytest.mark.slow
def test_two_manifests_grouped_in_one_experiment(home, tmp_path, cli):
    a = manifest(tmp_path, "alpha")
    b = sweep_manifest(tmp_path, "beta", "echo loss=0.${i}", {"parameters": {"i": {"values": [1, 2]}},
                                                              "metric": {"name": "loss"}})
    runs = submit_json(cli, str(a), str(b), "--experiment", "grp")
    assert len(runs) == 3 and {r["experiment"] for r in runs} == {"grp"}
    assert cli("wait", *[r["id"] for r in runs], "--timeout", str(WAIT_S), timeout=WAIT_S + 60).returncode == 0
    board = json.loads(cli("experiments", "show", "grp", "--json").stdout)
    assert board["runs_total"] == 3 and board["counts"] == {"COMPLETED": 3}
    assert {r["name"] for r in board["runs"]} == {"alpha", "beta-1", "beta-2"}
    assert board["runs"][0]["value"] == min(r["value"] for r in board["runs"] if r["value"] is not None)
    listing = json.loads(cli("experiments", "--json").stdout)
    assert [e["id"] for e in listing] == ["grp"] and listing[0]["runs"] == 3
    missing = cli("experiments", "show", "nope")
    assert missing.returncode == 1 and "nope" in missing.stderr
