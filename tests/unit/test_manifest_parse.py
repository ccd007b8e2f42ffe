"""Manifest parsing: every bad manifest names its line and field; good ones (FfDL's too) pass."""
from __future__ import annotations

from pathlib import Path

import pytest

from backend.errors import BadInput
from backend.manifest import ManifestError, check_manifest, load_manifest, parse_manifest

DATA = Path(__file__).resolve().parents[1] / "data" / "manifests"
SAMPLES = Path(__file__).resolve().parents[2] / "samples"

BASE = """\
name: demo
gpus: 1
cpus: 2
memory: 4GiB
learners: 1
data_stores:
  - id: store
    type: local
    training_data:
      container: dlaas-samples
      prefix: demo/
    training_results:
      container: dlaas-results
framework:
  name: pytorch
  command: python3 train.py
"""

SWEEP = """\
sweep:
  method: grid
  parameters:
    lr:
      values: [0.1, 0.01]
"""


def variant(replace: dict[int, str] | None = None, drop: tuple[int, ...] = (), append: str = "") -> str:
    """BASE with 1-based lines replaced (a value may span lines) or dropped, plus text appended."""
    lines = BASE.splitlines()
    out = []
    for number, line in enumerate(lines, start=1):
        if number in drop:
            continue
        out.append((replace or {}).get(number, line))
    return "\n".join(out) + "\n" + append


def with_sweep(body: str) -> str:
    return variant(append="sweep:\n" + body)


