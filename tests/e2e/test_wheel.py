"""The built wheel installs into a clean venv and works there, samples and themes included."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Build from a copy so that build/ and *.egg-info never land in the checkout (tests run in parallel).
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "tests"))
    proc = run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check",
                "--outdir", str(work / "dist"), str(src)], cwd=str(work))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (built,) = (work / "dist").glob("dlaas_tui-*.whl")
    return built


def test_wheel_ships_samples_and_themes(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for sample in ("pytorch-digits", "pytorch-sweep", "pytorch-ddp"):
        assert f"dlaas_tui/samples/{sample}/manifest.yml" in names
        assert f"dlaas_tui/samples/{sample}/model/train.py" in names
    assert "dlaas_tui/samples/pytorch-digits/data/digits.csv.gz" in names
    themes = sorted(p.name for p in (REPO / "themes").glob("*.yaml")) if (REPO / "themes").is_dir() else []
    for theme in themes:
        assert f"dlaas_tui/themes/{theme}" in names
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]


def test_wheel_states_its_license_as_an_spdx_expression(wheel: Path) -> None:
    # The table form (`license = {text = ...}`) is deprecated by setuptools and stops building in 2027.
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        text = zf.read(meta).decode()
    assert "License-Expression: Apache-2.0" in text.splitlines()


def test_installed_wheel_runs_help_and_validates_its_bundled_sample(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    proc = run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert proc.returncode == 0, proc.stderr
    python = venv / "bin" / "python"
    # The checkout is kept off the path: with it there, pip would see the editable install's
    # metadata in the checkout and skip the wheel as "already satisfied".
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    proc = run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                str(wheel)], env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "Successfully installed" in proc.stdout, proc.stdout
    # Dependencies come from the shared venv's site-packages, and the venv is entered from
    # elsewhere, so only the installed copy of the app can be imported.
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]
    where = run([str(python), "-c", "import dlaas_tui, backend.paths as p; print(dlaas_tui.__file__); "
                 "print(p.resource_dir('samples'))"], env=env, cwd=str(tmp_path))
    assert where.returncode == 0, where.stderr
    package_file, samples = where.stdout.split()
    assert package_file.startswith(str(venv)) and samples.startswith(str(venv))

    script = venv / "bin" / "dlaas-tui"
    helped = run([str(script), "--help"], env=env, cwd=str(tmp_path))
    assert helped.returncode == 0, helped.stderr
    assert "manifest" in helped.stdout and "usage: dlaas-tui" in helped.stdout

    manifest = Path(samples) / "pytorch-digits" / "manifest.yml"
    checked = run([str(script), "manifest", "validate", str(manifest)], env=env, cwd=str(tmp_path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{manifest}: ok: pytorch-digits" in checked.stdout
    assert (Path(samples) / "pytorch-digits" / "data" / "digits.csv.gz").is_file()
