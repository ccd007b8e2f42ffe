"""Test-wide fixtures: every test gets its own DLAAS_HOME; subprocesses import this checkout."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# One definition of the session-wide real S3 server fixture (`s3_server`) for every test module;
# a module that imports the fixture itself gets a server of its own.
pytest_plugins = ["tests.fixtures.s3server"]

# Subprocesses (the CLI, the agent) must import this checkout, not another copy of the package.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
)
os.environ.pop("DLAAS_PROFILE", None)


@pytest.fixture(autouse=True)
def dlaas_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh DLAAS_HOME for every test: config, state and the local store live under it."""
    home = tmp_path_factory.mktemp("dlaas-home")
    monkeypatch.setenv("DLAAS_HOME", str(home))
    monkeypatch.delenv("DLAAS_PROFILE", raising=False)
    return home


@pytest.fixture
def cli(dlaas_home: Path):
    """Run `dlaas-tui ARGS` in a subprocess with this checkout and the test's DLAAS_HOME."""
    import subprocess

    def run(*args: str, input: str | None = None, timeout: float = 120, env: dict | None = None):
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "dlaas_tui", *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            env=full_env,
            cwd=str(REPO),
        )

    return run
