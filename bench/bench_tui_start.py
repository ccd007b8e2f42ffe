"""Start to first frame: `dlaas-tui` next to a bare Textual app, in a pty and in-process.

From outside, in a pty (issue 11): 10,000 runs in the local engine's ledger, the time from spawning
`python -m dlaas_tui` to the first frame that shows a run row (a run's name appears in what the
terminal receives), next to the time a Textual hello-world takes to show its text, measured the
same way in the same run. Target: <= 1.3x the hello-world + 0.2 s. The agent is started first (as
it would be running already) and stopped by pid at the end.

In-process, target (issue 4): <= 1.3x a Textual hello-world, both measured here, in the same run,
as whole processes, headless, best of N, on the same 10,000-run ledger. "First frame" is the moment the first refresh has been done (the
process stamps the clock in a `call_after_refresh` from its first `on_mount`). Also shown, with no
target: when the runs feed first filled the table (dlaas-tui reads its config and engine after the
first frame), and the whole process to its end (dlaas-tui leaves once the table is filled, the
hello-world after its first frame).

Bytecode is written and one untimed run of each made first, as an installed app would have its
.pyc files (a shell with PYTHONDONTWRITEBYTECODE=1 would otherwise recompile our modules each run).

    python bench/bench_tui_start.py [--runs N] [--baseline OTHER_CHECKOUT] [--ledger-runs N]

`--baseline` times a second checkout (e.g. an export of main) in the same run, for before/after.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.3
PTY_TARGET_RATIO, PTY_TARGET_SLACK = 1.3, 0.2
PTY_SIZE = (120, 40)

STAMP = "import os, time\ndef _stamp(what='FIRST_FRAME'):\n    os.write(2, f'{what} {time.time():.6f}\\n'.encode())\n"

PTY_HELLO = r"""
from textual.app import App
from textual.widgets import Static
class Hello(App):
    def compose(self):
        yield Static("hello-world-shown")
Hello().run()
"""

HELLO = STAMP + r"""
from textual.app import App
from textual.widgets import Static
class Hello(App):
    def compose(self):
        yield Static("hello")
    def on_mount(self):
        self.call_after_refresh(lambda: (_stamp(), self.exit()))
Hello().run(headless=True)
"""

# The real entry point (`python -m dlaas_tui` with no command): it stamps its first frame, then its
# first filled table, and leaves. Classes are patched as their modules are imported, so everything
# runs in the program's own order.
DLAAS = STAMP + r"""
import functools, importlib.util, sys

def patch_app(module):
    from textual.app import App
    cls = module.DlaasApp
    mounted = cls.on_mount
    def on_mount(self):
        mounted(self)
        self.call_after_refresh(_stamp)
    cls.on_mount = on_mount
    cls.run = functools.partialmethod(App.run, headless=True)

def patch_runs(module):
    cls = module.RunsScreen
    def patched(apply, need_rows):
        def _apply(self, *args):
            apply(self, *args)
            if (self.query_one("RunTable").row_count or not need_rows) and not getattr(cls, "stamped", False):
                cls.stamped = True
                self.app.call_after_refresh(_stamp, "FIRST_DATA")  # once the rows are drawn
                self.app.call_after_refresh(self.app.exit)
        return _apply
    cls._apply = patched(cls._apply, False)
    if hasattr(cls, "_apply_page"):  # the first screenful, shown before all runs are read
        cls._apply_page = patched(cls._apply_page, True)
        cls.restart_feed = patched(cls.restart_feed, True)  # ... or read with the backend

PATCHES = {"dlaas_tui.app": patch_app, "dlaas_tui.screens.runs": patch_runs}

