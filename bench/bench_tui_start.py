"""Start to first frame: `dlaas-tui` (runs screen on the fake engine) next to a bare Textual app.

Target (issue 4): <= 1.3x a Textual hello-world, both measured here, in the same run, as whole
processes, headless, best of N. "First frame" is the moment the first refresh has been done (the
process stamps the clock in a `call_after_refresh` from its first `on_mount`). Also shown, with no
target: when the runs feed first filled the table (dlaas-tui reads its config and engine after the
first frame), and the whole process to its end (dlaas-tui leaves once the table is filled, the
hello-world after its first frame).

Bytecode is written and one untimed run of each made first, as an installed app would have its
.pyc files (a shell with PYTHONDONTWRITEBYTECODE=1 would otherwise recompile our modules each run).

    python bench/bench_tui_start.py [--runs N] [--baseline OTHER_CHECKOUT]

`--baseline` times a second checkout (e.g. an export of main) in the same run, for before/after.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.3

STAMP = "import os, time\ndef _stamp(what='FIRST_FRAME'):\n    os.write(2, f'{what} {time.time():.6f}\\n'.encode())\n"

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
    apply = cls._apply
    def _apply(self, *args):
        apply(self, *args)
        if not getattr(cls, "stamped", False):
            cls.stamped = True
            _stamp("FIRST_DATA")
            self.app.exit()
    cls._apply = _apply

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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--baseline", type=Path, help="another checkout to time in the same run")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="bench-start-")
    Path(home, "config.toml").write_text('default_profile = "fake"\n[profiles.fake]\nscheduler = "fake"\n')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(DLAAS_HOME=home, DLAAS_FAKE_SEED="0")
    trees = {"dlaas-tui": REPO}
    if args.baseline is not None:
        trees[f"baseline {args.baseline}"] = args.baseline.resolve()
    jobs = {"hello": (HELLO, REPO), **{name: (DLAAS, tree) for name, tree in trees.items()}}
    try:
        for code, cwd in jobs.values():
            once(code, env, cwd)  # writes bytecode, warms the disk cache
        best: dict[str, dict[str, float]] = {name: {} for name in jobs}
        # Interleaved, best of N each: a busy shared machine slows all alike.
        for _ in range(args.runs):
            for name, (code, cwd) in jobs.items():
                for what, took in once(code, env, cwd).items():
                    best[name][what] = min(best[name].get(what, float("inf")), took)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    hello = best.pop("hello")
    for name, times in best.items():
        ratio = times["FIRST_FRAME"] / hello["FIRST_FRAME"]
        print(f"start to first frame: {name} {times['FIRST_FRAME'] * 1000:.0f} ms   anchor Textual hello-world "
              f"{hello['FIRST_FRAME'] * 1000:.0f} ms   ratio {ratio:.2f}x   target <= {TARGET_RATIO}x   "
              f"{'OK' if ratio <= TARGET_RATIO else 'MISSED'}")
        if "FIRST_DATA" in times:
            print(f"start to runs shown:  {name} {times['FIRST_DATA'] * 1000:.0f} ms   (no target)")
        print(f"start to exit:        {name} {times['exit'] * 1000:.0f} ms   anchor Textual hello-world "
              f"{hello['exit'] * 1000:.0f} ms   (no target; dlaas-tui leaves once runs are shown)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
