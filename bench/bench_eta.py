"""Queue-ETA error: a real sweep on the local engine, measured against when its trials really started.

A 6-trial sweep (`parallel: 1`, each trial `sleep 3`, `max_duration: 10m`, no GPU) runs under a
throwaway DLAAS_HOME with its own agent. Once 2 trials have COMPLETED, the ETAs the engine shows
for the trials still QUEUED are read once; each trial's real start (admitted_at) is then awaited.
Figure: the worst |ETA - real start| over those trials, against the goal max(10 s, 50 % of the
wait it predicted). Anchor: the same error for the rule before it learned (max_duration: an ETA
600 s per trial ahead), computed from the same real starts.
Stops the agent it starts (by pid).

Then best-effort (`queue_policy = "best-effort"`, 2 cpu slots, 2 cores): with the durations learned
from a run of each manifest, `long` (sleep 6) runs, `wide` (sleep 2, `cpus: 2`) waits for its cores,
`short` (sleep 2) passes it and runs, and a second `short` waits. The ETAs of the two QUEUED runs are
read once and held against their real starts (same goal); the second short run passes `wide` again
when the first ends. Anchor: the same state simulated as strict FIFO (what the ETAs said before
they followed the policy), which has the second short run wait for `wide`.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import local_home, local_manifest, stop_agent  # noqa: E402  (the checkout is on sys.path)

TRIALS, SLEEP_S, MAX_S = 6, 3, 600


def manifest(tmp: Path) -> Path:
    folder = tmp / "sweep"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "noop.txt").write_text("")
    return local_manifest(
        folder / "manifest.yaml", name="eta-sweep", command=f"sleep {SLEEP_S}",
        extra=f"max_duration: 10m\nsweep:\n  parallel: 1\n  parameters:\n    i: {{values: {list(range(TRIALS))}}}\n")


def wait_for(engine, ids: list[str], state: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not all(engine.get_run(i).state.value == state for i in ids):
        if time.monotonic() > deadline:
            raise SystemExit(f"runs did not reach {state} in {limit:.0f} s")
        time.sleep(0.05)


def best_effort(tmp: Path) -> dict:
    """The best-effort line (module docstring): worst |ETA - real start|, and the FIFO simulation's."""
    from types import SimpleNamespace

    home = local_home(tmp / "home-be")
    (home / "config.toml").write_text('[profiles.local]\ncpu_slots = 2\ncpus = 2\nqueue_policy = "best-effort"\n')
    os.environ["DLAAS_HOME"] = str(home)
    from backend import clock
    from backend.engines.local import eta as local_eta
    from backend.facade import SubmitRequest, open_backend

    engine = open_backend().engine
    try:
        model = tmp / "be-model"
        model.mkdir()
        (model / "noop.txt").write_text("")
        paths = {name: local_manifest(tmp / f"{name}.yaml", name=name, command=f"sleep {sleep}",
                                      extra=f"max_duration: 10m\n{extra}")
                 for name, sleep, extra in (("long", 6, ""), ("short", 2, ""), ("wide", 2, "cpus: 2\n"))}

        def submit(name: str) -> str:
            return engine.submit(SubmitRequest(manifests=[paths[name]], model=model))[0].id

        learn = [submit("long"), submit("short")]  # one of each, learned before the queue is read
        wait_for(engine, learn, "COMPLETED", 120)
        wait_for(engine, [submit("wide")], "COMPLETED", 120)
        order = [submit(name) for name in ("long", "wide", "short", "short")]
        seen_at = clock.now()
        now_runs = {r.id: r for r in engine.list_runs() if r.id in order}
        queued = [rid for rid in order if now_runs[rid].state.value == "QUEUED"]
        predicted = {rid: (now_runs[rid].eta, now_runs[rid].eta_bound) for rid in queued if now_runs[rid].eta}
        fifo_engine = SimpleNamespace(conn=engine.conn, backend=SimpleNamespace(
            config=engine.backend.config, profile=engine.backend.profile.model_copy(update={"queue_policy": "fifo"})))
        fifo = local_eta.engine_etas(fifo_engine)
        deadline = time.monotonic() + 120
        while not all(engine.get_run(i).admitted_at for i in queued):
            if time.monotonic() > deadline:
                raise SystemExit("queued runs did not start in time")
            time.sleep(0.05)
        worst = worst_fifo = 0.0
        misses = over = 0
        for rid in queued:
            run = engine.get_run(rid)
            started = run.admitted_at
            if rid not in predicted:
                misses += 1
                continue
            eta, bound = predicted[rid]
            error = abs((eta - started).total_seconds())
            goal = max(10.0, 0.5 * max(0.0, (eta - seen_at).total_seconds()))
            fifo_error = abs((fifo[rid].at - started).total_seconds()) if rid in fifo else float("inf")
            print(f"  {run.name:6}: predicted in {(eta - seen_at).total_seconds():6.1f} s "
                  f"({'bound' if bound else 'learned'}), started in {(started - seen_at).total_seconds():6.1f} s, "
                  f"error {error:5.1f} s (goal <= {goal:.1f} s); as FIFO {fifo_error:5.1f} s", flush=True)
            worst, worst_fifo = max(worst, error), max(worst_fifo, fifo_error)
            over += error > goal
        ok = "ok" if misses == 0 and over == 0 and queued else "OVER GOAL"
        print(f"{'ETA error, best-effort queue':40} {worst:8.2f} s  goal <= max(10 s, 50 %)  [{ok}]"
              f"   anchor (simulated as FIFO) {worst_fifo:.2f} s; {len(queued)} queued, {misses} without an ETA",
              flush=True)
        return {"best_effort_worst_error_s": worst, "best_effort_fifo_error_s": worst_fifo,
                "best_effort_queued": len(queued), "best_effort_without_eta": misses}
    finally:
        engine.close()
        stop_agent(home)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dlaas-bench-eta-") as d:
        tmp = Path(d)
        home = local_home(tmp / "home", cpu_slots=2)
        os.environ["DLAAS_HOME"] = str(home)
        from backend import clock
        from backend.facade import SubmitRequest, open_backend

        engine = open_backend().engine
        try:
            path = manifest(tmp)
            runs = engine.submit(SubmitRequest(manifests=[path], model=path.parent / "model"))
            ids = [r.id for r in runs]
            deadline = time.monotonic() + 120
            while True:
                now_runs = {r.id: r for r in engine.list_runs() if r.id in ids}
                done = sum(1 for r in now_runs.values() if r.state.value == "COMPLETED")
                if done >= 2:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("the sweep did not complete 2 trials in 120 s")
                time.sleep(0.05)
            seen_at = clock.now()
            predicted = {r.id: (r.eta, r.eta_bound) for r in now_runs.values()
                         if r.state.value == "QUEUED" and r.eta is not None}
            queued = sorted((r for r in now_runs.values() if r.state.value == "QUEUED"),
                            key=lambda r: r.queue_position or 0)
            waiting = [r.id for r in queued]
            while not all(engine.get_run(i).admitted_at for i in waiting):
                if time.monotonic() > deadline + 120:
                    raise SystemExit("queued trials did not start in time")
                time.sleep(0.05)
            worst = worst_old = 0.0
            misses = over = 0
            for rank, rid in enumerate(waiting, 1):
                started = engine.get_run(rid).admitted_at
                if rid not in predicted:
                    misses += 1
                    continue
                eta, bound = predicted[rid]
                error = abs((eta - started).total_seconds())
                wait = max(0.0, (eta - seen_at).total_seconds())
                goal = max(10.0, 0.5 * wait)
                old_eta_s = rank * MAX_S  # max_duration per trial ahead of it (the rule before)
                old_error = abs(old_eta_s - (started - seen_at).total_seconds())
                print(f"  trial #{rank}: predicted in {wait:6.1f} s ({'bound' if bound else 'learned'}), "
                      f"started in {(started - seen_at).total_seconds():6.1f} s, error {error:5.1f} s "
                      f"(goal <= {goal:.1f} s)", flush=True)
                worst, worst_old = max(worst, error), max(worst_old, old_error)
                over += error > goal
            ok = "ok" if misses == 0 and over == 0 else "OVER GOAL"
            print(f"{'ETA error, queued trials after 2 done':40} {worst:8.2f} s  goal <= max(10 s, 50 %)  [{ok}]"
                  f"   anchor (max_duration rule) {worst_old:.2f} s; {len(waiting)} queued, {misses} without an ETA",
                  flush=True)
            for rid in ids:
                engine.halt(rid)
        finally:
            engine.close()
            stop_agent(home)
        figures = best_effort(tmp)
        print(json.dumps({"bench": "eta", "worst_error_s": worst, "anchor_error_s": worst_old,
                          "queued": len(waiting), "without_eta": misses, **figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
