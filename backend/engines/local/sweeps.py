"""Sweep policy for the local agent: `parallel`, `max_failed`, early stopping, and queue ETAs.

A sweep's policy is recorded once per experiment (table `experiments`, next to `runs`) when the
submit that creates it is recorded, so the agent never re-reads manifests:

- `parallel` caps how many runs of the experiment hold devices at once, within the tier. Runs held
  back by the cap do not block the queue: runs behind them (of other experiments) are admitted.
- `max_failed`: once N runs of the experiment have FAILED, its runs still QUEUED are never started.
  They end HALTED (not FAILED: none of them failed, and nothing was billed) with error code C205 and
  the message "not started: experiment X reached max_failed (N failed)". Runs already going finish.
- early stop (`type: median`): about once a second the agent checks every PROCESSING run of such an
  experiment against the runs of the same experiment that started before it (median_stop in
  backend/experiments.py). A loser is halted like `halt` does (SIGTERM to its group, logs stored) but
  ends HALTED with error code C204 and "early stop: ..."; its billing ends when storing ends.

Reading a cap fails closed: only SQLite's "no such table" (no sweep submitted yet) means "no cap";
any other error (a locked or corrupt database) stops the admission pass, which the agent logs.
Queue ETAs honour the `parallel` caps recorded here (backend/eta.py).
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from backend import clock
from ...cost import BILLED_SQL
from ...runs import ErrorCode, RunState
from .scheduler import ADMIT_COLS, GATE_FILTER, queue_cursor

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS experiments (id TEXT PRIMARY KEY, created_at REAL NOT NULL, "
    "policy TEXT NOT NULL DEFAULT '{}')"
)
MAX_FAILED_CODE = ErrorCode.SWEEP_MAX_FAILED.value  # runs never started: their experiment reached max_failed
EARLY_STOP_EVERY = 1.0  # seconds between early-stop checks


@dataclass(frozen=True)
class SweepPolicy:
    parallel: int | None = None
    max_failed: int | None = None
    metric: str | None = None
    goal: str = "minimize"
    early_stop_min_runs: int | None = None  # None: no early stopping
    early_stop_start_step: float = 0

    @classmethod
    def from_manifest(cls, manifest) -> SweepPolicy:
        sweep = getattr(manifest, "sweep", None)
        if sweep is None:
            return cls()
        es = sweep.early_stop
        return cls(
            parallel=sweep.parallel, max_failed=sweep.max_failed,
            metric=sweep.metric.name if sweep.metric else None,
            goal=sweep.metric.goal if sweep.metric else "minimize",
            early_stop_min_runs=es.min_runs if es is not None else None,
            early_stop_start_step=float(es.start_step) if es is not None else 0.0,
        )

    @classmethod
    def from_json(cls, text: str) -> SweepPolicy:
        data = json.loads(text or "{}")
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def merged(self, other: SweepPolicy) -> SweepPolicy:
        """Two manifests grouped in one experiment: the stricter limits, the first metric."""
        def low(a, b):
            return b if a is None else a if b is None else min(a, b)

        return SweepPolicy(
            parallel=low(self.parallel, other.parallel), max_failed=low(self.max_failed, other.max_failed),
            metric=self.metric or other.metric, goal=self.goal if self.metric else other.goal,
            early_stop_min_runs=self.early_stop_min_runs or other.early_stop_min_runs,
            early_stop_start_step=self.early_stop_start_step if self.early_stop_min_runs
            else other.early_stop_start_step,
        )

    @property
    def empty(self) -> bool:
        return self == SweepPolicy()


def ensure_schema(conn) -> None:
    conn.execute(SCHEMA)


def unique_experiment_id(conn, base: str, taken: set[str] = frozenset()) -> str:
    """`base`, else `base-2`, `base-3`...: submitting a sweep again starts a new experiment, so an
    old sweep's failures never count against a new one's `max_failed`."""
    ensure_schema(conn)

    def used(name: str) -> bool:
        if name in taken:
            return True
        return conn.execute(
            "SELECT 1 FROM experiments WHERE id = ? UNION ALL SELECT 1 FROM runs WHERE experiment = ? "
            "LIMIT 1", (name, name)).fetchone() is not None

    if not used(base):
        return base
    n = 2
    while used(f"{base}-{n}"):
        n += 1
    return f"{base}-{n}"


def assign_experiments(conn, requested: str | None, manifests: list) -> tuple[list[str | None], dict[str, SweepPolicy]]:
    """The experiment of each manifest of one submit, and the policies to record.

    `--experiment NAME` groups every manifest under NAME (adding to it if it exists); otherwise each
    sweep gets its own experiment named after the manifest (`-2`, `-3`... when taken) and a plain
    manifest none. conn None (a dry run): names are not checked against earlier submits.
    """
    names: list[str | None] = []
    policies: dict[str, SweepPolicy] = {}
    taken: set[str] = set()
    for m in manifests:
        if requested:
            exp = requested
        elif m.sweep is not None:
            exp = m.name if conn is None else unique_experiment_id(conn, m.name, taken)
            taken.add(exp)
        else:
            exp = None
        names.append(exp)
        if exp is not None:
            policy = SweepPolicy.from_manifest(m)
            policies[exp] = policies[exp].merged(policy) if exp in policies else policy
    return names, {e: p for e, p in policies.items() if not p.empty}


def recorded_runs(engine, ids: list[str]) -> list:
    """The runs just inserted, read back in one query (positions and ETAs worked out once)."""
    from .rows import LIST_COLUMNS

    rows = engine.conn.execute(
        f"SELECT {LIST_COLUMNS} FROM runs WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(ids),)).fetchall()
    by_id = {r.id: r for r in engine.runs_from_rows(rows)}
    return [by_id[i] for i in ids if i in by_id]


def record_policies(conn, policies: dict[str, SweepPolicy], now: float | None = None) -> None:
    """Inside the submit's transaction: create or tighten each experiment's policy."""
    ensure_schema(conn)
    now = clock.time() if now is None else now
    for exp, policy in policies.items():
        row = conn.execute("SELECT policy FROM experiments WHERE id = ?", (exp,)).fetchone()
        if row is not None:
            policy = SweepPolicy.from_json(row[0]).merged(policy)
        conn.execute(
            "INSERT INTO experiments (id, created_at, policy) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET policy = excluded.policy",
            (exp, now, json.dumps(asdict(policy))))


def no_such_table(exc: BaseException) -> bool:
    """True only for SQLite's "no such table" (nothing has created it yet). Any other error while
    reading a limit - a locked or corrupt database - must not read as "no limit"."""
    import sqlite3

    return isinstance(exc, sqlite3.OperationalError) and str(exc).startswith("no such table")


def policy_rows(conn) -> list:
    """(experiment, policy JSON) rows; [] only when no submit has created the table yet. Any other
    error is raised: the caller's pass then admits nothing (fails closed) and logs why."""
    try:
        return conn.execute("SELECT id, policy FROM experiments").fetchall()
    except Exception as exc:
        if no_such_table(exc):
            return []
        raise


