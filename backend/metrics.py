"""Training metrics from log lines (`epoch=3 loss=0.41 lr=1e-05`) and from `metrics.jsonl`.

A token is `name=value`: the name starts with a letter or `_` and may hold `. - /` after that
(`val/loss`, `top-1`); the value is a decimal number in any spelling Python reads (`.95`, `-0.3`,
`1e-05`, `+2E3`), or `nan` / `inf` / `-inf`, optionally followed by `%`. A token must stand on its
own: `version=1.2.3`, `lr=1e-05abc` and `x=0x1F` are not metrics. `step`, `iteration` and `epoch`
(in that order of preference) give the x axis and are not values themselves. A line may start with
an ISO-8601 timestamp, bare or in brackets, which becomes the point's time.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .runs import MetricPoint

STEP_NAMES = ("step", "iteration", "epoch")  # preferred first when a line has several

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_SPECIAL = r"[+-]?(?:nan|inf(?:inity)?)"
_TOKEN = re.compile(
    r"(?:^|(?<=[\s,;|(\[{]))"  # the name starts the line or follows a separator
    r"(?P<name>[A-Za-z_][\w.\-/]*)"
    r"\s*=\s*"
    rf"(?P<value>{_SPECIAL}|{_NUMBER})%?"
    r"(?=$|[\s,;|)\]}])",  # ... and the value ends at one
    re.IGNORECASE,
)
_STAMP = re.compile(
    r"^\s*\[?(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\]?"
)


@dataclass
class ParsedMetrics:
    values: dict[str, float]
    step: float | None = None
    at: datetime | None = None
    axis: str | None = None  # which of STEP_NAMES gave `step`
    extra_axes: dict[str, float] = field(default_factory=dict)  # the other step names seen

    def points(self, learner: int = 0) -> list[MetricPoint]:
        return [MetricPoint(n, v, self.step, self.at, learner) for n, v in self.values.items()]


def _number(text: str) -> float:
    low = text.lower().lstrip("+")
    if low in ("nan", "-nan"):
        return math.nan
    if low in ("inf", "infinity"):
        return math.inf
    if low in ("-inf", "-infinity"):
        return -math.inf
    return float(text)


def parse_timestamp(text: str) -> datetime | None:
    """An ISO-8601 time (naive means UTC), or None when it is not one."""
    try:
        ts = datetime.fromisoformat(text.strip().replace(",", "."))
    except ValueError:
        return None
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def parse_metrics_line(line: str) -> ParsedMetrics | None:
    """The metrics in one log line, or None when it reports none (a step alone is not a metric)."""
    if "=" not in line:
        return None
    at = None
    body = line
    stamp = _STAMP.match(line)
    if stamp:
        at = parse_timestamp(stamp.group("ts"))
        if at is not None:
            body = line[stamp.end():]
    values: dict[str, float] = {}
    axes: dict[str, float] = {}
    for match in _TOKEN.finditer(body):
        name, raw = match.group("name"), match.group("value")
        value = _number(raw)
        if name.lower() in STEP_NAMES:
            axes.setdefault(name.lower(), value)
        else:
            values[name] = value
    if not values:
        return None
    axis = next((n for n in STEP_NAMES if n in axes), None)
    step = axes.pop(axis) if axis else None
    return ParsedMetrics(values, step, at, axis, axes)


def points_from_lines(lines: Iterable[str], learner: int = 0) -> list[MetricPoint]:
    """Every metric point in a log, in order."""
    out: list[MetricPoint] = []
    for line in lines:
        parsed = parse_metrics_line(line)
        if parsed is not None:
            out.extend(parsed.points(learner))
    return out


def _jsonl_value(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return _number(value)
        except ValueError:
            return None
    return None


def _jsonl_time(value: Any) -> datetime | None:
    if isinstance(value, str):
        return parse_timestamp(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return datetime.fromtimestamp(value, timezone.utc)
    return None


_TIME_KEYS = ("at", "time", "timestamp", "ts")


def read_metrics_jsonl(source: str | Path | Iterable[str]) -> list[ParsedMetrics]:
    """Records of a `metrics.jsonl` (a path, or its lines). Lines that are not JSON objects (a
    torn last line still being written, a stray print) are skipped, never fatal."""
    if isinstance(source, (str, Path)):
        try:
            lines: Iterable[str] = Path(source).read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
    else:
        lines = source
    out = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        at = next((t for k in _TIME_KEYS if k in record and (t := _jsonl_time(record[k]))), None)
        values: dict[str, float] = {}
        axes: dict[str, float] = {}
        for key, raw in record.items():
            if key in _TIME_KEYS:
                continue
            value = _jsonl_value(raw)
            if value is None:
                continue
            if key.lower() in STEP_NAMES:
                axes.setdefault(key.lower(), value)
            else:
                values[key] = value
        if not values:
            continue
        axis = next((n for n in STEP_NAMES if n in axes), None)
        step = axes.pop(axis) if axis else None
        out.append(ParsedMetrics(values, step, at, axis, axes))
    return out


def primary_metric(seen_names: Sequence[str] | Iterable[str], sweep_metric: str | None = None) -> str | None:
    """The metric a run is judged by: the sweep's, else `loss` when reported, else the first seen."""
    if sweep_metric:
        return sweep_metric
    names = list(seen_names)
    if "loss" in names:
        return "loss"
    return names[0] if names else None


def last_values(points: Iterable[MetricPoint]) -> dict[str, float]:
    """{name: latest value} in first-seen order of the names."""
    out: dict[str, float] = {}
    for p in points:
        out[p.name] = p.value
    return out
