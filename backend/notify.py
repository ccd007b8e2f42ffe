"""Word when a run or a whole sweep ends, sent by the agent (so it works with the TUI closed).

The agent reads its ledgers (the local engine's database and each kubernetes profile's) for new
terminal events, after a cursor kept in the ledger itself (`counter` key `notified`), so a restarted
agent neither repeats nor, for runs it sees end, misses one. A sweep (an experiment) has ended when
its last active run ends. What is found goes to the config's `[notify]` table:

- `command`: run WITHOUT a shell (a string is split as a shell would split it, but nothing in it is
  expanded), the run's details in `DLAAS_*` environment variables; run data never reaches a command
  line, so a run named `$(rm -rf ~)` is only ever a value.
- `webhook`: an HTTP POST of the same details as JSON.

Both are bounded by `timeout_seconds` and happen on one sender thread; a failure is logged, never
raised into the agent's loop.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .runs import TERMINAL_STATES, iso, utcnow

log = logging.getLogger("dlaas.agent")
CURSOR_KEY = "notified"
QUEUE_MAX = 1000
_TERMINAL = tuple(s.value for s in TERMINAL_STATES)


@dataclass(frozen=True)
class Ended:
    """One thing to tell: a run that ended (kind "run") or an experiment whose runs all ended ("sweep")."""

    kind: str
    profile: str
    state: str  # the run's; for a sweep COMPLETED when every run completed, else FAILED
    run_id: str = ""
    name: str = ""
    experiment: str | None = None
    error_code: str | None = None
    message: str = ""
    cost_usd: float | None = None
    states: dict[str, int] = field(default_factory=dict)  # a sweep's runs by final state
    runs: tuple[str, ...] = ()  # a sweep's run ids

    @property
    def title(self) -> str:
        if self.kind == "sweep":
            counts = ", ".join(f"{n} {s}" for s, n in sorted(self.states.items()))
            return f"sweep {self.experiment} ended: {counts}"
        return f"{self.run_id} ({self.name}) {self.state}" + (f" {self.error_code}" if self.error_code else "")

    def payload(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"event": f"{self.kind}.ended", "profile": self.profile, "state": self.state,
                               "experiment": self.experiment, "text": self.title, "sent_at": iso(utcnow())}
        if self.kind == "run":
            doc["run"] = {"id": self.run_id, "name": self.name, "state": self.state, "experiment": self.experiment,
                          "error_code": self.error_code, "message": self.message, "cost_usd": self.cost_usd}
        else:
            doc["sweep"] = {"experiment": self.experiment, "states": dict(self.states), "runs": list(self.runs)}
        return doc

    def env(self) -> dict[str, str]:
        env = {"DLAAS_EVENT": f"{self.kind}.ended", "DLAAS_PROFILE": self.profile, "DLAAS_STATE": self.state,
               "DLAAS_EXPERIMENT": self.experiment or "", "DLAAS_TEXT": self.title}
        if self.kind == "run":
            env.update(DLAAS_RUN_ID=self.run_id, DLAAS_RUN_NAME=self.name, DLAAS_RUN_STATE=self.state,
                       DLAAS_ERROR_CODE=self.error_code or "", DLAAS_MESSAGE=self.message,
                       DLAAS_COST_USD="" if self.cost_usd is None else f"{self.cost_usd:.6f}")
        else:
            env.update(DLAAS_SWEEP_RUNS=str(len(self.runs)),
                       DLAAS_SWEEP_STATES=" ".join(f"{s}={n}" for s, n in sorted(self.states.items())))
        # Environment values cannot hold NUL bytes; anything else is passed as it is (it is data).
        return {k: v.replace("\x00", "") for k, v in env.items()}


# -- delivering ----------------------------------------------------------------------------------------
def run_command(argv: list[str], ended: Ended, timeout: float) -> str | None:
    """Run the notify command; None when it exited 0, else what went wrong."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLAAS_")}
    env.update(ended.env())
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, shell=False, start_new_session=True)
    except OSError as exc:
        return f"notify command {argv[0]!r} could not start: {exc}"
    try:
        _out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Its own session: whatever it started goes with it.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.communicate()
        return f"notify command {argv[0]!r} ran past {timeout:g} s and was stopped"
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] if err else []
        return f"notify command {argv[0]!r} exited {proc.returncode}" + (f": {tail[0][:200]}" if tail else "")
    return None


