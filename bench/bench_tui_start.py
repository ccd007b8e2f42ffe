"""Start to first frame: `dlaas-tui` (runs screen on the fake engine) next to a bare Textual app.

Target (issue 4): <= 1.3x a Textual hello-world, both measured here, in the same run, as whole
processes, headless, best of N. "First frame" is the moment the first refresh has been done (the
process stamps the clock then, in a `call_after_refresh` from its first `on_mount`); "to exit" is
the whole process to its end, which for dlaas-tui includes finishing what was started after the
frame (opening the config in a worker) and shutting down.

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

STAMP = "import os, time\ndef _stamp():\n    os.write(2, f'FIRST_FRAME {time.time():.6f}\\n'.encode())\n"

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

# The real entry point (`python -m dlaas_tui` with no command), told to leave after its first frame.
# The app class is patched as its module is imported, so everything runs in the program's own order.
DLAAS = STAMP + r"""
import functools, importlib.util, sys

def patch(module):
    from textual.app import App
    cls = module.DlaasApp
    mounted = cls.on_mount
    def on_mount(self):
        mounted(self)
        self.call_after_refresh(lambda: (_stamp(), self.exit()))
    cls.on_mount = on_mount
    cls.run = functools.partialmethod(App.run, headless=True)

class PatchOnImport:
    def find_spec(self, name, path=None, target=None):
        if name != "dlaas_tui.app":
            return None
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


def once(code: str, env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(start to first frame, start to exit) in seconds."""
    started = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(cwd)}, cwd=str(cwd),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {proc.stderr.decode()[-800:]}")
    stamps = [line.split()[1] for line in proc.stderr.decode().splitlines() if line.startswith("FIRST_FRAME ")]
    if not stamps:
        raise SystemExit(f"no first frame reported: {proc.stderr.decode()[-800:]}")
    return float(stamps[0]) - started, elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
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
        best = {name: [float("inf"), float("inf")] for name in jobs}
        # Interleaved, best of N each: a busy shared machine slows all alike.
        for _ in range(args.runs):
            for name, (code, cwd) in jobs.items():
                frame, whole = once(code, env, cwd)
                best[name] = [min(best[name][0], frame), min(best[name][1], whole)]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    hello_frame, hello_whole = best.pop("hello")
    for name, (frame, whole) in best.items():
        ratio = frame / hello_frame
        print(f"start to first frame: {name} {frame * 1000:.0f} ms   anchor Textual hello-world "
              f"{hello_frame * 1000:.0f} ms   ratio {ratio:.2f}x   target <= {TARGET_RATIO}x   "
              f"{'OK' if ratio <= TARGET_RATIO else 'MISSED'}")
        print(f"start to exit:        {name} {whole * 1000:.0f} ms   anchor Textual hello-world "
              f"{hello_whole * 1000:.0f} ms   ratio {whole / hello_whole:.2f}x   (no target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