class PatchOnImport:
    def find_spec(self, name, path=None, target=None):
        patch = PATCHES.pop(name, None)
        if patch is None:
            return None
        if not PATCHES:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module
        def exec_module(module):
            run_module(module)
            patch(module)
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, PatchOnImport())
from dlaas_tui.cli import main
sys.exit(main([]))
"""


def once(code: str, env: dict[str, str], cwd: Path) -> dict[str, float]:
    """Seconds from start to each stamp the process wrote, and to its exit ("exit")."""
    started = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(cwd)}, cwd=str(cwd),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {proc.stderr.decode()[-800:]}")
    stamps = {}
    for line in proc.stderr.decode().splitlines():
        what, _, when = line.partition(" ")
        if what in ("FIRST_FRAME", "FIRST_DATA"):
            stamps.setdefault(what, float(when) - started)
    if "FIRST_FRAME" not in stamps:
        raise SystemExit(f"no first frame reported: {proc.stderr.decode()[-800:]}")
    return {**stamps, "exit": elapsed}


_ESCAPES = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[@-Z\\-_])")


def pty_until(argv: list[str], env: dict[str, str], cwd: Path, needle: re.Pattern[bytes],
              timeout: float = 60.0) -> float:
    """Seconds from spawning `argv` in a pty until `needle` shows in what it draws (escapes left out)."""
    master, slave = pty.openpty()
    cols, rows = PTY_SIZE
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env={**env, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)},
                            cwd=str(cwd), stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    seen = b""
    try:
        while True:
            left = timeout - (time.perf_counter() - t0)
            if left <= 0:
                raise SystemExit(f"{argv[-1][:40]!r}: nothing matching {needle.pattern!r} in {timeout:.0f} s: "
                                 f"{_ESCAPES.sub(b'', seen)[-600:]!r}")
            ready, _, _ = select.select([master], [], [], min(left, 0.5))
            if not ready:
                continue
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                raise SystemExit(f"exited before showing {needle.pattern!r}: {_ESCAPES.sub(b'', seen)[-600:]!r}")
            seen += chunk
            if needle.search(_ESCAPES.sub(b"", seen)):
                return time.perf_counter() - t0
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)


def fill_ledger(home: Path, n: int) -> None:
    """`n` runs in the local engine's ledger: 90 % finished, the rest queued for more GPUs than exist."""
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "bench"))
    from bench_local_engine import fill

    from backend.ledger import db

    conn = db.connect(home / "state" / "state.db")
    queued = max(1, n // 10)
    fill(conn, n - queued, "COMPLETED", prio_spread=False)
    fill(conn, queued, "QUEUED", gpus=64)  # never fits: the agent stays idle
    conn.close()


def start_ledger_home(ledger_runs: int) -> tuple[Path, dict[str, str], int | None]:
    """A DLAAS_HOME with `ledger_runs` runs and its agent running (as a user's would be)."""
    home = Path(tempfile.mkdtemp(prefix="bench-start-"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "DLAAS_PROFILE")}
    env["DLAAS_HOME"] = str(home)
    fill_ledger(home, ledger_runs)
    started = subprocess.run([sys.executable, "-m", "dlaas_tui", "agent", "start"], cwd=str(REPO),
                             env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    if started.returncode != 0:
        raise SystemExit(f"agent start failed: {started.stderr[-400:]}")
    sys.path.insert(0, str(REPO))
    from backend.agentlink.control import agent_pid

    return home, env, agent_pid(home / "state")


def bench_pty(runs: int, ledger_runs: int, env: dict[str, str], trees: dict[str, Path]) -> None:
    jobs = {"hello": ([sys.executable, "-c", PTY_HELLO], REPO, re.compile(rb"hello-world-shown"))}
    for name, tree in trees.items():
        jobs[name] = ([sys.executable, "-m", "dlaas_tui"], tree, re.compile(rb"bench-\d+"))
    best = {name: float("inf") for name in jobs}
    for argv, cwd, needle in jobs.values():  # bytecode written, disk cache warm
        pty_until(argv, {**env, "PYTHONPATH": str(cwd)}, cwd, needle)
    for _ in range(runs):  # interleaved, best of N each: a busy shared machine slows all alike
        for name, (argv, cwd, needle) in jobs.items():
            took = pty_until(argv, {**env, "PYTHONPATH": str(cwd)}, cwd, needle)
            best[name] = min(best[name], took)
    hello = best.pop("hello")
    target = PTY_TARGET_RATIO * hello + PTY_TARGET_SLACK
    for name, took in best.items():
        print(f"pty, {ledger_runs:,} runs, start to first run row: {name} {took * 1000:.0f} ms   anchor Textual "
              f"hello-world (pty, to its text) {hello * 1000:.0f} ms   target <= 1.3x + 0.2 s = {target * 1000:.0f} ms"
              f"   {'OK' if took <= target else 'MISSED'}", flush=True)


def bench_in_process(runs: int, env: dict[str, str], trees: dict[str, Path]) -> None:
    jobs = {"hello": (HELLO, REPO), **{name: (DLAAS, tree) for name, tree in trees.items()}}
    for code, cwd in jobs.values():
        once(code, env, cwd)  # writes bytecode, warms the disk cache
    best: dict[str, dict[str, float]] = {name: {} for name in jobs}
    for _ in range(runs):
        for name, (code, cwd) in jobs.items():
            for what, took in once(code, env, cwd).items():
                best[name][what] = min(best[name].get(what, float("inf")), took)
    hello = best.pop("hello")
    for name, times in best.items():
        ratio = times["FIRST_FRAME"] / hello["FIRST_FRAME"]
        print(f"start to first frame: {name} {times['FIRST_FRAME'] * 1000:.0f} ms   anchor Textual hello-world "
              f"{hello['FIRST_FRAME'] * 1000:.0f} ms   ratio {ratio:.2f}x   target <= {TARGET_RATIO}x   "
              f"{'OK' if ratio <= TARGET_RATIO else 'MISSED'}")
        if "FIRST_DATA" in times:
            print(f"start to runs shown:  {name} {times['FIRST_DATA'] * 1000:.0f} ms   (in-process stamp, no target)")
        print(f"start to exit:        {name} {times['exit'] * 1000:.0f} ms   anchor Textual hello-world "
              f"{hello['exit'] * 1000:.0f} ms   (no target; dlaas-tui leaves once runs are shown)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--baseline", type=Path, help="another checkout to time in the same run")
    parser.add_argument("--ledger-runs", type=int, default=10_000, help="runs in the local engine's ledger")
    parser.add_argument("--pty-only", action="store_true", help="only the pty figure")
    args = parser.parse_args()
    trees = {"dlaas-tui": REPO}
    if args.baseline is not None:
        trees[f"baseline {args.baseline}"] = args.baseline.resolve()
    home, env, agent = start_ledger_home(args.ledger_runs)
    try:
        bench_pty(args.runs, args.ledger_runs, env, trees)
        if not args.pty_only:
            bench_in_process(args.runs, env, trees)
    finally:
        if agent and agent > 0:
            try:
                os.kill(agent, signal.SIGTERM)
            except ProcessLookupError:
                pass
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