# (id, manifest text, expected text in the problem, expected line)
BAD = [
    ("gpus-negative", variant({2: "gpus: -1"}), "gpus: must be >= 0, got -1", 2),
    ("gpus-word", variant({2: "gpus: two"}), "gpus: expected a whole number, got 'two'", 2),
    ("gpus-decimal", variant({2: "gpus: 1.5"}), "gpus: expected a whole number, got 1.5", 2),
    ("gpus-bool", variant({2: "gpus: yes"}), "gpus: expected a whole number, got true", 2),
    ("learners-zero", variant({5: "learners: 0"}), "learners: must be >= 1, got 0", 5),
    ("cpus-zero", variant({3: "cpus: 0"}), "cpus: must be > 0, got 0", 3),
    ("cpus-word", variant({3: "cpus: lots"}), "cpus: expected a number, got 'lots'", 3),
    ("memory-k8s-unit", variant({4: "memory: 4Gi"}), "unknown memory unit 'Gi' in '4Gi'", 4),
    ("memory-lower-unit", variant({4: "memory: 4gb"}), "unknown memory unit 'gb'", 4),
    ("memory-no-unit", variant({4: "memory: 4096"}), "memory: '4096' has no unit", 4),
    ("memory-word", variant({4: "memory: four GB"}), "cannot read 'four GB' as a size", 4),
    ("memory-zero", variant({4: "memory: 0GB"}), "memory must be more than zero", 4),
    ("no-data-stores", variant(drop=tuple(range(6, 14))), "data_stores: required, but missing", 1),
    ("two-data-stores", variant({13: "      container: dlaas-results\n  - id: other\n    training_data: "
                                     "{container: a}\n    training_results: {container: b}"}),
     "data_stores: exactly one data store is required, found 2", 6),
    ("empty-data-stores", variant({6: "data_stores: []"}, drop=tuple(range(7, 14))),
     "exactly one data store is required, found 0", 6),
    ("store-type", variant({8: "    type: nfs"}),
     "data_stores[0].type: must be one of s3_datastore, mount_cos, local; got 'nfs'", 8),
    ("store-no-container", variant({10: "      bucket: dlaas-samples"}),
     "data_stores[0].training_data.container: required, but missing", 9),
    ("store-bad-container", variant({10: "      container: a/b"}), "'a/b' is not a bucket name", 10),
    ("store-escaping-prefix", variant({11: "      prefix: ../other"}), "must be relative", 11),
    ("no-command", variant(drop=(16,)), "framework.command: required, but missing", 14),
    ("blank-command", variant({16: "  command: '  '"}), "framework.command: command must not be empty", 16),
    ("no-framework", variant(drop=(14, 15, 16)), "framework: required, but missing", 1),
    ("framework-scalar", variant({14: "framework: pytorch"}, drop=(15, 16)),
     "framework: expected a mapping, got 'pytorch'", 14),
    ("no-name", variant(drop=(1,)), "name: required, but missing", 1),
    ("yaml-unclosed-flow", variant({2: "gpus: [1"}), "YAML syntax error", 3),
    ("yaml-bad-indent", variant({15: "  name: pytorch\n    oops: [", 16: " command: x"}), "YAML syntax error", 16),
    ("yaml-two-documents", BASE + "---\nname: again\n", "YAML syntax error: but found another document", 17),
    ("yaml-control-char", variant({15: "  name: py\x07torch"}), "YAML syntax error", 15),
    ("duplicate-key", variant({5: "learners: 1\ngpus: 2"}), "gpus: duplicate key (first at line 2)", 6),
    ("duration-no-unit", variant(append="max_duration: 90\n"), "max_duration: '90' has no unit", 17),
    ("duration-word", variant(append="max_duration: soon\n"), "cannot read 'soon' as a duration", 17),
    ("env-bad-name", variant(append="env:\n  1BAD: x\n"), "env.1BAD: '1BAD' is not an environment", 18),
    ("env-list-value", variant(append="env:\n  A: [1]\n"), "env.A: expected text or {secret: NAME}", 18),
    ("env-secret-number", variant(append="env:\n  A: {secret: 3}\n"), "env.A.secret: expected text, got 3", 18),
    ("priority-empty", variant(append="priority: ''\n"), "priority: priority must not be empty", 17),
    ("evaluation-metrics-scalar", variant(append="evaluation_metrics: 3\n"),
     "evaluation_metrics: expected a mapping, got 3", 17),
    ("sweep-min-over-max", with_sweep("  method: random\n  max_runs: 4\n  parameters:\n    lr:\n"
                                      "      min: 5\n      max: 1\n"),
     "sweep.parameters.lr.min: min (5) is greater than max (1)", 22),
    ("sweep-log-uniform-zero", with_sweep("  method: random\n  max_runs: 4\n  parameters:\n    lr:\n"
                                          "      {min: 0, max: 1, distribution: log_uniform}\n"),
     "log_uniform needs min > 0, got 0", 22),
    ("sweep-int-uniform-decimal", with_sweep("  method: random\n  max_runs: 2\n  parameters:\n"
                                             "    h: {min: 1.5, max: 4, distribution: int_uniform}\n"),
     "int_uniform needs whole numbers, got 1.5", 21),
    ("sweep-method", with_sweep("  method: gird\n  parameters:\n    lr: {values: [1]}\n"),
     "sweep.method: must be one of grid, random; got 'gird', did you mean 'grid'?", 18),
    ("sweep-random-no-max-runs", with_sweep("  method: random\n  parameters:\n    lr: {min: 0.1, max: 1}\n"),
     "a random sweep needs max_runs", 18),
    ("sweep-grid-range", with_sweep("  method: grid\n  parameters:\n    lr: {min: 0.1, max: 1}\n"),
     "sweep.parameters.lr: a grid sweep needs `values`", 20),
    ("sweep-values-and-min", with_sweep("  parameters:\n    lr:\n      values: [1]\n      min: 0\n"),
     "give either `values` or `min`/`max`/`distribution`, not both", 21),
    ("sweep-no-parameters", with_sweep("  method: grid\n  parameters: {}\n"),
     "a sweep needs at least one parameter", 19),
    ("sweep-empty-values", with_sweep("  parameters:\n    lr: {values: []}\n"),
     "values must list at least one value", 19),
    ("sweep-early-stop-no-metric", with_sweep("  parameters:\n    lr: {values: [1]}\n  early_stop:\n"
                                              "    type: median\n"),
     "early_stop needs sweep.metric", 20),
    ("sweep-max-runs-zero", with_sweep("  max_runs: 0\n  parameters:\n    lr: {values: [1]}\n"),
     "sweep.max_runs: must be >= 1, got 0", 18),
    ("sweep-goal", with_sweep("  parameters:\n    lr: {values: [1]}\n  metric: {name: acc, goal: up}\n"),
     "sweep.metric.goal: must be one of minimize, maximize; got 'up'", 20),
    ("sweep-param-name", with_sweep("  parameters:\n    1lr: {values: [1]}\n"),
     "parameter name '1lr' must start with a letter", 19),
    ("empty-file", "", "a manifest is a mapping of keys", 1),
    ("top-level-list", "- name: x\n", "a manifest is a mapping of keys (name, framework, data_stores, ...), got a list", 1),
]