def post_webhook(url: str, ended: Ended, timeout: float) -> str | None:
    """POST the JSON payload; None on a 2xx answer, else what went wrong."""
    import urllib.error
    import urllib.request

    body = json.dumps(ended.payload()).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "dlaas-tui-agent"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (the user's own URL)
            answer.read(65536)
            status = answer.status
    except urllib.error.HTTPError as exc:
        return f"webhook {url} answered {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"webhook {url} failed: {reason}"
    return None if 200 <= status < 300 else f"webhook {url} answered {status}"


def deliver(settings: Any, ended: Ended) -> list[str]:
    """Send one notice by every configured way; returns the failures (each is also logged)."""
    problems = []
    argv = settings.argv()
    if argv:
        problems.append(run_command(argv, ended, settings.timeout_seconds))
    if settings.webhook:
        problems.append(post_webhook(settings.webhook, ended, settings.timeout_seconds))
    problems = [p for p in problems if p]
    for p in problems:
        log.warning("notify (%s): %s", ended.title, p)
    return problems


class Sender:
    """One daemon thread that delivers notices in order, so a slow webhook never holds up the agent."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Any, Ended] | None] = queue.Queue(maxsize=QUEUE_MAX)
        self._thread = threading.Thread(target=self._loop, name="notify", daemon=True)
        self._thread.start()

    def submit(self, settings: Any, ended: Ended) -> None:
        try:
            self._queue.put_nowait((settings, ended))
        except queue.Full:
            log.warning("notify: %d notices waiting; dropped: %s", QUEUE_MAX, ended.title)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                deliver(*item)
            except Exception:  # never let one notice stop the others
                log.exception("notify failed")

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            return
        self._thread.join(timeout)


# -- finding what ended --------------------------------------------------------------------------------
class LedgerWatch:
    """New run and sweep ends in one ledger (the local database, or a kubernetes profile's)."""

    def __init__(self, path: Path) -> None:
        from .ledger import db

        self.path = path
        self.conn = db.connect(path)

    def close(self) -> None:
        self.conn.close()

    def _cursor(self) -> int | None:
        row = self.conn.execute("SELECT v FROM counter WHERE k = ?", (CURSOR_KEY,)).fetchone()
        return None if row is None else row[0]

    def _set_cursor(self, value: int) -> None:
        from .ledger import db

        with db.write(self.conn):
            self.conn.execute("INSERT OR REPLACE INTO counter (k, v) VALUES (?, ?)", (CURSOR_KEY, value))

    def poll(self, *, runs: bool = True, sweeps: bool = True) -> list[Ended]:
        top = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM run_events").fetchone()[0]
        cursor = self._cursor()
        if cursor is None or cursor > top:  # first look (or a ledger made anew): history is not news
            self._set_cursor(top)
            return []
        if top == cursor:
            return []
        last: dict[str, tuple[str, str | None, str]] = {}  # run -> its last state in this batch
        for run_id, state, code, message in self.conn.execute(
                "SELECT run_id, state, error_code, message FROM run_events WHERE id > ? AND id <= ? "
                "AND state IS NOT NULL ORDER BY id", (cursor, top)):
            last[run_id] = (state, code, message)
        out: list[Ended] = []
        touched: dict[str, str] = {}
        ended_now = [rid for rid, (state, _c, _m) in last.items() if state in _TERMINAL]  # ledger order
        for run_id in ended_now:
            state, code, message = last[run_id]
            row = self.conn.execute("SELECT name, experiment, profile, cost_micro, priced FROM runs WHERE id = ?",
                                    (run_id,)).fetchone()
            name, experiment, profile, cost, priced = row if row is not None else (run_id, None, "", None, 0)
            if runs:
                out.append(Ended("run", profile, state, run_id, name, experiment, code, message or "",
                                 cost / 1e6 if priced and cost is not None else None))
            if experiment:
                touched[experiment] = profile
        if sweeps:
            for experiment, profile in sorted(touched.items()):
                ended = self._sweep_end(experiment, profile, last)
                if ended is not None:
                    out.append(ended)
        self._set_cursor(top)
        return out

    def _sweep_end(self, experiment: str, profile: str, last: dict) -> Ended | None:
        states: dict[str, str] = {}
        for run_id, state in self.conn.execute("SELECT id, state FROM runs WHERE experiment = ?", (experiment,)):
            # the batch's own last word is newer than a row another writer has yet to update
            states[run_id] = last[run_id][0] if run_id in last else state
        if not states or any(s not in _TERMINAL for s in states.values()):
            return None
        counts: dict[str, int] = {}
        for s in states.values():
            counts[s] = counts.get(s, 0) + 1
        overall = "COMPLETED" if set(counts) == {"COMPLETED"} else "FAILED"
        return Ended("sweep", profile, overall, experiment=experiment, states=counts, runs=tuple(sorted(states)))


class EndNotices:
    """What the agent calls once a pass: watch every ledger of this home, send what ended."""

    def __init__(self, paths: Any) -> None:
        self.paths = paths
        self._watches: dict[Path, LedgerWatch] = {}
        self._sender: Sender | None = None

    def _ledgers(self) -> list[Path]:
        from .ledger.files import ledger_dir

        found = [Path(self.paths.db_file)]
        folder = ledger_dir(self.paths)
        if folder.is_dir():
            found += sorted(folder.glob("*.db"))
        return [p for p in found if p.exists()]

    def tick(self, settings: Any) -> list[Ended]:
        """Find what ended since the last pass and queue it for sending; returns it (for tests and logs)."""
        found: list[Ended] = []
        for path in self._ledgers():
            watch = self._watches.get(path)
            if watch is None:
                watch = self._watches[path] = LedgerWatch(path)
            try:
                found += watch.poll(runs=settings.runs, sweeps=settings.sweeps)
            except Exception:
                log.exception("notify: reading %s failed", path)
        if found and (settings.command or settings.webhook):
            if self._sender is None:
                self._sender = Sender()
            for ended in found:
                self._sender.submit(settings, ended)
        return found

    def stop(self) -> None:
        if self._sender is not None:
            self._sender.stop()
        for watch in self._watches.values():
            watch.close()
