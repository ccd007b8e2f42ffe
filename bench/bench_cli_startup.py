"""CLI start-up: `dlaas-tui --help` and `manifest validate` of the sample, next to a bare Python.

Target (issue 2): each <= 0.3 s wall, best of N. The anchor `python -c pass` is measured in the same
run so a loaded machine shows as a slow anchor rather than a slow app. Also lists any heavy module
(boto3, kubernetes, torch, textual) those paths import, which must be none. Last, the time to
expand a 10,000-run sweep (target well under 1 s).

    python bench/bench_cli_startup.py [--runs N]
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
TARGET_S = 0.3
HEAVY = ("boto3", "botocore", "kubernetes", "torch", "textual", "pynvml")


def cli_command() -> list[str]:
    script = Path(sys.executable).parent / "dlaas-tui"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dlaas_tui"]


def best_of(cmd: list[str], runs: int, env: dict[str, str]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=str(REPO))
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
        best = min(best, elapsed)
    return best


def heavy_imports(argv: list[str], env: dict[str, str]) -> list[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "dlaas_tui", *argv], capture_output=True,
                          text=True, env=env, cwd=str(REPO))
    names = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    return sorted(names & set(HEAVY))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    runs = args.runs
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    home = tempfile.mkdtemp(prefix="dlaas-bench-")  # never the user's real config
    env["DLAAS_HOME"] = home
    try:
        return measure(runs, env)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def measure(runs: int, env: dict[str, str]) -> int:
    sample = str(REPO / "samples" / "pytorch-digits" / "manifest.yml")
    cli = cli_command()

    anchor = best_of([sys.executable, "-c", "pass"], runs, env)
    print(f"anchor  python -c pass                     {anchor:6.3f} s")
    for label, argv in (("dlaas-tui --help", ["--help"]),
                        ("dlaas-tui manifest validate <sample>", ["manifest", "validate", sample])):
        took = best_of([*cli, *argv], runs, env)
        heavy = heavy_imports(argv, env)
        verdict = "ok" if took <= TARGET_S and not heavy else "OVER TARGET"
        print(f"{label:<42} {took:6.3f} s  target <= {TARGET_S:.3f} s  anchor {anchor:.3f} s  "
              f"(+{took - anchor:.3f} s)  heavy imports: {', '.join(heavy) or 'none'}  {verdict}")
    print(f"best of {runs} runs each; command: {' '.join(cli)}")
    expand_s = sweep_expansion(runs)
    print(f"{'sweep expand, 100 x 100 grid (in process)':<42} {expand_s:6.3f} s  target <= 1.000 s "
          f"(10,000 trials)  {'ok' if expand_s <= 1.0 else 'OVER TARGET'}")
    return 0


def sweep_expansion(runs: int) -> float:
    """Issue 7 submits 10,000-run sweeps; expanding them must stay a small part of that."""
    sys.path.insert(0, str(REPO))
    from backend.manifest import parse_manifest
    from backend.manifest.sweep import expand

    values = ", ".join(str(i) for i in range(100))
    text = (REPO / "samples" / "pytorch-sweep" / "manifest.yml").read_text()
    text = text.replace("[0.003, 0.01, 0.03]", f"[{values}]").replace("[16, 32, 64, 128]", f"[{values}]")
    manifest = parse_manifest(text.replace("max_runs: 12", "max_runs: 10000"), "bench.yml").manifest
    assert manifest is not None
    best = float("inf")
    for _ in range(max(1, runs // 2)):
        started = time.perf_counter()
        trials = expand(manifest)
        best = min(best, time.perf_counter() - started)
    assert len(trials) == 10_000
    return best


if __name__ == "__main__":
    sys.exit(main())
