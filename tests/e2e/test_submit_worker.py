"""`submit` through the agent's submission worker (backend/agentlink/handoff.py, backend/agent/submit_worker.py).

With the agent up, `dlaas-tui submit` hands its request to a worker the agent starts; the worker
records exactly what an in-process submit records, words its errors the same, serves only its own
home, exits when idle, and when a worker dies before it answers, the CLI finds out by the request id
whether it recorded the submit (then those are the runs) or not (then the CLI submits it itself), so a
submit is made exactly once.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from backend import clock
from backend.ledger import db

from .local_helpers import (
    TINY, WAIT_S, agent_pid, manifest, runs_json, seed_home, stop_everything, submit_worker_pids, wait_for)

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
SAME = ("name", "experiment", "profile", "state", "priority", "prio", "gpus", "learners", "gpu_type", "params",
        "results_bucket", "manifest_text", "metric_goal", "error_code")
# What a run's document says about its place in the queue (the second run is behind the first).
QUEUE_DEPENDENT = ("id", "submitted_at", "queue_position", "eta", "message")


@pytest.fixture
def home(dlaas_home: Path):
    seed_home(dlaas_home, "[profiles.local]\ncpu_slots = 2\n[profiles.lab]\ncpu_slots = 1\n"
                          "[profiles.tight]\ncpu_slots = 1\nbudget = { daily_usd = 0.01 }\n[prices]\ncpu = 360.0\n")
    yield dlaas_home
    stop_everything(dlaas_home)


def _log(home: Path) -> str:
    try:
        return (home / "state" / "agent.log").read_text()
    except OSError:
        return ""


def _row(home: Path, run_id: str) -> tuple[dict, list]:
    conn = db.connect(home / "state" / "state.db")
    try:
        row = db.get_row(conn, run_id)
        events = [(e["state"], e["message"], e["error_code"]) for e in db.events(conn, run_id)]
    finally:
        conn.close()
    return row, events


def _start_agent(cli, **env: str) -> int:
    res = cli("agent", "start", env=env)
    assert res.returncode == 0, res.stderr
    return int(res.stdout.split()[-1])


def test_the_worker_records_what_an_in_process_submit_records(home, tmp_path, cli):
    path = manifest(tmp_path, "same", command="true")
    first = cli("submit", str(path), "--hold", "--json")  # no agent yet: this process submits (and starts it)
    assert first.returncode == 0, first.stderr
    mine = json.loads(first.stdout)[0]
    pid = _start_agent(cli)
    assert mine["id"] not in _log(home)
    second = cli("submit", str(path), "--hold", "--json")
    assert second.returncode == 0, second.stderr
    theirs = json.loads(second.stdout)[0]
    assert f"submitted {theirs['id']}" in _log(home)  # the worker took it
    assert submit_worker_pids(pid)
    assert set(theirs) == set(mine)
    assert {k: v for k, v in theirs.items() if k not in QUEUE_DEPENDENT} == \
           {k: v for k, v in mine.items() if k not in QUEUE_DEPENDENT}
    (a, a_events), (b, b_events) = _row(home, mine["id"]), _row(home, theirs["id"])
    assert {k: a[k] for k in SAME} == {k: b[k] for k in SAME}
    own = ("model_key", "request_id")  # each submit's own (request_id: the CLI's, whoever records)
    spec = {k: v for k, v in a["spec"].items() if k not in own}
    assert spec == {k: v for k, v in b["spec"].items() if k not in own}
    assert len({a["spec"]["request_id"], b["spec"]["request_id"]}) == 2
    # The request id is never shown: not in `runs --json`, `show`, or `show --json`.
    for rid in (mine["id"], theirs["id"]):
        request_id = _row(home, rid)[0]["spec"]["request_id"]
        shown = [cli("runs", "--json"), cli("show", rid), cli("show", rid, "--json")]
        assert all(r.returncode == 0 for r in shown), [r.stderr for r in shown]
        assert not any(request_id in r.stdout + r.stderr for r in shown)
    assert b["spec"]["model_key"] == f"{theirs['id']}/_submitted_code/model.zip"
    assert (home / "store" / "tiny-results" / b["spec"]["model_key"]).is_file()
    assert a_events == b_events
    # `--after @` names the worker's submission, as the last one from this home
    after = cli("submit", str(path), "--after", "@", "--hold")
    assert after.returncode == 0, after.stderr
    assert _row(home, after.stdout.strip())[0]["spec"]["depends_on"] == [theirs["id"]]


def test_errors_read_word_for_word_as_in_process(home, tmp_path, cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text(manifest(tmp_path, "bad").read_text().replace("name: bad", "name: bad\nlearners: many"))
    (tmp_path / "model").symlink_to(TINY / "model", target_is_directory=True)

    def submit(*args: str):
        # From the manifest's folder with a relative path: the FILE:LINE:COL names the file as typed.
        return subprocess.run([sys.executable, "-m", "dlaas_tui", *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=120)

    cases = [("submit", "bad.yaml", "--model", "model"), ("submit", "bad.yaml", "--model", "nowhere"),
             ("--read-only", "submit", str(manifest(tmp_path, "ro"))),
             ("submit", str(manifest(tmp_path, "ghost")), "--after", "training-nosuchxx"),
             ("-p", "tight", "submit", str(manifest(tmp_path, "dear", max_duration="1h")))]
    before = []
    for args in cases:  # each in the CLI's own process: a submit may start the agent, stopped here
        assert agent_pid(home) is None
        before.append(submit(*args))
        stop_everything(home)
    _start_agent(cli)
    after = [submit(*args) for args in cases]
    assert "submission worker" in _log(home)
    for args, old, new in zip(cases, before, after, strict=True):
        assert (new.returncode, new.stdout, new.stderr) == (old.returncode, old.stdout, old.stderr), args
        assert old.returncode in (1, 2) and old.stderr.startswith("dlaas-tui: ") and "Traceback" not in old.stderr
    assert before[0].stderr.startswith("dlaas-tui: bad.yaml:") and before[0].returncode == 2
    assert "read-only" in before[2].stderr
    assert "over the daily budget" in before[4].stderr and before[4].returncode == 2
    assert runs_json(cli) == []


def test_the_worker_takes_the_clis_profile_and_clock(home, tmp_path, cli):
    _start_agent(cli)
    shifted = {"DLAAS_CLOCK_SHIFT": "400d"}
    res = cli("-p", "lab", "submit", str(manifest(tmp_path, "later")), "--hold", env=shifted)
    assert res.returncode == 0, res.stderr
    rid = res.stdout.strip()
    assert f"submitted {rid}" in _log(home)
    row, _ = _row(home, rid)
    assert row["profile"] == "lab"
    assert abs(row["submitted_at"] - (clock.machine_time() + 400 * 86400)) < 3600
    res = cli("submit", str(manifest(tmp_path, "now")), "--hold", env={"DLAAS_CLOCK_SHIFT": "0", "DLAAS_PROFILE": "lab"})
    row, _ = _row(home, res.stdout.strip())
    assert row["profile"] == "lab" and abs(row["submitted_at"] - clock.machine_time()) < 3600


def test_a_request_of_another_home_is_never_served(home, tmp_path, cli):
    from backend.agentlink.handoff import hand_off

    _start_agent(cli)
    other = tmp_path / "other-home"
    seed_home(other, "[profiles.local]\ncpu_slots = 1\n")
    path = manifest(tmp_path, "stray")
    request = {"home": str(home / "state"), "code": str(REPO / "backend"), "python": sys.executable,
               "env": {**os.environ, "DLAAS_HOME": str(home)}, "cwd": str(tmp_path), "umask": 0o022, "clock_shift": 0.0,
               "profile": "local", "read_only": False, "manifests": [str(path)], "model": None, "name": None,
               "experiment": None, "after": [], "hold": True, "begin_at": None}
    assert hand_off(home / "state", {**request, "home": str(other / "state")}) is None
    assert hand_off(home / "state", {**request, "env": {**os.environ, "DLAAS_HOME": str(other)}}) is None
    assert hand_off(home / "state", {**request, "python": "/usr/bin/python-other"}) is None
    assert runs_json(cli) == [] and not (other / "state" / "state.db").exists()
    docs = hand_off(home / "state", request)  # the same request from its own home is served
    assert docs is not None and [r["id"] for r in runs_json(cli)] == [docs[0]["id"]]


def test_no_agent_or_a_dead_one_means_the_cli_submits_itself(home, tmp_path, cli):
    res = cli("submit", str(manifest(tmp_path, "cold")))
    assert res.returncode == 0, res.stderr
    pid = _start_agent(cli)
    assert (home / "state" / "submit.sock").exists()
    os.kill(pid, signal.SIGKILL)  # its socket file stays behind, with nobody listening
    wait_for(lambda: agent_pid(home) is None)
    assert (home / "state" / "submit.sock").exists()
    res = cli("submit", str(manifest(tmp_path, "stale")))
    assert res.returncode == 0, res.stderr
    assert len(runs_json(cli)) == 2


def test_an_idle_worker_exits_and_the_next_submit_starts_another(home, tmp_path, cli):
    pid = _start_agent(cli, DLAAS_SUBMIT_WORKER_IDLE_S="1")
    res = cli("submit", str(manifest(tmp_path, "one")))
    assert res.returncode == 0, res.stderr
    assert f"submitted {res.stdout.strip()}" in _log(home)
    wait_for(lambda: "idle for 1 s, exiting" in _log(home))
    wait_for(lambda: not submit_worker_pids(pid))
    res = cli("submit", str(manifest(tmp_path, "two")))
    assert res.returncode == 0, res.stderr
    assert f"submitted {res.stdout.strip()}" in _log(home)
    assert _log(home).count("submission worker") >= 3  # started, idle exit, started again
    cli("agent", "stop")
    wait_for(lambda: not submit_worker_pids(pid))


def _blocked_submit(home: Path, tmp_path: Path, pid: int) -> tuple[subprocess.Popen, int, Path]:
    """A submit whose manifest is a FIFO: the worker blocks reading it until the test writes."""
    fifo = tmp_path / "slow.yaml"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "dlaas_tui", "submit", str(fifo), "--model", str(TINY / "model")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    return proc, wait_for(lambda: _writer(fifo)), fifo


def _holds_open(pid: int, path: Path) -> bool:
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == str(path):
                return True
        except OSError:
            continue
    return False


def _where(pid: int, home: Path) -> str:
    """A worker's state, kernel wait, open files and the agent's log, for a failure message."""
    proc = Path(f"/proc/{pid}")
    try:
        state = next(ln for ln in (proc / "status").read_text().splitlines() if ln.startswith("State:"))
        wchan = (proc / "wchan").read_text()
        files = sorted(os.readlink(fd) for fd in (proc / "fd").iterdir())
    except (OSError, StopIteration) as exc:
        state, wchan, files = f"gone ({exc})", "-", []
    return f"worker {pid}: {state}, waiting in {wchan}, files {files}\nagent.log:\n{_log(home)[-4000:]}"


def _writer(fifo: Path) -> int | None:
    try:  # succeeds once a reader (the worker, reading the manifest) has the FIFO open
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return None


def _feed(proc: subprocess.Popen, fifo: Path, text: str) -> bool:
    """Give `text` to `proc`'s next read of the FIFO (one open, read to its end, then closed by us);
    False when `proc` ended instead."""
    def ended() -> bool:
        return proc.poll() is not None

    def reading() -> bool:
        try:
            return _holds_open(proc.pid, fifo)
        except OSError:
            return False

    wait_for(lambda: ended() or not reading())  # its earlier read of it is over
    fd = wait_for(lambda: ended() or _writer(fifo))  # opens once it opens the FIFO to read again
    if fd is True:
        return False
    try:
        # Written once its end shows in its fd table: until then a writer could still meet its
        # earlier open (see test_a_cli_gone_before_the_runs_are_recorded_records_nothing).
        wait_for(lambda: ended() or reading())
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return True


def test_a_worker_that_dies_before_recording_leaves_the_submit_to_the_cli_which_makes_it_once(home, tmp_path, cli):
    pid = _start_agent(cli)
    text = manifest(tmp_path, "once").read_text()
    proc, fd, fifo = _blocked_submit(home, tmp_path, pid)
    try:
        workers = submit_worker_pids(pid)
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGKILL)  # while it waits for the manifest: nothing recorded
        os.close(fd)
        # Once the worker is gone and the ledger has nothing of this submit, the CLI submits it itself:
        # it reads the manifest now, twice (to parse it, and to keep its text).
        assert _feed(proc, fifo, text) and _feed(proc, fifo, text)
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "ended before it recorded this submit" in err and "submitting it here" in err
    rid = out.strip()
    assert [r["id"] for r in runs_json(cli)] == [rid]  # made once: by the CLI, not by the dead worker
    assert len(_row(home, rid)[0]["spec"]["request_id"]) == 24
    wait_for(lambda: "submission worker" in _log(home) and "exited with status -9" in _log(home))
    # Meanwhile submits are turned away by the agent, and this process submits them itself.
    res = cli("submit", str(manifest(tmp_path, "after-crash")))
    assert res.returncode == 0, res.stderr
    assert sorted(r["id"] for r in runs_json(cli)) == sorted([rid, res.stdout.strip()])


# A stand-in for the submission worker, for what the real one cannot be made to do on cue: it takes
# over the home's submit.sock from the agent (as an agent starting takes it over), takes one request
# (printing its request id), answers ready with its pid, reads "go", records two held runs like a
# sweep's, `training-<prefix>standin1` and 2, with that request id (or nothing), and then, without
# answering, exits or closes the connection and stays until it is killed.
STAND_IN = """
import json, os, socket, sys
from backend import clock
from backend.agentlink.control import submit_sock_path
from backend.facade import get_paths
from backend.ledger import db

