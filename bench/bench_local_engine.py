"""Local engine speed: submit -> command running, one admission pass, `runs --json` over 10,000 runs.

Each figure is printed next to its target and an anchor measured in the same run:
  submit -> running   target <= 1 s      anchor: spawning `sh -c true` (the floor of starting anything)
  admission pass      target <= 10 ms    anchor: reading all 10,000 queued rows sorted (a naive pass)
  runs --json         target <= 0.5 s    anchor: `python -c pass` (interpreter start, the CLI's floor)
Runs under a throwaway DLAAS_HOME and stops the agent it starts (by pid).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402  (the checkout is on sys.path from here)
    REPO, fill_ledger, home_env, local_home, local_manifest, model_dir, seal_finished, stop_agent)


def line(label: str, value: float, unit: str, target: float, anchor: float, anchor_label: str) -> None:
    ok = "ok" if value <= target else "OVER TARGET"
    print(f"{label:34} {value:9.4f} {unit}  target <= {target:g} {unit}  [{ok}]   "
          f"anchor ({anchor_label}) {anchor:.4f} {unit}", flush=True)


def fill(conn, n: int, state: str, *, prio_spread: bool = True, gpus: int | None = None) -> None:
    fill_ledger(conn, [(f"training-{state[:2].lower()}{i:06d}", state, (i % 3) * 100 if prio_spread else 0,
                        gpus or 1 + i % 2) for i in range(n)], t0=time.time() - n)


def bench_admission(tmp: Path) -> None:
    from backend.ledger import db
    from backend.engines.local.scheduler import FreeDevice, plan, queue_cursor

    conn = db.connect(tmp / "adm" / "state.db")
    fill(conn, 10_000, "QUEUED")
    free = [FreeDevice(f"cpu:{i}", "cpu") for i in range(1)]
    timings = {}
    for name, kw, room in (("fifo", {}, {"local": None}), ("best-effort", {"best_effort": True},
                                                                   {"local": None})):
        samples = []
        for _ in range(30):
            t = time.perf_counter()
            cur = queue_cursor(conn, best_effort=bool(kw), free=len(free))
            plan(cur, free, room, **kw)
            cur.close()
            samples.append(time.perf_counter() - t)
        timings[name] = statistics.median(samples)
    # best-effort's worst case: the head needs 2, one device is free, so no run of the 10,000 fits
    with db.write(conn):
        conn.execute("UPDATE runs SET gpus = 2")
    samples = []
    for _ in range(10):
        t = time.perf_counter()
        cur = queue_cursor(conn, best_effort=True, free=1)
        got = plan(cur, free, {"local": None}, best_effort=True)
        cur.close()
        samples.append(time.perf_counter() - t)
    assert got == []
    worst = statistics.median(samples)
    t = time.perf_counter()
    conn.execute("SELECT * FROM runs WHERE state = 'QUEUED' ORDER BY prio DESC, submitted_at").fetchall()
    anchor = time.perf_counter() - t
    conn.close()
    # the agent's whole pass (inventory, held devices, tier room, plan) over the same 10,000 runs
    old = os.environ.get("DLAAS_HOME")
    os.environ["DLAAS_HOME"] = str(tmp / "adm-home")
    try:
        from backend.agent.agent import Agent
        from backend.facade import open_backend

        conn = db.connect(tmp / "adm-home" / "state" / "state.db")
        fill(conn, 10_000, "QUEUED", gpus=2)  # one cpu slot: nothing fits, nothing is started
        conn.close()
        agent = Agent(open_backend(), open_backend)
        agent.admit()  # first pass warms the inventory cache
        samples = []
        for _ in range(20):
            t = time.perf_counter()
            agent.admit()
            samples.append(time.perf_counter() - t)
        full = statistics.median(samples)
        agent.conn.close()
    finally:
        if old is None:
            os.environ.pop("DLAAS_HOME", None)
        else:
            os.environ["DLAAS_HOME"] = old
    line("admission pass, 10k queued (fifo)", timings["fifo"] * 1000, "ms", 10, anchor * 1000,
         "naive sorted read")
    line("admission pass (best-effort)", timings["best-effort"] * 1000, "ms", 10, anchor * 1000,
         "naive sorted read")
    line("admission pass (b-e, none fits)", worst * 1000, "ms", 10, anchor * 1000, "naive sorted read")
    line("agent's whole pass, 10k queued", full * 1000, "ms", 10, anchor * 1000, "naive sorted read")


def bench_submit_latency(tmp: Path, env: dict) -> None:
    from backend.agentlink.control import ensure_agent
    from backend.paths import get_paths

    local_home(Path(env["DLAAS_HOME"]))
    model = model_dir(tmp / "model")
    stamp = tmp / "stamp"
    manifest = local_manifest(tmp / "manifest.yaml", name="latency", gpus=1, command=f"date +%s.%N > {stamp}")
    os.environ.update(env)
    ensure_agent(get_paths())
    from backend.facade import SubmitRequest, open_backend

    engine = open_backend().engine
    samples = []
    for _ in range(5):
        stamp.unlink(missing_ok=True)
        t0 = time.time()
        run = engine.submit(SubmitRequest(manifests=[manifest], model=model))[0]
        deadline = time.monotonic() + 20
        while not stamp.exists() or not stamp.read_text().strip():
            if time.monotonic() > deadline:
                raise SystemExit(f"{run.id} did not start within 20 s")
            time.sleep(0.002)
        samples.append(float(stamp.read_text()) - t0)
        while not engine.get_run(run.id).state.terminal:
            time.sleep(0.02)
    engine.close()
    t = time.perf_counter()
    for _ in range(5):
        subprocess.run(["sh", "-c", "true"], check=True)
    anchor = (time.perf_counter() - t) / 5
    line("submit -> command running (median)", statistics.median(samples), "s", 1.0, anchor, "sh -c true")


def bench_runs_json(tmp: Path, env: dict) -> None:
    from backend.ledger import db

    home = Path(env["DLAAS_HOME"])
    conn = db.connect(home / "state" / "state.db")
    fill(conn, 9_000, "COMPLETED", prio_spread=False)
    fill(conn, 1_000, "QUEUED", gpus=64)  # waiting for devices the box lacks: the agent stays idle
    seal_finished(conn)
    conn.close()
    cmd = [sys.executable, "-m", "dlaas_tui", "runs", "--json"]
    samples = []
    for _ in range(3):
        t = time.perf_counter()
        out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, check=True)
        samples.append(time.perf_counter() - t)
    assert out.stdout.count(b'"id"') >= 10_000
    t = time.perf_counter()
    for _ in range(3):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    anchor = (time.perf_counter() - t) / 3
    line("runs --json, 10k runs (median)", statistics.median(samples), "s", 0.5, anchor, "python -c pass")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dlaas-bench-") as d:
        tmp = Path(d)
        home = tmp / "home"
        env = home_env(home)
        try:
            bench_admission(tmp)
            bench_submit_latency(tmp, env)
            bench_runs_json(tmp, env)
        finally:
            stop_agent(home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
