"""`dlaas-tui manifest validate|schema|convert` as a user runs them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

# Each test runs the CLI in a subprocess: a second or more each (make test-fast leaves them out).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
GOOD = REPO / "tests" / "data" / "manifests" / "good"
SAMPLE = REPO / "samples" / "pytorch-digits" / "manifest.yml"


def no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yml"
    path.write_text(SAMPLE.read_text().replace("gpus: 0", "gpus: two").replace("memory: 1GiB", "memory: 1Gi"))
    return path


def test_validate_good_files(cli) -> None:
    proc = cli("manifest", "validate", str(SAMPLE), str(GOOD / "ffdl-tf-convolutional.yml"))
    assert proc.returncode == 0, proc.stderr
    assert f"{SAMPLE}: ok: pytorch-digits: 1 learner x 0 GPUs, 1 CPU, 1GiB" in proc.stdout
    assert "ffdl-tf-convolutional.yml: ok" in proc.stdout


def test_validate_bad_file_lists_every_error_and_exits_2(cli, bad_file: Path) -> None:
    proc = cli("manifest", "validate", str(SAMPLE), str(bad_file))
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0] == f"{bad_file}:6:7: gpus: expected a whole number, got 'two'"
    assert lines[1].startswith(f"{bad_file}:8:9: memory: unknown memory unit 'Gi'")
    assert lines[2] == f"{bad_file}: invalid (2 errors)"
    no_traceback(proc)


def test_validate_warnings_print_but_exit_0(cli, tmp_path: Path) -> None:
    path = tmp_path / "warn.yml"
    path.write_text(SAMPLE.read_text() + "gpu: 1\n")
    proc = cli("manifest", "validate", str(path))
    assert proc.returncode == 0
    assert f"{path}:25:1: warning: gpu: unknown key 'gpu' at the top level, did you mean 'gpus'?" in proc.stdout


def test_validate_json(cli, bad_file: Path) -> None:
    proc = cli("manifest", "validate", "--json", str(GOOD / "full.yml"), str(bad_file))
    assert proc.returncode == 2
    good, bad = json.loads(proc.stdout)
    assert good["valid"] is True and good["errors"] == []
    assert good["manifest"]["_derived"] == {
        "memory_bytes": 1610612736, "memory_kubernetes": "1610612736", "total_gpus": 4,
        "max_duration_seconds": 5400, "runs": 20,
    }
    assert good["manifest"]["data_stores"][0]["connection"]["password"] == "****"
    assert "s3cr3t-value" not in proc.stdout and "AKIDEXAMPLE" not in proc.stdout
    assert bad["valid"] is False and bad["manifest"] is None
    assert {(e["line"], e["col"], e["field"], e["severity"]) for e in bad["errors"]} == {
        (6, 7, "gpus", "error"), (8, 9, "memory", "error"),
    }


def test_validate_missing_file(cli, tmp_path: Path) -> None:
    proc = cli("manifest", "validate", str(tmp_path / "nope.yml"))
    assert proc.returncode == 2
    assert f"{tmp_path / 'nope.yml'}:1:1: cannot read" in proc.stderr
    no_traceback(proc)


def test_validate_shows_control_characters_as_text(cli, tmp_path: Path) -> None:
    path = tmp_path / "esc.yml"
    path.write_text(SAMPLE.read_text().replace("name: pytorch-digits", 'name: "x\\e[31mred"'))
    proc = cli("manifest", "validate", str(path))
    assert proc.returncode == 0
    assert "\x1b" not in proc.stdout and "x\\x1b[31mred" in proc.stdout


def test_schema_command(cli) -> None:
    proc = cli("manifest", "schema")
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    assert schema["title"] == "dlaas-tui manifest" and "sweep" in schema["properties"]


def test_convert_to_wml_masks_secrets(cli) -> None:
    proc = cli("manifest", "convert", str(GOOD / "full.yml"), "--to", "wml")
    assert proc.returncode == 0, proc.stderr
    assert "model_definition:" in proc.stdout and "name: a100x2" in proc.stdout
    assert "s3cr3t-value" not in proc.stdout + proc.stderr and "'****'" in proc.stdout
    assert "note: sweep has no place in WML's training definition; dropped" in proc.stderr


def test_convert_to_ffdl(cli) -> None:
    proc = cli("manifest", "convert", str(GOOD / "ffdl-caffe-mnist.yml"), "--to", "ffdl")
    assert proc.returncode == 0
    assert proc.stdout.startswith("name: caffe_mnist_lenet\n") and proc.stderr == ""


def test_convert_bad_manifest_exits_2_with_locations(cli, bad_file: Path) -> None:
    proc = cli("manifest", "convert", str(bad_file), "--to", "wml")
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"{bad_file}:6:7: gpus" in proc.stderr and f"{bad_file}:8:9: memory" in proc.stderr
    no_traceback(proc)


def test_convert_unknown_dialect_is_a_usage_error(cli) -> None:
    proc = cli("manifest", "convert", str(SAMPLE), "--to", "k8s")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


HEAVY = ("boto3", "botocore", "kubernetes", "torch", "textual", "pynvml", "sqlite3")
PROBE = """
import sys
from dlaas_tui.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))
print('HEAVY=' + ','.join(heavy))
"""


@pytest.mark.parametrize("argv", [["--help"], ["manifest", "validate", str(SAMPLE)], ["manifest", "schema"]],
                         ids=["help", "validate", "schema"])
def test_fast_paths_import_nothing_heavy(argv: list[str], dlaas_home: Path) -> None:
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
                          capture_output=True, text=True, cwd=str(REPO), env=dict(os.environ), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stdout, proc.stdout[-500:]