record, linger, prefix = sys.argv[1] == "record", sys.argv[2] == "linger", sys.argv[3]
state = get_paths().state_dir
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
submit_sock_path(state).unlink(missing_ok=True)
sock.bind(str(submit_sock_path(state)))
sock.listen(1)
print("listening", flush=True)
conn, _ = sock.accept()
reader = conn.makefile("rb")
req = json.loads(reader.readline())
print(req["request_id"], flush=True)
conn.sendall(json.dumps({"ready": True, "pid": os.getpid()}).encode() + b"\\n")
assert reader.readline() == b"go\\n"
if record:
    ledger = db.connect(state / "state.db")
    now = clock.time()
    with db.write(ledger):
        seq = db.next_seq(ledger)
        for i in (1, 2):
            db.insert_run(ledger, {
                "id": f"training-{prefix}standin{i}", "name": f"stand-in-{i}", "profile": "local", "state": "QUEUED",
                "priority": "normal", "prio": 0, "submitted_at": now + i * 1e-6, "gpus": 0, "learners": 1,
                "experiment": "stand-in", "params": {"lr": i}, "results_bucket": "tiny-results",
                "spec": {"command": "true", "manifest_name": "stand-in", "request_id": req["request_id"],
                         "wait": {"hold": True}}}, seq)
    ledger.close()
