"""Sweep expansion: grid order and cap, reproducible random draws, and how a run gets its parameters."""
from __future__ import annotations

import json
import math
import shlex

import pytest

from backend.manifest import parse_manifest
from backend.manifest.sweep import expand, hp_env_name, substitute

HEAD = """\
name: sweep-test
data_stores:
  - training_data: {container: d}
    training_results: {container: r}
framework:
  name: pytorch
  command: python3 train.py --lr ${lr} --hidden ${hidden} --data ${DATA_DIR} --undeclared ${other}
env:
  KEEP: "yes"
sweep:
"""


def manifest(sweep: str):
    result = parse_manifest(HEAD + sweep, "s.yml")
    assert result.manifest is not None, [str(p) for p in result.errors]
    return result.manifest


def test_grid_is_every_combination_in_declared_order() -> None:
    m = manifest("  parameters:\n    lr: {values: [0.1, 0.01]}\n    hidden: {values: [16, 32, 64]}\n")
    trials = expand(m)
    assert [t.params for t in trials] == [
        {"lr": lr, "hidden": h} for lr in (0.1, 0.01) for h in (16, 32, 64)
    ]
    assert [t.index for t in trials] == list(range(6))
    assert m.sweep is not None and m.sweep.run_count() == 6


def test_grid_is_capped_at_max_runs() -> None:
    m = manifest("  max_runs: 4\n  parameters:\n    lr: {values: [1, 2, 3]}\n    hidden: {values: [1, 2]}\n")
    assert [t.params for t in expand(m)] == [
        {"lr": 1, "hidden": 1}, {"lr": 1, "hidden": 2}, {"lr": 2, "hidden": 1}, {"lr": 2, "hidden": 2},
    ]


def test_grid_int_uniform_enumerates_the_range() -> None:
    m = manifest("  parameters:\n    lr: {values: [1]}\n    hidden: {min: 3, max: 5, distribution: int_uniform}\n")
    assert [t.params["hidden"] for t in expand(m)] == [3, 4, 5]


RANDOM = """\
  method: random
  max_runs: 50
  seed: {seed}
  parameters:
    lr: {{min: 0.0001, max: 0.1, distribution: log_uniform}}
    hidden: {{min: 8, max: 256, distribution: int_uniform}}
    dropout: {{min: 0.0, max: 0.5}}
    opt: {{values: [adam, sgd]}}
"""


def test_random_draws_are_reproducible_from_the_seed() -> None:
    first = [t.params for t in expand(manifest(RANDOM.format(seed=11)))]
    again = [t.params for t in expand(manifest(RANDOM.format(seed=11)))]
    other = [t.params for t in expand(manifest(RANDOM.format(seed=12)))]
    assert len(first) == 50
    assert first == again
    assert first != other


def test_random_draws_respect_each_distribution() -> None:
    trials = expand(manifest(RANDOM.format(seed=3)))
    for t in trials:
        assert 0.0001 <= t.params["lr"] <= 0.1
        assert isinstance(t.params["hidden"], int) and 8 <= t.params["hidden"] <= 256
        assert 0.0 <= t.params["dropout"] <= 0.5
        assert t.params["opt"] in ("adam", "sgd")
        assert t.seed == 3
    logs = [math.log10(t.params["lr"]) for t in trials]
    # log_uniform spreads over the decades: some draws below 1e-3, some above 1e-2.
    assert min(logs) < -3 and max(logs) > -2
    assert len({t.params["hidden"] for t in trials}) > 10


def test_random_without_seed_records_the_seed_it_drew() -> None:
    text = RANDOM.replace("  seed: {seed}\n", "").replace("{{", "{").replace("}}", "}")
    result = parse_manifest(HEAD + text, "s.yml")
    assert result.manifest is not None
    trials = expand(result.manifest)
    assert isinstance(trials[0].seed, int)
    again = expand(manifest(RANDOM.format(seed=trials[0].seed)))
    assert [t.params for t in again] == [t.params for t in trials]


def test_each_trial_carries_its_parameters_three_ways() -> None:
    m = manifest("  parameters:\n    lr: {values: [0.001]}\n    hidden: {values: [\"64 units; rm -rf /\"]}\n")
    (trial,) = expand(m)
    command = trial.manifest.framework.command
    # Declared names are substituted and shell-quoted; ${DATA_DIR} and undeclared ones are left for sh.
    assert command == (
        "python3 train.py --lr 0.001 --hidden '64 units; rm -rf /' --data ${DATA_DIR} --undeclared ${other}"
    )
    assert shlex.split(command)[5] == "64 units; rm -rf /"
    assert trial.env == {"HP_LR": "0.001", "HP_HIDDEN": "64 units; rm -rf /"}
    assert trial.manifest.env == {"KEEP": "yes", "HP_LR": "0.001", "HP_HIDDEN": "64 units; rm -rf /"}
    assert json.loads(trial.config_json) == {"lr": 0.001, "hidden": "64 units; rm -rf /"}
    assert trial.manifest.sweep is None
    # The original manifest is untouched.
    assert "${lr}" in m.framework.command and m.sweep is not None and "HP_LR" not in m.env


@pytest.mark.parametrize("name, env", [("lr", "HP_LR"), ("learning-rate", "HP_LEARNING_RATE"),
                                       ("opt.beta1", "HP_OPT_BETA1"), ("_x", "HP__X")])
def test_hp_env_names(name: str, env: str) -> None:
    assert hp_env_name(name) == env


def test_substitute_writes_booleans_as_yaml_does() -> None:
    assert substitute("run --flag ${f} ${g}", {"f": True, "g": False}) == "run --flag true false"


def test_manifest_without_sweep_is_one_trial() -> None:
    result = parse_manifest(HEAD.replace("sweep:\n", ""), "s.yml")
    assert result.manifest is not None
    (trial,) = expand(result.manifest)
    assert trial.params == {} and trial.manifest is result.manifest and trial.config_json == "{}"


def test_ten_thousand_trials_from_a_100_by_100_grid() -> None:
    values = ", ".join(str(i) for i in range(100))
    m = manifest(f"  parameters:\n    lr: {{values: [{values}]}}\n    hidden: {{values: [{values}]}}\n")
    trials = expand(m)
    assert len(trials) == 10_000
    assert trials[-1].params == {"lr": 99, "hidden": 99}
    assert trials[-1].manifest.framework.command.startswith("python3 train.py --lr 99 --hidden 99 ")
    assert len({t.manifest.framework.command for t in trials}) == 10_000
