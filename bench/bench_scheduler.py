"""The local engine next to gflow (PyPI `runqd`: gbatch, gqueue, gflowd), a single-node scheduler.

Same machine, same moment, medians of a few repetitions; each dlaas-tui figure is printed next to
its target and gflow's figure:
  submit one job, wall clock         target <= 0.15 s   (`dlaas-tui submit` vs `gbatch`, each into an idle
                                     scheduler: see `settle`); the agent's
                                     submission worker submits it (backend/agentlink/handoff.py): the first
                                     submit, which starts that worker, is printed on its own line
  submit -> the command starts       no worse than before (the command stamps the time it began)
  listing 200 jobs                   (`dlaas-tui runs` vs `gqueue -a`)
  listing 600 runs                   target <= 0.08 s
  idle memory of agent / daemon      target <= 30 MB   (VmRSS); the submission worker's own RSS on
                                     the next line while it is alive (it exits after 60 s idle)
gflow runs in a throwaway HOME on its own port; its jobs run in tmux login shells, so that HOME's
.bash_profile puts gcancel on PATH (its jobs call it) and jobs are submitted with --auto-close.
Everything started is stopped by pid. Skipped (exit 0, said so) when runqd or tmux is missing.
"""
from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.agentlink.handoff import IDLE_S  # noqa: E402
from bench._common import (  # noqa: E402  (the checkout is on sys.path from here)
    REPO, fill_ledger, home_env, local_home, local_manifest, model_dir, seal_finished, stop_agent)