print("recorded" if record else "nothing", flush=True)
if linger:
    conn.shutdown(socket.SHUT_RDWR)  # closed for the CLI (its makefile keeps the fd itself open here)
    sys.stdin.read()  # until the test kills it
os._exit(0)
"""


@pytest.fixture
def stand_in(home):
    """Start the stand-in worker (record or not, exit or linger) with the agent up (so that nothing
    starts one that would take submit.sock back); stopped by pid after the test."""
    started: list[subprocess.Popen] = []
    res = subprocess.run([sys.executable, "-m", "dlaas_tui", "agent", "start"], capture_output=True, text=True,
                         timeout=WAIT_S, cwd=REPO)
    assert res.returncode == 0, res.stderr

    def start(record: bool, linger: bool, prefix: str = "") -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", STAND_IN, "record" if record else "none",
                                 "linger" if linger else "exit", prefix], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, cwd=REPO)
        started.append(proc)
        assert proc.stdout.readline() == "listening\n"
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_a_worker_that_records_and_dies_unanswered_gives_the_cli_its_runs_not_a_second_submit(home, tmp_path, cli,
                                                                                            stand_in):
    worker = stand_in(record=True, linger=False)
    (home / "state" / "last-submit.json").unlink(missing_ok=True)  # as if it died before noting it
    res = cli("submit", str(manifest(tmp_path, "lost")), "--hold")
    request_id = worker.stdout.readline().strip()
    assert worker.stdout.readline() == "recorded\n" and worker.wait(timeout=WAIT_S) == 0
    assert res.returncode == 0, res.stderr
    assert "recorded this submit and ended before it answered" in res.stderr
    ids = ["training-standin1", "training-standin2"]
    assert res.stdout.split() == ids  # its runs, in the order it recorded them
    assert sorted(r["id"] for r in runs_json(cli)) == ids  # and nothing submitted a second time
    assert len(request_id) == 24 and int(request_id, 16) >= 0
    assert {_row(home, rid)[0]["spec"]["request_id"] for rid in ids} == {request_id}
    assert json.loads((home / "state" / "last-submit.json").read_text()) == ids
    # With --json: the documents a worker's answer carries, each run's to_json as `runs --json` has it.
    stand_in(record=True, linger=False, prefix="j")
    res = cli("submit", str(manifest(tmp_path, "lost-json")), "--hold", "--json")
    assert res.returncode == 0, res.stderr
    docs = json.loads(res.stdout)
    listed = {r["id"]: r for r in runs_json(cli)}
    assert [d["id"] for d in docs] == ["training-jstandin1", "training-jstandin2"] and len(listed) == 4
    for doc in docs:
        assert set(doc) == set(listed[doc["id"]])
        assert {k: doc[k] for k in ("name", "state", "params", "submitted_at")} == \
               {k: listed[doc["id"]][k] for k in ("name", "state", "params", "submitted_at")}


def test_hand_off_after_a_lost_answer_leaves_to_the_cli_only_what_is_known_not_recorded(home, tmp_path, monkeypatch,
                                                                                         stand_in):
    from backend.agentlink import handoff
    from backend.errors import EngineError

    from .local_helpers import engine

    request = {"home": str(home / "state"), "code": str(REPO / "backend"), "python": sys.executable,
               "env": dict(os.environ), "cwd": str(tmp_path), "umask": 0o022, "clock_shift": 0.0,
               "profile": "local", "read_only": False, "manifests": [str(manifest(tmp_path, "direct"))],
               "model": None, "name": None, "experiment": None, "after": [], "hold": True, "begin_at": None}

    def recorded(request_id: str) -> list[dict]:
        eng = engine()
        try:
            return [r.to_json() for r in eng.recorded_submit(request_id)]
        finally:
            eng.close()

    monkeypatch.setattr(handoff, "GONE_S", 0.5)  # for the two that stay: the real wait is 10 s
    # Gone (exited, not yet reaped by its parent, this test), nothing recorded: None, the caller
    # submits it itself.
    stand_in(record=False, linger=False)
    assert handoff.hand_off(home / "state", {**request, "request_id": "a" * 24}, recorded=recorded) is None
    # Still there after it closed the connection, but it had recorded the submit: its runs.
    stand_in(record=True, linger=True)
    docs = handoff.hand_off(home / "state", {**request, "request_id": "b" * 24}, recorded=recorded)
    assert [d["id"] for d in docs] == ["training-standin1", "training-standin2"]
    # Still there, nothing recorded: it may still record, so nothing is retried and the CLI says so.
    lingering = stand_in(record=False, linger=True)
    with pytest.raises(EngineError, match=f"its process {lingering.pid} was still there"):
        handoff.hand_off(home / "state", {**request, "request_id": "c" * 24}, recorded=recorded)
    assert lingering.poll() is None
    # Without a request id nothing can be looked up: reported, not retried.
    stand_in(record=False, linger=False)
    with pytest.raises(EngineError, match="not retried"):
        handoff.hand_off(home / "state", {**request, "request_id": None}, recorded=recorded)
    assert sorted(r["id"] for r in recorded("b" * 24)) == ["training-standin1", "training-standin2"]


def test_a_cli_gone_before_the_runs_are_recorded_records_nothing(home, tmp_path, cli):
    pid = _start_agent(cli)
    text = manifest(tmp_path, "gone").read_text()
    proc, fd, fifo = _blocked_submit(home, tmp_path, pid)
    worker = submit_worker_pids(pid)[0]
    try:
        # Our writer's open returns once the worker waits in its own, but the worker's end shows in its
        # fd table only when it runs again: until then "not open" could not tell "not yet" from "done"
        # below, and a loaded machine would feed the first read the text twice.
        wait_for(lambda: _holds_open(worker, fifo))
        proc.kill()  # Ctrl-C, or a closed terminal: the CLI is gone while the worker reads the manifest
        proc.wait()
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    # The manifest is read twice (to parse it, and to keep its text): once the worker has closed the
    # FIFO after the first read, the next writer feeds the second.
    wait_for(lambda: not _holds_open(worker, fifo))
    fd = wait_for(lambda: _writer(fifo))
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    try:
        wait_for(lambda: "abandoned by its client" in _log(home))
    except AssertionError:  # say where the worker stands: this once timed out on a loaded machine
        raise AssertionError(_where(worker, home)) from None
    assert runs_json(cli) == []
    assert submit_worker_pids(pid)  # it goes on serving
    res = cli("submit", str(manifest(tmp_path, "next")))
    assert res.returncode == 0 and f"submitted {res.stdout.strip()}" in _log(home)
