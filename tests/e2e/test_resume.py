"""Checkpoints and resume on the local engine, with the real digits sample (torch on CPU): halted
midway, resumed as attempt 2 of the same run, it goes on from the epoch it saved and completes; the
bill counts both attempts' intervals."""
from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from .local_helpers import stop_everything, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
EPOCHS = 6


@pytest.fixture
def home(dlaas_home: Path):
    yield dlaas_home
    stop_everything(dlaas_home)


def _manifest(tmp: Path) -> Path:
    doc = yaml.safe_load((SAMPLES / "pytorch-digits" / "manifest.yml").read_text())
    # A pause after each epoch leaves time to halt it midway, whatever the machine's speed.
    doc["framework"]["command"] = f"python3 train.py --epochs {EPOCHS} --epoch-pause 1"
    folder = tmp / "digits"
    folder.mkdir()
    shutil.copytree(SAMPLES / "pytorch-digits" / "model", folder / "model")
    path = folder / "manifest.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _events(run: dict):
    from backend.runs import RunEvent, RunState

    return [RunEvent(run["id"], datetime.fromisoformat(e["at"].replace("Z", "+00:00")),
                     RunState(e["state"]) if e["state"] else None, e["message"]) for e in run["events"]]


def test_digits_halted_midway_resumes_from_its_checkpoint(home, cli, tmp_path):
    res = cli("submit", str(_manifest(tmp_path)), "--json")
    assert res.returncode == 0, res.stderr
    rid = json.loads(res.stdout)[0]["id"]
    folder = home / "state" / "runs" / rid
    log = folder / "logs" / "learner-1" / "training-log.txt"
    ckpt = folder / "checkpoints" / "checkpoint.pt"

    # Halt once at least two epochs are saved and before the last one.
    wait_for(lambda: ckpt.is_file() and "epoch=2 " in (log.read_text() if log.exists() else ""))
    res = cli("halt", rid)
    assert res.returncode == 0 and f"{rid}: HALTED" in res.stdout, res.stdout + res.stderr
    import torch

    saved = int(torch.load(ckpt, weights_only=True)["epoch"])
    assert 2 <= saved < EPOCHS, "the run finished before it could be halted"
    first = log.read_text()
    assert f"epoch={EPOCHS} " not in first

    res = cli("resume", rid)
    assert res.returncode == 0, res.stderr
    assert f"{rid}: " in res.stdout and "attempt 2" in res.stdout
    listed = {r["id"]: r for r in json.loads(cli("runs", "--json").stdout)}
    assert listed[rid]["state"] != "HALTED" and listed[rid]["finished_at"] is None  # not its sealed JSON
    res = cli("wait", rid, "--timeout", "240")
    assert res.returncode == 0, res.stdout + cli("logs", rid, "--tail", "30").stdout

    text = log.read_text()
    assert text.startswith(first)  # the log keeps the first attempt and goes on after it
    second = text[len(first):]
    assert f"resumed from epoch {saved}" in second
    epochs = [int(n) for n in re.findall(r"^epoch=(\d+) ", second, re.M)]
    assert epochs == list(range(saved + 1, EPOCHS + 1)), second

    assert "attempt         2" in cli("show", rid).stdout
    run = json.loads(cli("show", rid, "--json").stdout)
    assert run["state"] == "COMPLETED" and run["id"] == rid
    messages = [e["message"] for e in run["events"]]
    assert any("attempt 2 started" in m for m in messages), messages
    assert [e["state"] for e in run["events"] if e["state"]].count("HALTED") == 1

    # Stored results: the metrics of both attempts, every epoch once.
    stored = home / "store" / "dlaas-results" / rid
    steps = [json.loads(line)["epoch"] for line in (stored / "metrics.jsonl").read_text().splitlines()]
    assert steps[-(EPOCHS - saved):] == list(range(saved + 1, EPOCHS + 1))
    assert "resumed from epoch" in (stored / "learner-1" / "training-log.txt").read_text()

    # Billing: both attempts' intervals, nothing for the time it sat halted.
    from backend.config import Config
    from backend.cost import PriceTable, billed_intervals, run_cost

    events = _events(run)
    intervals = billed_intervals(events, datetime.now(timezone.utc))
    assert len(intervals) == 2
    halted_at = next(e.at for e in events if e.state and e.state.value == "HALTED")
    resumed_at = next(e.at for e in events if e.message.startswith("resume requested"))
    assert intervals[0][1] == halted_at and intervals[1][0] >= resumed_at
    expected = run_cost(events, "cpu", 1, PriceTable.from_config(Config()), datetime.now(timezone.utc), 60)
    assert not expected.open and expected.seconds == pytest.approx(
        sum((b - a).total_seconds() for a, b in intervals))
    assert run["cost_usd"] == pytest.approx(expected.total_micro / 1e6, abs=1e-6)
