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


# The suites that read dates and times: `make test` runs them again with the whole program's clock
# shifted 400 days ahead and behind (DLAAS_CLOCK_SHIFT), so a test pinned to a date cannot land.
CLOCK_SUITES = {
    "tests/unit/test_cost.py", "tests/unit/test_experiments.py", "tests/unit/test_k8s_states.py",
    "tests/unit/test_sweeps_policy.py", "tests/unit/test_local_db.py", "tests/unit/test_fake_engine.py",
    "tests/unit/test_local_scheduler.py", "tests/functional/test_k8s_kmock.py",
    "tests/functional/test_k8s_agent.py", "tests/functional/test_budget_kubernetes.py",
    "tests/contract/test_engine_contract.py",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.fspath).resolve().relative_to(REPO).as_posix() in CLOCK_SUITES:
            item.add_marker(pytest.mark.clock)


def pytest_report_header(config: pytest.Config) -> str | None:
    from backend import clock

    shift = clock.shift().total_seconds()
    return f"dlaas clock shifted by {shift / 86400:+.0f} days ({clock.SHIFT_ENV})" if abs(shift) > 1 else None