def read_policies(conn) -> dict[str, SweepPolicy]:
    rows = policy_rows(conn)
    out = {}
    for exp, text in rows:
        policy = SweepPolicy.from_json(text)
        if not policy.empty:
            out[exp] = policy
    return out


# -- admission -------------------------------------------------------------------------------------
def capped_queue(conn, *, best_effort: bool, free: int, room: dict[str, int]):
    """The admission queue without the runs an experiment's `parallel` cap holds back (iterable;
    `close()` when done).

    room: runs each capped experiment may still start. Experiments with no room are left out inside
    SQLite; the others are counted down as their runs are offered to the planner, and counted back
    up for a run the planner passes over (`passed`, which `plan` calls): under best-effort a trial
    that does not fit leaves its room to the next trial that does.
    """
    if not room:
        return queue_cursor(conn, best_effort=best_effort, free=free)
    full = [e for e, n in room.items() if n <= 0]
    sql = f"SELECT {ADMIT_COLS}, experiment FROM runs WHERE state = 'QUEUED' AND {GATE_FILTER}"
    args: list[Any] = []
    if best_effort:
        sql += " AND gpus * learners <= ?"
        args.append(free)
    if full:
        sql += f" AND (experiment IS NULL OR experiment NOT IN ({', '.join('?' for _ in full)}))"
        args += full
    sql += " ORDER BY prio DESC, submitted_at, id"
    return _CappedQueue(conn.execute(sql, args), dict(room))


