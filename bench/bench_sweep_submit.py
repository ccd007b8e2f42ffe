"""Sweep submission speed on the local engine: a 100-run sweep and a 10,000-run (100 x 100) grid.

Each figure is printed next to its target and an anchor measured in the same run:
  `submit` of a 100-run sweep (CLI, end to end)      target <= 2 s
  `submit` of a 10,000-run sweep (CLI, end to end)   target <= 20 s
  anchors: `python -m dlaas_tui --help` (the CLI's floor), expanding the 10,000 trials alone, and
  copying the model zip 10,000 times (each run's `_submitted_code/model.zip`, the layout's rule).
Also: `runs --json` and `experiments show --json` over the 10,000 queued runs (their ETAs included).
The agent is started first (`agent start`, its time printed too): a submit to a running agent is
what is timed. Runs under a throwaway DLAAS_HOME with one cpu slot, so the agent runs one command at a time; it
stops that agent and the run's process group by pid at the end.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def line(label: str, value: float, target: float | None, anchor: float, anchor_label: str) -> None:
    verdict = "" if target is None else f"target <= {target:g} s  [{'ok' if value <= target else 'OVER TARGET'}]"
    print(f"{label:38} {value:8.3f} s  {verdict:28} anchor ({anchor_label}) {anchor:.3f} s", flush=True)


def write_sweep(folder: Path, name: str, side: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model").mkdir(exist_ok=True)
    (folder / "model" / "train.py").write_text("print('loss=0.5')\n" * 50)
    values_a = [round(0.001 * (i + 1), 6) for i in range(side)]
    values_b = list(range(1, side + 1))
    text = f"""name: {name}
gpus: 1
max_duration: 10m
data_stores:
  - id: d
    type: local
    training_data: {{container: bench-data}}
    training_results: {{container: bench-results}}
framework:
  name: python
  command: sleep 30 # ${{lr}} ${{width}}
sweep:
  method: grid
  parameters:
    lr: {{values: {json.dumps(values_a)}}}
    width: {{values: {json.dumps(values_b)}}}
  metric: {{name: loss, goal: minimize}}
  parallel: 4
"""
    path = folder / "manifest.yaml"
    path.write_text(text)
    return path


def timed(cmd: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:])} failed: {res.stderr.strip()[-400:]}")
    return took, res


def stop(home: Path) -> None:
    from backend.facade import agent_status, get_paths

    paths = get_paths()  # DLAAS_HOME is the bench's home (set in main)
    pid = agent_status(paths)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and agent_status(paths):
            time.sleep(0.05)
    for f in (home / "state" / "runs").glob("*/state/learner-*.pid"):
        try:
            os.killpg(int(f.read_text().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        home = Path(tmp) / "home"
        (home / "store" / "bench-data").mkdir(parents=True)
        (home / "config.toml").write_text("[profiles.local]\ncpu_slots = 1\n")
        os.chmod(home / "config.toml", 0o600)
        os.environ["DLAAS_HOME"] = str(home)
        env = {**os.environ, "DLAAS_HOME": str(home),
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        py = [sys.executable, "-m", "dlaas_tui"]
        try:
            floor, _ = timed([*py, "--help"], env)
            cold, _ = timed([*py, "agent", "start"], env)  # the agent is up before the submits
            small = write_sweep(Path(tmp) / "s100", "sweep100", 10)
            took, res = timed([*py, "submit", str(small)], env)
            assert len(res.stdout.split()) == 100, res.stdout[:200]
            line("submit, 100-run sweep (CLI)", took, 2.0, floor, "dlaas-tui --help")
            line("", took, None, cold, "agent start, a cold start")

            big = write_sweep(Path(tmp) / "s10k", "sweep10k", 100)
            from backend.facade import load_manifest
            from backend.manifest.sweep import expand

            m = load_manifest(big)
            t0 = time.perf_counter()
            trials = expand(m)
            t_expand = time.perf_counter() - t0
            assert len(trials) == 10_000
            src = Path(tmp) / "zip-src.zip"
            shutil.make_archive(str(src.with_suffix("")), "zip", big.parent / "model")
            t0 = time.perf_counter()
            for i in range(10_000):
                dest = Path(tmp) / "copies" / f"{i}" / "model.zip"
                dest.parent.mkdir(parents=True)
                shutil.copyfile(src, dest)
            t_copy = time.perf_counter() - t0
            shutil.rmtree(Path(tmp) / "copies")

            took, res = timed([*py, "submit", str(big)], env)
            assert len(res.stdout.split()) == 10_000
            line("submit, 10,000-run sweep (CLI)", took, 20.0, t_expand, "expanding 10,000 trials")
            line("", took, None, t_copy, "10,000 copies of the model zip")

            took, res = timed([*py, "runs", "--json", "--state", "QUEUED"], env)
            queued = json.loads(res.stdout)
            with_eta = sum(1 for r in queued if r["eta"])
            line(f"runs --json, {len(queued):,} queued ({with_eta:,} ETAs)", took, None, floor,
                 "dlaas-tui --help")
            took, res = timed([*py, "experiments", "show", "sweep10k", "--json"], env)
            assert json.loads(res.stdout)["runs_total"] == 10_000
            line("experiments show --json, 10,000 runs", took, None, floor, "dlaas-tui --help")
        finally:
            stop(home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
