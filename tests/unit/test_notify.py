"""[notify]: the config table, the command (a real script, no shell), the webhook (a real HTTP server
on 127.0.0.1 started and stopped here), and finding run and sweep ends in a real ledger."""
from __future__ import annotations

import json
import os
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from backend.config import parse_config
from backend.errors import ConfigError
from backend.notify import Ended, LedgerWatch, deliver, post_webhook, run_command
from backend.runs import RunState


class Hook:
    """An HTTP server on 127.0.0.1 that records POSTed JSON; `delay` makes it slow, `status` picks the answer."""

    def __init__(self, *, delay: float = 0.0, status: int = 200) -> None:
        self.got: list[dict] = []
        self.delay, self.status = delay, status
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.got.append({"path": self.path, "type": self.headers["Content-Type"], "json": json.loads(body)})
                if hook.delay:
                    time.sleep(hook.delay)
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def hook():
    server = Hook()
    yield server
    server.stop()


RUN = Ended("run", "local", "FAILED", "training-abcd1234", "digits $(touch pwned); `touch pwned2`", "exp-1",
            "C201", "learner 1 exited with 3", 0.0125)


def test_config_table_is_checked_with_close_matches():
    with pytest.raises(ConfigError, match=r"unknown key 'webhok' in \[notify\], did you mean 'webhook'"):
        parse_config('[notify]\nwebhok = "http://127.0.0.1:1/"')
    with pytest.raises(ConfigError, match="http:// or https://"):
        parse_config('[notify]\nwebhook = "file:///etc/passwd"')
    with pytest.raises(ConfigError, match="terminal"):
        parse_config('[notify]\nterminal = "loud"')
    cfg = parse_config('[notify]\ncommand = "notify-send \'run ended\'"\ntimeout_seconds = 3')
    assert cfg.notify.argv() == ["notify-send", "run ended"] and cfg.notify.timeout_seconds == 3
    assert parse_config('[notify]\ncommand = ["a b", "c"]').notify.argv() == ["a b", "c"]
    assert parse_config("").notify.command is None and parse_config("").notify.webhook is None


def test_webhook_receives_the_run_as_json(hook):
    assert post_webhook(hook.url, RUN, timeout=5) is None
    (got,) = hook.got
    assert got["path"] == "/hook" and got["type"] == "application/json"
    doc = got["json"]
    assert doc["event"] == "run.ended" and doc["state"] == "FAILED"
    assert doc["run"] == {"id": RUN.run_id, "name": RUN.name, "state": "FAILED", "experiment": "exp-1",
                          "error_code": "C201", "message": "learner 1 exited with 3", "cost_usd": 0.0125}


def test_webhook_failures_are_bounded_and_reported_not_raised(tmp_path, caplog):
    slow = Hook(delay=3.0)
    refusing = Hook(status=500)
    try:
        started = time.monotonic()
        problem = post_webhook(slow.url, RUN, timeout=0.5)
        assert problem and "timed out" in problem
        assert time.monotonic() - started < 2.5  # the timeout, not the server's delay
        assert post_webhook(refusing.url, RUN, timeout=5) == f"webhook {refusing.url} answered 500"
    finally:
        slow.stop()
        refusing.stop()
    # Nothing listens there any more: refused, logged by deliver, never raised.
    settings = parse_config(f'[notify]\nwebhook = "{refusing.url}"\ntimeout_seconds = 2').notify
    with caplog.at_level("WARNING", logger="dlaas.agent"):
        problems = deliver(settings, RUN)
    assert len(problems) == 1 and "failed" in problems[0]
    assert "notify" in caplog.text and refusing.url in caplog.text


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "on-end.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_command_gets_the_run_in_env_and_no_shell_sees_its_name(tmp_path):
    out = tmp_path / "seen.json"
    script = _script(tmp_path, f'cd "{tmp_path}"\n'
                     'printf \'{"id":"%s","state":"%s","name":"%s","event":"%s","arg":"%s"}\' '
                     f'"$DLAAS_RUN_ID" "$DLAAS_RUN_STATE" "$DLAAS_RUN_NAME" "$DLAAS_EVENT" "$1" > "{out}"\n')
    settings = parse_config(f'[notify]\ncommand = "{script} \'first arg\'"').notify
    assert deliver(settings, RUN) == []
    seen = json.loads(out.read_text())
    assert seen == {"id": RUN.run_id, "state": "FAILED", "name": RUN.name, "event": "run.ended", "arg": "first arg"}
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_command_failures_and_timeouts_are_reported(tmp_path):
    failing = _script(tmp_path, 'echo "no such channel" >&2\nexit 4\n')
    assert run_command([str(failing)], RUN, timeout=5) == f"notify command {str(failing)!r} exited 4: no such channel"
    slow = tmp_path / "slow.sh"
    pid_file = tmp_path / "child.pid"
    slow.write_text(f"#!/bin/sh\nsleep 30 &\necho $! > {pid_file}\nwait\n")  # a child of its own too
    slow.chmod(0o755)
    started = time.monotonic()
    assert "ran past 0.5 s" in run_command([str(slow)], RUN, timeout=0.5)
    assert time.monotonic() - started < 10
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)  # the whole group was stopped, not just the script
    assert "could not start" in run_command([str(tmp_path / "missing")], RUN, timeout=5)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _ledger(tmp_path: Path):
    from backend.ledger import db

    conn = db.connect(tmp_path / "dlaas.db")

    def add(run_id: str, experiment: str | None) -> None:
        with db.write(conn):
            db.insert_run(conn, {"id": run_id, "name": f"n-{run_id[-1]}", "experiment": experiment,
                                 "profile": "local", "state": "QUEUED", "priority": "normal", "prio": 0,
                                 "submitted_at": time.monotonic(), "gpus": 0, "learners": 1, "spec": {}},
                          db.next_seq(conn))

    def finish(run_id: str, state: RunState, code: str | None = None) -> None:
        for s in (RunState.PENDING, RunState.DOWNLOADING, RunState.PROCESSING, RunState.STORING):
            db.transition(conn, run_id, s)
        assert db.transition(conn, run_id, state, error_code=code, message="done")

    return conn, add, finish


