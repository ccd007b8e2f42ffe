"""The real `python -m dlaas_tui` in tmux on the local engine: a submitted sample reaches COMPLETED
in the live table, and `l` opens its log. Keys go in with send-keys; the screen comes back with
capture-pane, exactly what a user over SSH would see."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .local_helpers import stop_everything

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "pytorch-digits" / "manifest.yml"


def _local_engine_missing() -> str | None:
    if shutil.which("tmux") is None:
        return "tmux is not installed"
    try:
        import backend.engines.local.engine  # noqa: F401
    except ImportError:
        return "the local engine (branch `local`) is not in this checkout yet"
    if not SAMPLE.is_file():
        return "samples/pytorch-digits is not in this checkout"
    return None


class Tmux:
    """One session on a tmux server of its own (`-L`), so nobody else's tmux is touched."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.base = ["tmux", "-L", name, "-f", "/dev/null"]

    def start(self, command: str, env: dict[str, str], width: int = 120, height: int = 40) -> None:
        args = [*self.base, "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height)]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        subprocess.run([*args, command], check=True, cwd=str(REPO))

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", self.name, *keys], check=True)

    def screen(self) -> str:
        out = subprocess.run([*self.base, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return out.stdout

    def wait_for(self, predicate, timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.25)
        raise AssertionError(f"{what} not on screen after {timeout:.0f} s; screen was:\n{text}")

    def kill(self) -> None:
        socket = subprocess.run([*self.base, "display-message", "-p", "#{socket_path}"],
                                capture_output=True, text=True).stdout.strip()
        subprocess.run([*self.base, "kill-server"], capture_output=True)
        if socket and Path(socket).name == self.name:
            Path(socket).unlink(missing_ok=True)


@pytest.fixture
def tmux(dlaas_home: Path):
    reason = _local_engine_missing()
    if reason:
        pytest.skip(reason)
    session = Tmux(f"dlaas-e2e-{uuid.uuid4().hex[:8]}")
    yield session
    session.kill()
    stop_everything(dlaas_home)


def test_sample_reaches_completed_in_the_table_and_its_log_opens(tmux, dlaas_home, cli):
    env = {"DLAAS_HOME": str(dlaas_home), "PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
    tmux.start(f"{sys.executable} -m dlaas_tui", env)
    tmux.wait_for(lambda s: "No runs yet" in s, 60, "the empty runs table")

    res = cli("submit", str(SAMPLE), "--json")
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)[0]["id"]

    def row(screen: str) -> str:
        return next((line for line in screen.splitlines() if run_id in line), "")

    tmux.wait_for(lambda s: run_id in s, 30, f"run {run_id}")
    tmux.wait_for(lambda s: "COMPLETED" in row(s), 300, f"{run_id} COMPLETED")
    screen = tmux.screen()
    assert "FAILED" not in row(screen)

    tmux.keys("l")
    log = tmux.wait_for(lambda s: "epoch=20" in s, 30, "the end of the run's log")
    assert len(log.splitlines()) >= 40  # the 120x40 window, not a default 80x24
    assert "loss=" in log and "follow" in log
    tmux.keys("escape")
    tmux.wait_for(lambda s: "COMPLETED" in row(s), 10, "the runs table again")
    tmux.keys("q")
