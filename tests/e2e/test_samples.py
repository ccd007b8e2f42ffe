"""The samples run for real: the digits model alone, and two DDP learners that all-reduce."""
from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from backend.manifest import load_manifest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
TRAIN = SAMPLES / "pytorch-digits" / "model" / "train.py"
DATA = SAMPLES / "pytorch-digits" / "data"


def test_every_sample_uses_the_same_training_program() -> None:
    reference = TRAIN.read_bytes()
    for sample in ("pytorch-sweep", "pytorch-ddp"):
        assert (SAMPLES / sample / "model" / "train.py").read_bytes() == reference, (
            f"samples/{sample}/model/train.py differs from samples/pytorch-digits/model/train.py"
        )


def test_sample_manifests_agree_with_the_samples() -> None:
    digits = load_manifest(SAMPLES / "pytorch-digits" / "manifest.yml")
    store = digits.data_store
    assert (store.type, store.training_data.container, store.training_data.prefix) == (
        "local", "dlaas-samples", "pytorch-digits/")
    assert store.training_results.container == "dlaas-results"
    sweep = load_manifest(SAMPLES / "pytorch-sweep" / "manifest.yml")
    assert sweep.sweep is not None and sweep.sweep.run_count() == 12
    assert "${lr}" in sweep.framework.command and "${hidden}" in sweep.framework.command
    assert load_manifest(SAMPLES / "pytorch-ddp" / "manifest.yml").learners == 2


def test_shipped_data_is_small_and_complete() -> None:
    files = list(DATA.iterdir())
    assert sum(f.stat().st_size for f in files) < 300 * 1024
    with gzip.open(DATA / "digits.csv.gz", "rt") as fh:
        rows = [line.split(",") for line in fh if line.strip()]
    assert len(rows) == 1797 and {len(r) for r in rows} == {65}
    assert {int(r[64]) for r in rows} == set(range(10))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HP_")}
    env.update(DATA_DIR=str(DATA), RESULT_DIR=str(tmp_path / "results"), **extra)
    return env


@pytest.mark.slow
def test_digits_train_py_runs_and_writes_results(tmp_path: Path) -> None:
    # Hyperparameters from argv (--epochs) and from the env a sweep sets (HP_HIDDEN).
    proc = subprocess.run([sys.executable, str(TRAIN), "--epochs", "8", "--lr", "0.02"], capture_output=True,
                          text=True, timeout=300, cwd=str(TRAIN.parent), env=_env(tmp_path, HP_HIDDEN="48"))
    assert proc.returncode == 0, proc.stderr
    epochs = [line for line in proc.stdout.splitlines() if line.startswith("epoch=")]
    assert len(epochs) == 8
    assert '"hidden": 48' in proc.stdout and '"lr": 0.02' in proc.stdout
    results = tmp_path / "results"
    metrics = [json.loads(line) for line in (results / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == list(range(1, 9))
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert metrics[-1]["accuracy"] > 0.85
    assert epochs[-1] == f"epoch=8 loss={metrics[-1]['loss']:.4f} accuracy={metrics[-1]['accuracy']:.4f}"
    assert (results / "model" / "model.pt").stat().st_size > 0
    assert json.loads((results / "model" / "config.json").read_text())["hidden"] == 48


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_sample_learners_end_with_identical_parameters(tmp_path: Path) -> None:
    train = SAMPLES / "pytorch-ddp" / "model" / "train.py"
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = _env(tmp_path, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE="2", RANK=str(rank))
        log = open(tmp_path / f"learner-{rank}.log", "w")
        procs.append((subprocess.Popen([sys.executable, str(train), "--epochs", "4"], stdout=log,
                                       stderr=subprocess.STDOUT, cwd=str(train.parent), env=env), log))
    try:
        for proc, _ in procs:
            assert proc.wait(timeout=300) == 0, "\n".join(
                (tmp_path / f"learner-{r}.log").read_text()[-2000:] for r in range(2))
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    ranks = [json.loads((tmp_path / "results" / f"rank-{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in ranks] == [0, 1]
    # Each learner saw different data, yet the all-reduced gradients left the same parameters.
    assert ranks[0]["shard_head"] != ranks[1]["shard_head"]
    assert ranks[0]["sha256"] == ranks[1]["sha256"]
    assert ranks[0]["sum"] == ranks[1]["sum"]
    logs = [(tmp_path / f"learner-{r}.log").read_text() for r in range(2)]
    assert "learners: 2" in logs[0] and logs[0].count("epoch=") == 4
    # Every learner reports the loss all-reduced over both shards: the same figures.
    assert [l for l in logs[0].splitlines() if l.startswith("epoch=")] == [
        l for l in logs[1].splitlines() if l.startswith("epoch=")]
