"""Metric tokens in log lines and metrics.jsonl, and the choice of a run's primary metric."""
from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from backend.metrics import (
    last_values,
    parse_metrics_line,
    points_from_lines,
    primary_metric,
    read_metrics_jsonl,
)


@pytest.mark.parametrize(
    "line, values",
    [
        ("lr=1e-05", {"lr": 1e-05}),
        ("accuracy=.95", {"accuracy": 0.95}),
        ("loss=-0.3", {"loss": -0.3}),
        ("loss=+2E3", {"loss": 2000.0}),
        ("loss=3.", {"loss": 3.0}),
        ("val/loss=0.25 top-1=0.7 train.acc=0.5", {"val/loss": 0.25, "top-1": 0.7, "train.acc": 0.5}),
        ("loss = 0.5", {"loss": 0.5}),
        ("loss=0.5, acc=0.9; f1=0.8 | auc=0.7", {"loss": 0.5, "acc": 0.9, "f1": 0.8, "auc": 0.7}),
        ("(loss=0.5)", {"loss": 0.5}),
        ("accuracy=95.5%", {"accuracy": 95.5}),
        ("Train: loss=1 acc=2", {"loss": 1.0, "acc": 2.0}),
        ("\tloss=7", {"loss": 7.0}),
    ],
)
def test_values(line, values):
    parsed = parse_metrics_line(line)
    assert parsed is not None and parsed.values == values


def test_nan_and_inf():
    parsed = parse_metrics_line("loss=nan grad=inf low=-inf big=Infinity n2=NaN")
    assert parsed is not None
    v = parsed.values
    assert math.isnan(v["loss"]) and math.isnan(v["n2"])
    assert v["grad"] == math.inf and v["low"] == -math.inf and v["big"] == math.inf


@pytest.mark.parametrize(
    "line",
    [
        "",
        "starting training",
        "epoch=3",  # a step alone is no metric
        "version=1.2.3",
        "lr=1e-05abc",
        "x=0x1F",
        "mode=train",
        "loss=info",
        "see http://host/path?loss=1",  # inside a URL: not a token on its own
        "a==1",
        "=5",
        "1loss=3",
    ],
)
def test_not_metrics(line):
    assert parse_metrics_line(line) is None


def test_step_axes_prefer_step_then_iteration_then_epoch():
    p = parse_metrics_line("epoch=2 step=1500 loss=0.1")
    assert p.step == 1500 and p.axis == "step" and p.extra_axes == {"epoch": 2}
    assert "epoch" not in p.values and "step" not in p.values
    p = parse_metrics_line("Epoch=4 iteration=12 loss=0.1")
    assert (p.step, p.axis, p.extra_axes) == (12, "iteration", {"epoch": 4})
    p = parse_metrics_line("epoch=7 accuracy=0.9")
    assert (p.step, p.axis) == (7, "epoch")
    p = parse_metrics_line("loss=0.9")
    assert p.step is None and p.axis is None


@pytest.mark.parametrize(
    "line, at",
    [
        ("2026-11-27T02:03:04Z epoch=1 loss=0.5", datetime(2026, 11, 27, 2, 3, 4, tzinfo=timezone.utc)),
        ("2026-11-27T02:03:04.250000+01:00 loss=0.5", datetime(2026, 11, 27, 1, 3, 4, 250000, tzinfo=timezone.utc)),
        ("2026-11-27 02:03:04,500 INFO loss=0.5", datetime(2026, 11, 27, 2, 3, 4, 500000, tzinfo=timezone.utc)),
        ("[2026-11-27T02:03:04] loss=0.5", datetime(2026, 11, 27, 2, 3, 4, tzinfo=timezone.utc)),
        ("loss=0.5 at 2026-11-27T02:03:04Z", None),  # only a leading timestamp counts
    ],
)
def test_leading_timestamp(line, at):
    parsed = parse_metrics_line(line)
    assert parsed is not None and parsed.values == {"loss": 0.5} and parsed.at == at


def test_timestamp_digits_are_not_metrics():
    parsed = parse_metrics_line("2026-11-27T02:03:04Z step=3 loss=0.25")
    assert parsed.values == {"loss": 0.25} and parsed.step == 3


def test_points_from_lines_and_last_values():
    lines = ["hello", "epoch=1 loss=0.9 acc=0.1", "noise", "epoch=2 loss=0.5 acc=0.6"]
    points = points_from_lines(lines, learner=1)
    assert [(p.name, p.value, p.step, p.learner) for p in points] == [
        ("loss", 0.9, 1, 1), ("acc", 0.1, 1, 1), ("loss", 0.5, 2, 1), ("acc", 0.6, 2, 1)
    ]
    assert last_values(points) == {"loss": 0.5, "acc": 0.6}


def test_read_metrics_jsonl(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"epoch": 1, "loss": 0.9, "accuracy": 0.5, "timestamp": "2026-11-27T02:00:00Z"}\n'
        "not json\n"
        "[1, 2]\n"
        '{"step": 2, "loss": "nan", "note": "text", "ok": true, "time": 1764208800}\n'
        "\n"
        '{"epoch": 3, "loss": 0.1'  # torn last line
    )
    records = read_metrics_jsonl(path)
    assert len(records) == 2
    first, second = records
    assert first.values == {"loss": 0.9, "accuracy": 0.5} and first.step == 1 and first.axis == "epoch"
    assert first.at == datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc)
    assert math.isnan(second.values["loss"]) and set(second.values) == {"loss"}
    assert second.step == 2 and second.at == datetime.fromtimestamp(1764208800, timezone.utc)
    assert read_metrics_jsonl(['{"loss": 1}']) [0].values == {"loss": 1.0}
    assert read_metrics_jsonl(tmp_path / "missing.jsonl") == []


def test_primary_metric():
    assert primary_metric(["accuracy", "loss"]) == "loss"
    assert primary_metric(["accuracy", "f1"]) == "accuracy"
    assert primary_metric(["accuracy", "loss"], sweep_metric="accuracy") == "accuracy"
    assert primary_metric([], sweep_metric="val_loss") == "val_loss"
    assert primary_metric([]) is None
    assert primary_metric({"f1": 1.0, "loss": 2.0}) == "loss"
