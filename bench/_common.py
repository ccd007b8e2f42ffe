"""Helpers the benchmarks share: best-of-N timing and one printed row per figure."""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path


def timed(fn: Callable[[], object], repeat: int = 3) -> float:
    """The best of `repeat` wall-clock timings: the least disturbed run on a shared machine."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def row(label: str, value: float, unit: str, target: str, anchor: str) -> None:
    print(f"{label:<44} {value:>10.3f} {unit:<6} target {target:<10} anchor {anchor}")


# --- the local engine under a throwaway DLAAS_HOME (bench_local_engine, bench_scheduler, bench_eta) ---

REPO = Path(__file__).resolve().parent.parent


def local_home(home: Path, *, cpu_slots: int | None = None) -> Path:
    """A fresh DLAAS_HOME with the `bench-data` container the manifests read; optionally `cpu_slots`."""
    (home / "store" / "bench-data").mkdir(parents=True, exist_ok=True)
    if cpu_slots is not None:
        (home / "config.toml").write_text(f"[profiles.local]\ncpu_slots = {cpu_slots}\n")
        os.chmod(home / "config.toml", 0o600)
    return home


def home_env(home: Path) -> dict[str, str]:
    """The environment for a CLI or agent under `home`, importing this checkout.

    Bytecode is written (as an installed app has its .pyc files): a shell with
    PYTHONDONTWRITEBYTECODE=1 would otherwise have every call recompile our modules.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "DLAAS_PROFILE")}
    return {**env, "DLAAS_HOME": str(home),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def local_manifest(path: Path, *, name: str, command: str, gpus: int = 0, extra: str = "") -> Path:
    """Write a manifest reading the local `bench-data` container and running `command`; `extra` is
    YAML appended at the top level (for instance a `sweep:` block)."""
    path.write_text(
        f"name: {name}\ngpus: {gpus}\n"
        "data_stores:\n  - id: d\n    type: local\n    training_data: {container: bench-data}\n"
        "    training_results: {container: bench-results}\n"
        f"framework:\n  name: python\n  command: {command}\n{extra}")
    return path


def model_dir(path: Path) -> Path:
    """A minimal model folder to submit with a manifest."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "train.py").write_text("print('hi')\n")
    return path


def stop_agent(home: Path) -> None:
    """Stop the agent of `home` by its pid (SIGTERM), if one runs."""
    from backend.agentlink.control import agent_pid

    pid = agent_pid(home / "state")
    if pid and pid > 0:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def fill_ledger(conn, rows: list[tuple[str, str, int, int]], *, t0: float, name: str = "bench",
                metrics: bool = True) -> None:
    """Insert runs straight into a local ledger: (id, state, prio, gpus) each, submitted a second apart
    from `t0`; COMPLETED ones carry a cost and, with `metrics`, non-queued ones metrics."""
    from backend.ledger import db

    with db.write(conn):
        seq = db.next_seq(conn)
        for i, (rid, state, prio, gpus) in enumerate(rows):
            done = state == "COMPLETED"
            queued = state == "QUEUED"
            db.insert_run(conn, {
                "id": rid, "name": f"{name}-{i}", "profile": "local", "state": state,
                "priority": "normal", "prio": prio, "submitted_at": t0 + i, "gpus": gpus, "learners": 1,
                "spec": {"command": "true"}, "results_bucket": "bench",
                "cost_micro": 833 if done else None,
                **({"metrics": {} if queued else {"loss": 0.1 * (i % 7), "accuracy": 0.9},
                    "primary_metric": None if queued else "loss"} if metrics else {}),
            }, seq)


def seal_finished(conn) -> None:
    """Seal every COMPLETED run, as the agent does when a run ends."""
    from backend.engines.local.rows import seal_run

    for (rid,) in conn.execute("SELECT id FROM runs WHERE state = 'COMPLETED'").fetchall():
        seal_run(conn, rid)
