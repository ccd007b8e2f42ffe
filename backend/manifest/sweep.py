"""Sweep expansion: one Trial (a run's manifest and parameters) per point of the sweep.

Grid: every combination in declared order (the first parameter varies slowest), capped at
`max_runs`. Random: `max_runs` draws from a generator seeded with `seed`, so the same manifest gives
the same runs. A run receives its parameters three ways (DESIGN.md): `${NAME}` in the command for
declared names only (shell-quoted), `HP_<NAME>` env entries, and `config.json` text that the engine
writes to `$JOB_STATE_DIR/config.json`.
"""
from __future__ import annotations

import itertools
import json
import math
import random
import re
import secrets
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .model import Manifest, Sweep, SweepParameter

_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")
_NOT_ENV = re.compile(r"[^A-Z0-9_]")


@dataclass(frozen=True)
class Trial:
    index: int  # 0-based position in the sweep
    params: dict[str, Any]
    manifest: Manifest  # command substituted, HP_ env added, no `sweep`
    env: dict[str, str]  # the HP_<NAME> entries alone
    config_json: str
    seed: int | None = None  # the seed a random sweep used (drawn when the manifest gave none)


def hp_env_name(name: str) -> str:
    return "HP_" + _NOT_ENV.sub("_", name.upper())


def format_value(value: Any) -> str:
    """How a parameter value is written into a command or env var."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def substitute(command: str, params: dict[str, Any]) -> str:
    """`${NAME}` -> the shell-quoted value, for declared names only (`${DATA_DIR}` stays for sh)."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        return shlex.quote(format_value(params[name])) if name in params else match.group(0)

    return _PLACEHOLDER.sub(repl, command)


def _grid_axis(param: SweepParameter) -> list[Any]:
    if param.values is not None:
        return list(param.values)
    return list(range(int(param.min), int(param.max) + 1))  # type: ignore[arg-type]


def _round(value: float) -> float:
    # Six significant digits: readable in tables and commands, and stable across platforms.
    return float(f"{value:.6g}")


def _draw(param: SweepParameter, rng: random.Random) -> Any:
    if param.values is not None:
        return rng.choice(param.values)
    lo, hi = param.min, param.max
    assert lo is not None and hi is not None  # the model guarantees both
    kind = param.effective_distribution
    if kind == "int_uniform":
        return rng.randint(int(lo), int(hi))
    if kind == "log_uniform":
        return _round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return _round(rng.uniform(lo, hi))


def points(sweep: Sweep, seed: int | None = None) -> Iterator[dict[str, Any]]:
    """The parameter dicts of the sweep, in run order."""
    names = list(sweep.parameters)
    if sweep.method == "grid":
        axes = [_grid_axis(sweep.parameters[n]) for n in names]
        combos = itertools.product(*axes)
        if sweep.max_runs:
            combos = itertools.islice(combos, sweep.max_runs)
        for combo in combos:
            yield dict(zip(names, combo))
        return
    rng = random.Random(sweep.seed if seed is None else seed)
    params = [sweep.parameters[n] for n in names]
    for _ in range(sweep.max_runs or 0):
        yield {n: _draw(p, rng) for n, p in zip(names, params)}


def expand(manifest: Manifest) -> list[Trial]:
    """One Trial per run; a manifest without `sweep` gives one Trial with no parameters."""
    sweep = manifest.sweep
    if sweep is None:
        return [Trial(0, {}, manifest, {}, "{}")]
    seed = sweep.seed
    if sweep.method == "random" and seed is None:
        seed = secrets.randbits(32)
    command = manifest.framework.command
    framework = manifest.framework
    env_names = {name: hp_env_name(name) for name in sweep.parameters}
    trials = []
    for index, params in enumerate(points(sweep, seed)):
        hp_env = {env_names[name]: format_value(value) for name, value in params.items()}
        # Shallow copies: the trials share every unchanged part, which keeps 10,000 runs cheap.
        run_manifest = manifest.model_copy(
            update={
                "framework": framework.model_copy(update={"command": substitute(command, params)}),
                "env": {**manifest.env, **hp_env},
                "sweep": None,
            }
        )
        trials.append(Trial(index, params, run_manifest, hp_env, json.dumps(params), seed))
    return trials
