"""The bundled samples on the local engine: real torch training, results, metrics, cost, DDP."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from .local_helpers import WAIT_S, stop_everything

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.fixture
def home(dlaas_home: Path):
    yield dlaas_home
    stop_everything(dlaas_home)


def test_digits_sample_end_to_end(home, cli):
    res = cli("submit", str(SAMPLES / "pytorch-digits" / "manifest.yml"), "--json")
    assert res.returncode == 0, res.stderr
    rid = json.loads(res.stdout)[0]["id"]
    res = cli("wait", rid, "--timeout", str(WAIT_S), timeout=WAIT_S + 60)
    assert res.returncode == 0, res.stdout + cli("logs", rid, "--tail", "20").stdout
    run = json.loads(cli("show", rid, "--json").stdout)
    assert run["state"] == "COMPLETED" and run["primary_metric"] == "loss"
    assert run["metrics"]["accuracy"] > 0.8
    out = home / "store" / "dlaas-results" / rid
    log = (out / "learner-1" / "training-log.txt").read_text()
    assert "epoch=20 " in log
    assert (out / "metrics.jsonl").is_file() and (out / "run.json").is_file()
    assert (out / "_submitted_code" / "model.zip").is_file()
    assert any((out / "model").iterdir())
    # cost: the ledger's billed seconds (at least the 60 s minimum) x 1 cpu slot x $0.05/h, exactly
    from backend.config import Config
    from backend.cost import PriceTable, run_cost
    from backend.runs import RunEvent, RunState

    events = [RunEvent(rid, datetime.fromisoformat(e["at"].replace("Z", "+00:00")),
                       RunState(e["state"]) if e["state"] else None) for e in run["events"]]
    expected = run_cost(events, "cpu", 1, PriceTable.from_config(Config()),
                        datetime.now(timezone.utc), 60)
    assert not expected.open
    assert run["cost_usd"] == pytest.approx(expected.total_micro / 1e6, abs=1e-6)
    assert run["cost_usd"] >= 60 * 0.05 / 3600 - 1e-6


def test_ddp_sample_ranks_really_all_reduce(home, cli):
    res = cli("submit", str(SAMPLES / "pytorch-ddp" / "manifest.yml"), "--json")
    assert res.returncode == 0, res.stderr
    rid = json.loads(res.stdout)[0]["id"]
    res = cli("wait", rid, "--timeout", str(WAIT_S), timeout=WAIT_S + 60)
    assert res.returncode == 0, res.stdout + cli("logs", rid, "--tail", "20").stdout
    out = home / "store" / "dlaas-results" / rid
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # each rank trained on its own shard of the data, yet ends with the very same parameters:
    # the gradients were all-reduced, not N independent copies trained side by side
    assert ranks[0]["shard_head"] != ranks[1]["shard_head"]
    same = {k: v for k, v in ranks[0].items() if k not in ("rank", "shard_head")}
    assert {k: v for k, v in ranks[1].items() if k not in ("rank", "shard_head")} == same
    assert "sha256" in same
    for n in (1, 2):
        assert "epoch=10 " in (out / f"learner-{n}" / "training-log.txt").read_text()
