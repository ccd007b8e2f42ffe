"""The real `python -m dlaas_tui` in tmux on the local engine: the sample, submitted from the
editor (`n`, `ctrl+r`), reaches COMPLETED in the live table, and `l` opens its log. Keys go in with
send-keys; the screen comes back with capture-pane, exactly what a user over SSH would see."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from contextlib import nullcontext
from pathlib import Path

import pytest

from .local_helpers import WAIT_S, busy_cpus, stop_everything, wait_for

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

    def wait_for(self, predicate, what: str, timeout: float = WAIT_S) -> str:
        """The screen once `predicate` holds for it; the bound is generous (a loaded machine paints
        late), and the screen is looked at once more after it, however long the last capture took."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not on screen after {timeout:.0f} s; screen was:\n{text}")
            time.sleep(0.25)

    def kill(self) -> None:
        socket = subprocess.run([*self.base, "display-message", "-p", "#{socket_path}"],
                                capture_output=True, text=True).stdout.strip()
        subprocess.run([*self.base, "kill-server"], capture_output=True)
        if socket and Path(socket).name == self.name:
            Path(socket).unlink(missing_ok=True)


def prompt_field(screen: str) -> str:
    """The lines of the save prompt below its question (its input field), or "" when not shown."""
    lines = screen.splitlines()
    at = next((i for i, line in enumerate(lines) if "Save manifest as" in line), None)
    return "" if at is None else "\n".join(lines[at + 1:at + 4])


def _recorded_ids(cli) -> list[str]:
    res = cli("runs", "--json")
    return [r["id"] for r in json.loads(res.stdout)] if res.returncode == 0 else []


@pytest.fixture
def tmux(dlaas_home: Path):
    reason = _local_engine_missing()
    if reason:
        pytest.skip(reason)
    session = Tmux(f"dlaas-e2e-{uuid.uuid4().hex[:8]}")
    yield session
    session.kill()
    stop_everything(dlaas_home)


@pytest.mark.parametrize("loaded", [False, True], ids=["idle", "cpus-saturated"])
def test_sample_reaches_completed_in_the_table_and_its_log_opens(tmux, dlaas_home, cli, loaded):
    # Fault injection: the same walk with a busy loop on every CPU. Every wait follows what the screen
    # shows, so a loaded machine makes it slower, not red.
    with busy_cpus() if loaded else nullcontext():
        _walk(tmux, dlaas_home, cli)


def _walk(tmux: Tmux, dlaas_home: Path, cli) -> None:
    env = {"DLAAS_HOME": str(dlaas_home), "PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
    tmux.start(f"{sys.executable} -m dlaas_tui", env)
    tmux.wait_for(lambda s: "No runs yet" in s, "the empty runs table")

    # New manifest (the editor opens on the digits sample), submit, confirm, save it somewhere.
    # `n` is offered once the profile is read (it is refused on read-only profiles).
    tmux.wait_for(lambda s: "New run" in s, "the New run key")
    tmux.keys("n")
    tmux.wait_for(lambda s: "valid" in s and "name: pytorch-digits" in s, "the editor on the sample")
    tmux.keys("C-r")
    tmux.wait_for(lambda s: "Submit this manifest?" in s, "the submit confirmation")
    tmux.keys("y")
    # Each key goes in once the screen shows the one before it took effect: on a loaded machine keys
    # sent before the prompt has its field would land elsewhere.
    default = "manifest.yml"
    tmux.wait_for(lambda s: default in prompt_field(s), "the save prompt with its default path")
    saved = dlaas_home / "work" / "manifest.yml"
    saved.parent.mkdir()
    tmux.keys("C-u")
    tmux.wait_for(lambda s: "Save manifest as" in s and default not in prompt_field(s), "the cleared prompt")
    tmux.keys("-l", str(saved))
    tmux.wait_for(lambda s: str(saved)[-24:] in prompt_field(s), "the typed path in the prompt")
    tmux.keys("Enter")
    # The run is recorded (the event), whether or not the short-lived notice was captured in time.
    seen: list[str] = []

    def recorded(screen: str) -> bool:
        if "submitted 1 run: training-" in screen:
            seen.append(screen)
        return bool(seen) or bool(_recorded_ids(cli))

    tmux.wait_for(recorded, "the submitted run")
    run_id = wait_for(lambda: _recorded_ids(cli))[0]
    if seen:
        assert f"submitted 1 run: {run_id}" in seen[0]
    assert saved.is_file()
    tmux.keys("Escape")

    def row(screen: str) -> str:
        return next((line for line in screen.splitlines() if run_id in line), "")

    tmux.wait_for(lambda s: run_id in s, f"run {run_id}")
    tmux.wait_for(lambda s: "COMPLETED" in row(s), f"{run_id} COMPLETED", timeout=3 * WAIT_S)
    screen = tmux.screen()
    assert "FAILED" not in row(screen)

    tmux.keys("l")
    # One predicate for the whole view: the log lines and its status line may paint in either order.
    log = tmux.wait_for(lambda s: "epoch=20" in s and "loss=" in s and "follow" in s,
                        "the end of the run's log with its status line")
    assert len(log.splitlines()) >= 40  # the 120x40 window, not a default 80x24
    tmux.keys("escape")
    tmux.wait_for(lambda s: "COMPLETED" in row(s), "the runs table again")
    tmux.keys("q")