@pytest.mark.parametrize("text, expected, line", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_manifest_reports_message_and_line(text: str, expected: str, line: int) -> None:
    result = parse_manifest(text, "m.yml")
    assert result.manifest is None
    assert not result.ok
    matching = [p for p in result.errors if expected in str(p)]
    assert matching, f"no error containing {expected!r} in {[str(p) for p in result.errors]}"
    assert matching[0].line == line, str(matching[0])
    assert str(matching[0]).startswith(f"m.yml:{line}:{matching[0].col}: ")


def test_there_are_at_least_25_bad_manifests() -> None:
    assert len({b[0] for b in BAD}) == len(BAD) >= 25


def test_every_error_is_reported_at_once_in_line_order() -> None:
    text = variant({2: "gpus: -1", 4: "memory: 4Gi", 5: "learners: 0", 8: "    type: nfs"}, drop=(16,))
    result = parse_manifest(text, "m.yml")
    assert [(p.line, p.field) for p in result.errors] == [
        (2, "gpus"), (4, "memory"), (5, "learners"), (8, "data_stores[0].type"), (14, "framework.command"),
    ]


def test_column_points_at_the_value() -> None:
    (problem,) = parse_manifest(variant({2: "gpus:   two"}), "m.yml").errors
    assert (problem.line, problem.col) == (2, 9)
    assert str(problem) == "m.yml:2:9: gpus: expected a whole number, got 'two'"


def test_yaml_error_has_its_own_line_and_column() -> None:
    (problem,) = parse_manifest("name: x\nframework: {name: a, command: b\ngpus: 1\n", "m.yml").errors
    assert problem.field == ""
    assert problem.message.startswith("YAML syntax error")
    assert problem.line == 3 and problem.col >= 1


@pytest.mark.parametrize("path", sorted((DATA / "good").glob("*.yml")) + sorted(SAMPLES.glob("*/manifest.yml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_good_manifests_validate_without_warnings(path: Path) -> None:
    result = check_manifest(path)
    assert result.ok, [str(p) for p in result.errors]
    assert result.warnings == [], [str(p) for p in result.warnings]
    assert result.manifest is not None and result.manifest.framework.command


def test_ffdl_tensorflow_example_reads_as_ffdl_meant() -> None:
    m = load_manifest(DATA / "good" / "ffdl-tf-convolutional.yml")
    assert m.memory_bytes == 1_000_000_000  # FfDL's Gb is GB
    assert m.memory_kubernetes == "1G"
    assert m.cpus == 0.5 and m.learners == 1 and m.total_gpus == 0
    store = m.data_store
    assert store.type == "mount_cos" and store.is_s3
    assert store.training_data.container == "tf_training_data"  # legacy underscore name kept
    assert "${DATA_DIR}/train-images-idx3-ubyte.gz" in m.framework.command
    assert "\n" not in m.framework.command.strip()  # folded block: one shell line
    assert m.version == "1.0"


def test_ffdl_caffe_unquoted_version_keeps_its_text() -> None:
    m = load_manifest(DATA / "good" / "ffdl-caffe-mnist.yml")
    assert m.version == "1.0" and m.framework.version == "cpu"
    assert m.memory_bytes == 512_000_000


def test_full_manifest_reads_every_key() -> None:
    m = load_manifest(DATA / "good" / "full.yml")
    assert m.total_gpus == 4 and m.gpu_type == "A100"
    assert m.memory_bytes == int(1.5 * 1024**3)
    assert m.max_duration_seconds == 5400
    assert m.priority == "high"
    assert m.env_values({"wandb": "k3y"}) == {"EPOCHS": "10", "RATE": "0.10", "WANDB_API_KEY": "k3y"}
    assert m.sweep is not None and m.sweep.method == "random" and m.sweep.seed == 7
    assert m.sweep.early_stop is not None and m.sweep.early_stop.min_runs == 4
    assert m.data_store.training_data.prefix == "sets/cifar/"


def test_env_secret_missing_from_config_is_bad_input() -> None:
    m = load_manifest(DATA / "good" / "full.yml")
    with pytest.raises(BadInput, match="no secret 'wandb'"):
        m.env_values({})


def test_secrets_never_show_in_repr_or_dump() -> None:
    m = load_manifest(DATA / "good" / "ffdl-tf-gpu-learners.yml")
    assert m.data_store.connection is not None
    assert m.data_store.connection.password.reveal() == "notarealsecret"
    for shown in (repr(m), str(m), str(m.masked_dict()), m.model_dump_json()):
        assert "notarealsecret" not in shown and "AKIAEXAMPLE" not in shown
    assert m.masked_dict()["data_stores"][0]["connection"]["password"] == "****"


def test_load_manifest_raises_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(variant({2: "gpus: two", 5: "learners: 0"}))
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert isinstance(info.value, BadInput) and info.value.exit_code == 2
    assert [p.line for p in info.value.problems] == [2, 5]
    assert str(info.value).splitlines()[0] == f"{path}:2:7: gpus: expected a whole number, got 'two'"


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    missing = check_manifest(tmp_path / "nope.yml")
    assert "cannot read" in str(missing.errors[0])
    binary = tmp_path / "bin.yml"
    binary.write_bytes(b"name: x\n\xff\xfe\n")
    assert str(check_manifest(binary).errors[0]) == f"{binary}:2:1: not UTF-8 text"


def test_oversized_manifest_is_refused() -> None:
    result = parse_manifest("name: x\n" + "#" * (1024 * 1024) + "\n", "big.yml")
    assert "at most 1 MiB" in str(result.errors[0])


# (id, manifest text, expected warning text, expected line)
WARNINGS = [
    ("unknown-top-level", variant(append="gpu: 2\n"), "unknown key 'gpu' at the top level, did you mean 'gpus'?", 17),
    ("resource-in-framework", variant({16: "  command: python3 train.py\n  gpus: 2"}),
     "unknown key 'gpus' in framework, did you mean top-level 'gpus'?", 17),
    ("typo-in-store", variant({11: "      prefx: demo/"}),
     "unknown key 'prefx' in data_stores[0].training_data, did you mean 'prefix'?", 11),
    ("unknown-without-match", variant(append="zzz: 1\n"), "known keys: name, description", 17),
    ("gpu-type-without-gpus", variant({2: "gpus: 0\ngpu_type: V100"}), "has no effect with gpus: 0", 3),
    ("system-env", variant(append="env:\n  DATA_DIR: /tmp\n"), "DATA_DIR is set by the system", 18),
    ("local-with-connection", variant({13: "      container: dlaas-results\n    connection: {auth_url: x}"}),
     "a local data store ignores `connection`", 14),
    ("grid-truncated", with_sweep("  max_runs: 2\n  parameters:\n    a: {values: [1, 2, 3]}\n"),
     "the grid has 3 combinations; only the first 2 run", 18),
    ("random-without-seed", with_sweep("  method: random\n  max_runs: 2\n  parameters:\n    a: {min: 0, max: 1}\n"),
     "without `seed` draws different values", 18),
    ("repeated-values", with_sweep("  parameters:\n    a: {values: [1, 1]}\n"), "values repeat", 19),
    ("command-lines-start-with-dash", variant({16: "  command: >\n    python3 train.py\n      --lr 1"}),
     "sh runs each line as its own command", 16),
]


@pytest.mark.parametrize("text, expected, line", [w[1:] for w in WARNINGS], ids=[w[0] for w in WARNINGS])
def test_warnings_do_not_fail_validation(text: str, expected: str, line: int) -> None:
    result = parse_manifest(text, "m.yml")
    assert result.ok and result.manifest is not None, [str(p) for p in result.errors]
    matching = [p for p in result.warnings if expected in p.message]
    assert matching, [str(p) for p in result.warnings]
    assert matching[0].line == line and matching[0].severity == "warning"
    assert ": warning: " in str(matching[0])


def test_unknown_key_next_to_an_error_is_both_reported() -> None:
    result = parse_manifest(variant({16: "  comand: python3 train.py"}), "m.yml")
    assert [str(p) for p in result.errors] == ["m.yml:14:1: framework.command: required, but missing"]
    assert "did you mean 'command'?" in str(result.warnings[0]) and result.warnings[0].line == 16


def test_live_validation_never_raises_on_partial_text() -> None:
    # What an editor sends while the user types: every prefix of a manifest.
    text = (DATA / "good" / "full.yml").read_text()
    for end in range(0, len(text), 7):
        result = parse_manifest(text[:end], "live.yml")
        assert result.ok == (result.manifest is not None)


def test_alias_bomb_is_refused_before_it_expands() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    result = parse_manifest("\n".join(lines) + "\n" + variant(append="evaluation_metrics: {bomb: *a8}\n"), "b.yml")
    assert [str(p) for p in result.errors] == [
        "b.yml:1:1: the YAML expands to more than 20000 values (through aliases)"]


def test_self_referring_alias_is_refused() -> None:
    result = parse_manifest(variant(append="evaluation_metrics: &m {again: *m}\n"), "c.yml")
    assert [p.message for p in result.errors] == ["an alias refers to itself"]


def test_plain_aliases_still_work() -> None:
    text = variant({10: "      container: &bucket dlaas-samples", 13: "      container: *bucket"})
    result = parse_manifest(text, "a.yml")
    assert result.manifest is not None
    assert result.manifest.data_store.training_results.container == "dlaas-samples"


def test_secret_looking_env_values_warn_and_are_masked() -> None:
    result = parse_manifest(variant(append="env:\n  WANDB_API_KEY: abc123\n  MODE: fast\n"), "e.yml")
    assert result.manifest is not None
    (warning,) = result.warnings
    assert warning.line == 18 and "looks like a secret" in warning.message
    shown = result.manifest.masked_dict()["env"]
    assert shown == {"WANDB_API_KEY": "****", "MODE": "fast"}
    assert result.manifest.env_values() == {"WANDB_API_KEY": "abc123", "MODE": "fast"}


def test_gpu_memory_and_share_parse_with_the_memory_units() -> None:
    result = parse_manifest(BASE + "gpu_memory: 20GiB\nshare: true\n", "m.yml")
    assert result.ok, [str(e) for e in result.errors]
    assert result.manifest.gpu_memory_bytes == 20 * 2**30 and result.manifest.share is True
    assert parse_manifest(BASE, "m.yml").manifest.gpu_memory_bytes is None


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        (variant({2: "gpus: 0"}, append="gpu_memory: 20GiB\n"), (17, 13), "needs gpus: 1 or more"),
        (BASE + "share: true\n", (17, 8), "sharing a GPU needs gpu_memory"),
        (BASE + "gpu_memory: 20Gx\n", (17, 13), "unknown memory unit 'Gx'"),
        (BASE + "gpu_memory: 20\n", (17, 13), "has no unit"),
        (BASE + "gpu_memory: 20GiB\nshare: 1\n", (18, 8), "share"),
    ],
)
def test_gpu_sharing_mistakes_are_named_at_file_line_col(text: str, where: tuple[int, int], words: str) -> None:
    result = parse_manifest(text, "m.yml")
    assert not result.ok
    problem = result.errors[0]
    assert (problem.line, problem.col) == where, str(problem)
    assert str(problem).startswith(f"m.yml:{where[0]}:{where[1]}: ") and words in str(problem)