BIN = Path(sys.executable).parent
REPS = 5
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def line(label: str, ours: float, unit: str, target: str, gflow: float | None) -> None:
    anchor = "-" if gflow is None else f"{gflow:.3f} {unit}"
    print(f"{label:34} {ours:8.3f} {unit:3} target {target:10} gflow {anchor}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        if ln.startswith("VmRSS:"):
            return int(ln.split()[1]) / 1024
    return float("nan")


def submit_workers(agent: int) -> list[int]:
    """The agent's submission worker, if alive: its child running backend.agent.submit_worker."""
    out = []
    for children in Path(f"/proc/{agent}/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                if b"backend.agent.submit_worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out.append(int(pid))
            except OSError:
                continue
    return out


def child_cpu() -> float:
    """User + system seconds of the waited-for children so far (their CPU, whatever the load)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wait_stamp(stamp: Path, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = stamp.read_text().strip()
        except OSError:
            text = ""
        if text:
            return float(text)
        time.sleep(0.002)
    raise SystemExit(f"{stamp}: the command did not start within {timeout} s")


def settle(gf: "Gflow", env: dict) -> None:
    """Both schedulers idle before a timed submit: every job and run ended, then a second's rest.
    gflowd answers a `gbatch` late (0.4-1 s, against ~0.03 s idle) for about a second and a half
    after it starts a job, so submits in quick succession would time that, not the submit."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = [ln.split()[2] for ln in ANSI.sub("", gf.run("gqueue", "-a").stdout).splitlines()[1:]
                  if len(ln.split()) > 2]
        if all(st in ("CD", "F", "CA", "TO") for st in states) and "PROCESSING" not in cli(env, "runs").stdout:
            break
        time.sleep(0.05)
    time.sleep(1.0)


class Gflow:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        for d in ("home", "config", "data", "state", "run", "tmux"):
            (root / d).mkdir(parents=True, exist_ok=True)
        path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        # Jobs run in tmux login shells, where /etc/profile resets PATH: put gcancel back.
        for rc in (".bash_profile", ".bashrc", ".profile"):
            (self.home / rc).write_text(f'export PATH="{path}"\n')
        self.env = {**os.environ, "HOME": str(self.home), "XDG_CONFIG_HOME": str(root / "config"),
                    "XDG_DATA_HOME": str(root / "data"), "XDG_STATE_HOME": str(root / "state"),
                    "XDG_RUNTIME_DIR": str(root / "run"), "TMUX_TMPDIR": str(root / "tmux"), "PATH": path}
        self.env.pop("TMUX", None)
        self.pid: int | None = None

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / args[0]), *args[1:]], env=self.env, capture_output=True,
                              text=True, check=check, cwd=self.root, timeout=60)

    def start(self) -> None:
        self.run("gflowd", "init", "--yes", "--force", "--port", str(free_port()), "--timezone", "UTC")
        self.run("gflowd", "start")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = self.run("gflowd", "status", check=False).stdout
            for ln in out.splitlines():
                if ln.startswith("PID:"):
                    self.pid = int(ln.split()[1])
            if self.pid and self.run("gqueue", "-a", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise SystemExit("gflowd did not start")

    def stop(self) -> None:
        self.run("gflowd", "stop", check=False)
        tmux = subprocess.run(["tmux", "display", "-p", "#{pid}"], env=self.env, capture_output=True,
                              text=True)
        if tmux.returncode == 0 and tmux.stdout.strip().isdigit():
            try:
                os.kill(int(tmux.stdout.strip()), signal.SIGTERM)  # the tmux server of this HOME only
            except ProcessLookupError:
                pass


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlaas_tui", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, check=True, timeout=120)


def fill(home: Path, n: int) -> None:
    """n runs in the ledger, a third finished with their metrics (a loss, the primary one, and an
    accuracy): the shape of a listing after a day's work."""
    old = os.environ.get("DLAAS_HOME")
    os.environ["DLAAS_HOME"] = str(home)
    try:
        from backend.ledger import db

        conn = db.connect(home / "state" / "state.db")
        # 64 GPUs each: waiting for GPUs the box lacks, the agent stays idle
        fill_ledger(conn, [(f"training-f{n:03d}{i:04d}", "COMPLETED" if i % 3 == 0 else "QUEUED", 0, 64)
                           for i in range(n)], t0=time.time() - n, name="fill")
        seal_finished(conn)
        conn.close()
    finally:
        if old is None:
            os.environ.pop("DLAAS_HOME", None)
        else:
            os.environ["DLAAS_HOME"] = old


def main() -> int:
    if not (BIN / "gbatch").exists() or shutil.which("tmux") is None:
        print("skipped: gflow (pip install runqd, the bench extra) or tmux is missing")
        return 0
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="dlaas-bench-sched-") as d:
        tmp = Path(d)
        gf = Gflow(tmp / "gflow")
        home = local_home(tmp / "home", cpu_slots=2)
        env = home_env(home)
        model = model_dir(tmp / "model")
        stamp = tmp / "stamp"
        manifest = local_manifest(tmp / "manifest.yaml", name="latency", command=f"date +%s.%N > {stamp}")
        job = tmp / "job.sh"
        job.write_text(f"#!/bin/sh\ndate +%s.%N > {stamp}\n")
        job.chmod(0o755)
        try:
            gf.start()
            cli(env, "agent", "start")
            cli(env, "submit", str(manifest), "--model", str(model), "--dry-run")  # untimed: writes bytecode
            cli(env, "runs")
            from backend.agentlink.control import agent_pid

            figures: dict[str, tuple[list[float], list[float]]] = {"submit": ([], []), "start": ([], []),
                                                                   "submit_cpu": ([], [])}
            # The first submit after the agent starts also starts its submission worker: timed on its own.
            stamp.unlink(missing_ok=True)
            t0 = time.time()
            t = time.perf_counter()
            cli(env, "submit", str(manifest), "--model", str(model))
            first_submit = time.perf_counter() - t
            first_start = wait_stamp(stamp) - t0
            for _ in range(REPS):
                for who in ("gflow", "dlaas"):
                    settle(gf, env)
                    stamp.unlink(missing_ok=True)
                    t0 = time.time()
                    c = child_cpu()
                    t = time.perf_counter()
                    if who == "gflow":
                        gf.run("gbatch", "--auto-close", str(job))
                    else:
                        cli(env, "submit", str(manifest), "--model", str(model))
                    wall = time.perf_counter() - t
                    cpu = child_cpu() - c
                    began = wait_stamp(stamp) - t0
                    k = 0 if who == "dlaas" else 1
                    figures["submit"][k].append(wall)
                    figures["start"][k].append(began)
                    figures["submit_cpu"][k].append(cpu)
            # Let both go idle before the memory figures (runs end, gflow's jobs close).
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and "PROCESSING" in cli(env, "runs").stdout:
                time.sleep(0.1)
            time.sleep(1.0)
            apid = agent_pid(home / "state")
            rss_agent = rss_mb(apid)
            workers = submit_workers(apid)
            rss_worker = rss_mb(workers[0]) if workers else None
            rss_gflow = rss_mb(gf.pid) if gf.pid else float("nan")
            # Listing: 200 jobs each (gflow's held back by --begin so they stay queued), then 600 runs.
            for _ in range(200 - REPS):
                gf.run("gbatch", "--begin", "now+1d", str(job))
            fill(home, 200 - REPS)
            lists: dict[str, list[float]] = {"gqueue": [], "runs200": [], "runs600": [], "runs600_cpu": []}
            for _ in range(REPS):
                t = time.perf_counter()
                out = gf.run("gqueue", "-a").stdout
                lists["gqueue"].append(time.perf_counter() - t)
                t = time.perf_counter()
                cli(env, "runs")
                lists["runs200"].append(time.perf_counter() - t)
            assert out.count("\n") >= 200, out[-500:]
            fill(home, 400)
            for _ in range(REPS):
                c = child_cpu()
                t = time.perf_counter()
                cli(env, "runs")
                lists["runs600"].append(time.perf_counter() - t)
                lists["runs600_cpu"].append(child_cpu() - c)
            c = child_cpu()
            t = time.perf_counter()
            for _ in range(REPS):
                subprocess.run([sys.executable, "-c", "pass"], check=True)
            floor = (time.perf_counter() - t) / REPS
            floor_cpu = (child_cpu() - c) / REPS
            # Each submit the worker made is a line in agent.log: the figures are of that path, or say not.
            handed = (home / "state" / "agent.log").read_text().count(" submitted training-")
        finally:
            gf.stop()
            stop_agent(home)
        end_load = os.getloadavg()
        med = statistics.median
        print(f"(medians of {REPS}; python -c pass: {floor:.3f} s)")
        print(f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start, "
              f"{end_load[0]:.2f} {end_load[1]:.2f} {end_load[2]:.2f} at the end; 2 shared cores)")
        print(f"({handed} of the {REPS + 1} submits were made by the agent's submission worker, "
              "the others by the command itself)")
        line("first submit (starts the worker)", first_submit, "s", "-", None)
        line("first submit -> the command starts", first_start, "s", "-", None)
        line("submit one job, wall clock", med(figures["submit"][0]), "s", "<= 0.15 s", med(figures["submit"][1]))
        line("submit -> the command starts", med(figures["start"][0]), "s", "<= today", med(figures["start"][1]))
        line("listing 200 jobs (runs / gqueue -a)", med(lists["runs200"]), "s", "-", med(lists["gqueue"]))
        line("listing 600 runs (runs)", med(lists["runs600"]), "s", "<= 0.08 s", None)
        line("idle RSS, agent / gflowd", rss_agent, "MB", "<= 30 MB", rss_gflow)
        if rss_worker is not None:
            line("RSS of its submission worker", rss_worker, "MB", "-", None)
            print(f"(the worker is the agent's child while submits come; it exits after "
                  f"{IDLE_S:.0f} s without one: agent + worker {rss_agent + rss_worker:.1f} MB meanwhile)")
        else:
            print("(no submission worker alive when the memory was read)")
        # On a shared, loaded machine wall clocks stretch; the commands' own CPU time much less so.
        # (Only the command's process: work done in the agent or gflowd is not in these.)
        print(f"(cpu time, user+sys of the command's own process; python -c pass: {floor_cpu:.3f} s)")
        line("submit one job, cpu", med(figures["submit_cpu"][0]), "s", "-", med(figures["submit_cpu"][1]))
        line("listing 600 runs (runs), cpu", med(lists["runs600_cpu"]), "s", "-", None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