def test_ledger_watch_finds_run_ends_then_the_sweeps_end(tmp_path):
    conn, add, finish = _ledger(tmp_path)
    add("training-old00001", None)
    finish("training-old00001", RunState.COMPLETED)
    watch = LedgerWatch(tmp_path / "dlaas.db")
    assert watch.poll() == []  # what ended before the first look is history
    add("training-swp00001", "sweep-a")
    add("training-swp00002", "sweep-a")
    add("training-solo0001", None)
    finish("training-swp00001", RunState.COMPLETED)
    finish("training-solo0001", RunState.FAILED, "C201")
    got = watch.poll()
    assert [(e.kind, e.run_id, e.state) for e in got] == [
        ("run", "training-swp00001", "COMPLETED"), ("run", "training-solo0001", "FAILED")]
    assert next(e for e in got if e.run_id == "training-solo0001").error_code == "C201"
    assert watch.poll() == []  # nothing new: nothing said twice
    finish("training-swp00002", RunState.COMPLETED)
    got = watch.poll()
    assert [(e.kind, e.state) for e in got] == [("run", "COMPLETED"), ("sweep", "COMPLETED")]
    sweep = got[1]
    assert sweep.experiment == "sweep-a" and sweep.states == {"COMPLETED": 2}
    assert sweep.runs == ("training-swp00001", "training-swp00002")
    assert sweep.env()["DLAAS_SWEEP_STATES"] == "COMPLETED=2" and sweep.payload()["event"] == "sweep.ended"
    # A fresh watcher (an agent restarted) goes on from the cursor kept in the ledger.
    watch.close()
    again = LedgerWatch(tmp_path / "dlaas.db")
    assert again.poll() == []
    again.close()
    conn.close()


def test_a_sweep_with_a_failure_ends_failed_and_runs_can_be_left_out(tmp_path):
    conn, add, finish = _ledger(tmp_path)
    watch = LedgerWatch(tmp_path / "dlaas.db")
    watch.poll()
    add("training-swp00001", "sweep-b")
    add("training-swp00002", "sweep-b")
    finish("training-swp00001", RunState.FAILED, "C201")
    finish("training-swp00002", RunState.COMPLETED)
    got = watch.poll(runs=False)
    assert [(e.kind, e.state, e.states) for e in got] == [("sweep", "FAILED", {"COMPLETED": 1, "FAILED": 1})]
    watch.close()
    conn.close()


def test_env_values_are_data(tmp_path):
    env = Ended("run", "p", "HALTED", "training-x", "a\x00b\nc").env()
    assert env["DLAAS_RUN_NAME"] == "ab\nc" and all("\x00" not in v for v in env.values())
    assert os.environ.get("DLAAS_RUN_ID") is None  # nothing leaks into the test's own environment


def test_kubernetes_ledgers_are_watched_the_same_way(tmp_path):
    """A kubernetes profile's ledger records the terminal event before it updates the run's row:
    the watcher believes the event, for the run and for its sweep."""
    from datetime import datetime, timezone

    from backend.engines.kubernetes.sqlite_ledger import SqliteLedger
    from backend.runs import Run, RunEvent

    ledger = SqliteLedger(tmp_path / "lab.db", "lab")
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for rid in ("training-k8s00001", "training-k8s00002"):
        ledger.put_run(Run(rid, f"trial-{rid[-1]}", RunState.PROCESSING, at, experiment="kx"))
    watch = LedgerWatch(tmp_path / "lab.db")
    assert watch.poll() == []
    ledger.record(RunEvent("training-k8s00001", at, RunState.COMPLETED))
    ledger.put_run(Run("training-k8s00001", "trial-1", RunState.COMPLETED, at, experiment="kx"))
    ledger.record(RunEvent("training-k8s00002", at, RunState.FAILED, "exit 3", "C201"))  # row not updated yet
    got = watch.poll()
    assert [(e.kind, e.run_id, e.state, e.profile) for e in got] == [
        ("run", "training-k8s00001", "COMPLETED", "lab"), ("run", "training-k8s00002", "FAILED", "lab"),
        ("sweep", "", "FAILED", "lab")]
    assert got[1].error_code == "C201" and got[1].message == "exit 3"
    sweep = [e for e in got if e.kind == "sweep"]
    assert len(sweep) == 1 and sweep[0].states == {"COMPLETED": 1, "FAILED": 1}
    watch.close()
    ledger.close()