class _CappedQueue:
    """Rows of a capped experiment are offered while it has room left; each offered one takes a
    place until the planner says it passed it over."""

    def __init__(self, cur, left: dict[str, int]) -> None:
        self._cur = cur
        self._left = left
        self._offered: dict[str, str] = {}  # run id -> its capped experiment

    def __iter__(self) -> Iterator[tuple]:
        left, offered = self._left, self._offered
        for *row, exp in self._cur:
            if exp in left:
                if left[exp] <= 0:
                    continue
                left[exp] -= 1
                offered[row[0]] = exp
            yield tuple(row)

    def passed(self, run_id: str) -> None:
        """The planner did not admit `run_id`: its place goes back to its experiment."""
        exp = self._offered.pop(run_id, None)
        if exp is not None:
            self._left[exp] += 1

    def close(self) -> None:
        self._cur.close()


class SweepGovernor:
    """What the agent does for sweeps on each pass; every method is cheap when no sweep is active."""

    def __init__(self, conn, halt_run) -> None:
        self.conn = conn
        self.halt_run = halt_run  # (run id, error code, message) -> False when it could not be asked
        self._policies: dict[str, SweepPolicy] = {}
        self._rows: list = []
        self._checked_at = 0.0
        self._stopped: set[str] = set()
        self._series: dict[tuple[str, str], list[tuple[float, float]]] = {}  # finished runs only

    def policies(self) -> dict[str, SweepPolicy]:
        """Read on every pass (a submit may have just added one): a small table, parsed only when
        its text changed."""
        rows = policy_rows(self.conn)  # raises on a locked/corrupt database: admission stops
        if rows != self._rows:
            self._rows = rows
            self._policies = {e: p for e, p in ((e, SweepPolicy.from_json(t)) for e, t in rows)
                              if not p.empty}
        return self._policies

    def room(self) -> dict[str, int]:
        """Runs each experiment with a `parallel` cap may still start now."""
        capped = {e: p.parallel for e, p in self.policies().items() if p.parallel}
        if not capped:
            return {}
        active = dict(self.conn.execute(
            f"SELECT experiment, COUNT(*) FROM runs WHERE state IN {BILLED_SQL} AND experiment IS NOT NULL "
            "GROUP BY experiment").fetchall())
        return {e: cap - active.get(e, 0) for e, cap in capped.items()}

    def queue(self, *, best_effort: bool, free: int):
        return capped_queue(self.conn, best_effort=best_effort, free=free, room=self.room())

    def tick(self) -> None:
        """The agent's per-pass sweep work; a failure here never stops admission."""
        for step in (self.enforce_max_failed, self.early_stop):
            try:
                step()
            except Exception:
                import logging  # here, not at import: `runs` lists without logging

                logging.getLogger("dlaas.agent").exception("sweep policy pass failed")

    # -- max_failed --------------------------------------------------------------------------------
    def enforce_max_failed(self) -> int:
        """Halt the queued runs of experiments that reached max_failed; returns how many."""
        limits = {e: p.max_failed for e, p in self.policies().items() if p.max_failed}
        if not limits:
            return 0
        marks = ", ".join("?" for _ in limits)
        failed = self.conn.execute(
            f"SELECT experiment, COUNT(*) FROM runs WHERE state = 'FAILED' AND experiment IN ({marks}) "
            "GROUP BY experiment", list(limits)).fetchall()
        done = 0
        for exp, count in failed:
            if count >= limits[exp]:
                done += halt_queued(self.conn, exp, MAX_FAILED_CODE,
                                    f"not started: experiment {exp} reached max_failed "
                                    f"({count} failed, limit {limits[exp]})")
        return done

    # -- early stopping ----------------------------------------------------------------------------
    def early_stop(self, *, force: bool = False) -> list[str]:
        """Halt PROCESSING runs the median rule stops; returns their ids."""
        now = time.monotonic()
        if not force and now - self._checked_at < EARLY_STOP_EVERY:
            return []
        self._checked_at = now
        watched = {e: p for e, p in self.policies().items() if p.early_stop_min_runs and p.metric}
        if not watched:
            return []
        marks = ", ".join("?" for _ in watched)
        live = self.conn.execute(
            f"SELECT DISTINCT experiment FROM runs WHERE state = 'PROCESSING' AND experiment IN ({marks})",
            list(watched)).fetchall()
        stopped = []
        for (exp,) in live:
            stopped += self._check_experiment(exp, watched[exp])
        return stopped

    def _check_experiment(self, exp: str, policy: SweepPolicy) -> list[str]:
        from ...experiments import median_stop  # here: listings read sweep policies without it

        rows = self.conn.execute(
            "SELECT id, state, started_at, error_code FROM runs WHERE experiment = ? "
            "AND started_at IS NOT NULL", (exp,)).fetchall()
        series = self._series_of([(r[0], r[1]) for r in rows], policy.metric or "")
        out = []
        for rid, state, started, _code in rows:
            if state != RunState.PROCESSING.value or rid in self._stopped:
                continue
            earlier = [series[o] for o, _s, st, code in rows
                       if o != rid and st < started and code != ErrorCode.EARLY_STOP.value]
            stop, why = median_stop(series[rid], earlier, goal=policy.goal,
                                    min_runs=policy.early_stop_min_runs or 3,
                                    start_step=policy.early_stop_start_step)
            if stop and self.halt_run(rid, ErrorCode.EARLY_STOP.value, why) is not False:
                self._stopped.add(rid)  # asked once; a run with no worker yet is asked again later
                out.append(rid)
        return out

    def _series_of(self, runs: list[tuple[str, str]], metric: str) -> dict[str, list[tuple[float, float]]]:
        out: dict[str, list[tuple[float, float]]] = {}
        need = []
        for rid, state in runs:
            cached = self._series.get((rid, metric))
            if cached is not None:
                out[rid] = cached
            else:
                need.append((rid, RunState(state).terminal))
        if need:
            got: dict[str, list[tuple[float, float]]] = {rid: [] for rid, _ in need}
            marks = ", ".join("?" for _ in need)
            for rid, step, value in self.conn.execute(
                f"SELECT run_id, step, value FROM metrics WHERE name = ? AND learner <= 1 "
                f"AND run_id IN ({marks}) ORDER BY rowid", [metric, *(r for r, _ in need)]):
                pts = got[rid]
                pts.append((float(step) if step is not None else float(len(pts) + 1), value))
            for rid, terminal in need:
                out[rid] = got[rid]
                if terminal:
                    self._series[(rid, metric)] = got[rid]
        return out


def halt_queued(conn, experiment: str, code: str, message: str) -> int:
    """One transaction: every QUEUED run of the experiment to HALTED, each with its ledger event."""
    from ...ledger import db

    now = clock.time()
    with db.write(conn):
        seq = db.next_seq(conn)
        ids = [r[0] for r in conn.execute(
            "UPDATE runs SET state = 'HALTED', error_code = ?, message = ?, finished_at = ?, "
            "cost_micro = 0, priced = 1, seq = ? WHERE experiment = ? AND state = 'QUEUED' RETURNING id",
            (code, message, now, seq, experiment))]
        conn.executemany(
            "INSERT INTO run_events (run_id, at, state, message, error_code) VALUES (?, ?, 'HALTED', ?, ?)",
            [(rid, now, message, code) for rid in ids])
    return len(ids)
