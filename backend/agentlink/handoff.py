"""`submit` through the agent: the CLI hands its request to a submission worker the agent keeps.

Validating a manifest takes pydantic and the manifest models (~0.2-0.3 s to import); a `submit` that
imported them in every CLI process could not finish in 0.15 s, and the agent cannot import them
itself without growing ~17 MB for good. So the agent listens on `submit.sock` (a stream socket next
to its wake-up socket) and, when a connection waits and no worker is alive, starts a **submission
worker** (backend/agent/submit_worker.py): a child that imports those modules once, accepts the connections
itself, runs the engine's own submit for each (same validation, errors, rows and events as in the
CLI) and exits after `IDLE_S` seconds without a request, or when the agent stops.

The handoff, one request per connection, one JSON line each way:

    CLI -> worker   the request: the CLI's home, code, python, environment, working folder,
                    clock shift, profile, the submit's arguments as typed, and a random request id
    worker -> CLI   {"ready": true, "pid": ...} (the worker's own pid), or {"ready": false, "why": ...}
                    when it will not serve it (another home, another checkout or python, another
                    engine): nothing was done
    CLI -> worker   "go": from here on the CLI submits it itself only once it knows the worker
                    recorded nothing and never will
    worker -> CLI   {"runs": [...]} (each run's to_json), {"error": ...} (the error the CLI prints,
                    word for word, and its exit code), or {"internal": ...} (a bug)

Until the CLI says "go" it may give up (no agent, no socket, no worker ready within `READY_S`) and
submit in-process as before, and the worker, finding the connection closed, drops the request:
whichever way it goes, a submission is recorded once. The worker records the request id in each
run's spec, in the one transaction that inserts all the runs of the submit. After "go" the CLI
waits for the answer; when the worker ends without one (killed, crashed), the CLI waits (up to
`GONE_S`) for the worker's process to be gone, since a process that is gone records nothing more,
then looks the request id up in the ledger (`LocalEngine.recorded_submit`):

- runs found: the worker recorded the submit before it ended; the CLI answers with those runs, as
  the worker would have, and says so on stderr;
- none found: nothing was recorded, and nothing will be: the CLI submits it itself (hand_off
  returns None), so the submit is made exactly once;
- none found and the worker still alive after `GONE_S` (it should not be): the CLI cannot know
  whether it will still record, reports that (`lost_answer`) and retries nothing.

The worker's pid comes in its "ready" line: the socket's SO_PEERCRED names the process that called
listen(), which is the agent, not the worker that accepted the connection. A CLI that goes away
after "go" (Ctrl-C) abandons the submit if the worker has not recorded it yet: the worker looks
just before it records.
"""
from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Callable

from ..errors import DlaasError, EngineError
from .control import submit_sock_path

VERSION = 1
IDLE_S = 60.0  # a worker with no request for this long exits (it starts again on the next submit)
IDLE_ENV = "DLAAS_SUBMIT_WORKER_IDLE_S"  # overrides IDLE_S, in the agent's environment (tests)
READY_S = 10.0  # how long a CLI waits for the worker to take its request before submitting itself
GONE_S = 10.0  # how long a CLI that lost its answer waits for the worker's process to be gone
COOL_S = 30.0  # after a worker crashed, connections are turned away (CLIs submit themselves) this long
LISTEN_FD_ENV = "DLAAS_SUBMIT_LISTEN_FD"
LIFELINE_FD_ENV = "DLAAS_SUBMIT_LIFELINE_FD"
MAX_REQUEST = 8 * 1024 * 1024


def idle_seconds() -> float:
    try:
        return float(os.environ.get(IDLE_ENV) or IDLE_S)
    except ValueError:
        return IDLE_S


class RemoteError(DlaasError):
    """An error the submission worker met, as the CLI would have printed it: `str()` is the text and
    `exit_code` the code of the error the worker caught."""

    def __init__(self, text: str, exit_code: int) -> None:
        super().__init__(text)
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


def lost_answer(state_dir: Path, why: str = "") -> EngineError:
    return EngineError(
        f"the agent's submission worker ended before it answered{why} (see {state_dir / 'agent.log'}); "
        "the submit was not retried, so it is recorded once or not at all: `dlaas-tui runs` shows which")


# -- the CLI's side -------------------------------------------------------------------------------
def hand_off(state_dir: Path, request: dict[str, Any], ready_s: float = READY_S,
             recorded: Callable[[str], list[dict]] | None = None) -> list[dict] | None:
    """Hand a submit to the agent's worker. Returns the runs' JSON documents; raises the error the
    worker met (RemoteError); None when the request was not taken (no agent, no worker ready in
    time, a worker that will not serve it), or was taken by a worker that ended before it recorded
    anything: the caller submits it itself, and the worker will not.

    `recorded(request_id)` gives the JSON documents of the runs recorded with `request["request_id"]`
    ([] if none): what a worker that ended without answering had done. Without it (or without a
    request id) such an end raises `lost_answer`, as it does when the worker outlives `GONE_S`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    worker: int | None = None
    pidfd: int | None = None
    try:
        try:
            try:
                s.settimeout(ready_s)
                s.connect(str(submit_sock_path(state_dir)))
                s.sendall(json.dumps({"v": VERSION, **request}).encode() + b"\n")
                reader = s.makefile("rb")
                line = reader.readline(65536)
                ready = json.loads(line) if line else None
                if not isinstance(ready, dict) or not ready.get("ready"):
                    return None
                worker = ready.get("pid") if type(ready.get("pid")) is int else None
                pidfd = _pidfd(worker)  # taken while it is surely the worker (it just answered)
                s.sendall(b"go\n")  # a failure here: the worker was gone before it could read it
            except (OSError, ValueError, AttributeError):
                return None
            try:
                s.settimeout(None)
                line = reader.readline()
                answer = json.loads(line) if line else None
            except (OSError, ValueError):
                answer = None
        finally:
            s.close()
        if not isinstance(answer, dict):
            return _answer_lost(state_dir, request.get("request_id"), worker, pidfd, recorded)
    finally:
        if pidfd is not None:
            os.close(pidfd)
    if "runs" in answer:
        return list(answer["runs"])
    if "error" in answer:
        raise RemoteError(str(answer["error"]["text"]), int(answer["error"]["exit_code"]))
    internal = answer.get("internal") or {}
    if os.environ.get("DLAAS_DEBUG") and internal.get("traceback"):
        sys.stderr.write(internal["traceback"])
    raise RemoteError(f"internal error: {internal.get('type', 'Exception')}: {internal.get('message', '')} "
                      "(run again with DLAAS_DEBUG=1 for the traceback)", 1)


def _answer_lost(state_dir: Path, request_id: Any, worker: int | None, pidfd: int | None,
                 recorded: Callable[[str], list[dict]] | None) -> list[dict] | None:
    """The worker ended after "go" without answering: wait for it to be gone, then the ledger says
    whether it recorded the submit (its runs) or not (None: the caller submits it)."""
    gone = worker is not None and _wait_gone(worker, pidfd, GONE_S)
    if not request_id or recorded is None:
        raise lost_answer(state_dir)
    try:
        docs = recorded(str(request_id))
    except Exception as exc:  # a ledger that cannot be read now: nothing is known, nothing retried
        raise lost_answer(state_dir, f", and whether it recorded the submit could not be read: {exc}") from None
    if docs:
        sys.stderr.write(f"dlaas-tui: the agent's submission worker recorded this submit and ended before "
                         f"it answered (see {state_dir / 'agent.log'})\n")
        return docs
    if gone:
        sys.stderr.write(f"dlaas-tui: the agent's submission worker ended before it recorded this submit (see "
                         f"{state_dir / 'agent.log'}); submitting it here\n")
        return None
    if worker is None:
        raise lost_answer(state_dir, " and did not say its pid; it had recorded nothing yet")
    raise lost_answer(state_dir, f"; it had recorded nothing, but its process {worker} was still there after "
                                 f"{GONE_S:.0f} s and may still record it")


def _pidfd(pid: int | None) -> int | None:
    """A pidfd for `pid` (readable once it has exited, whoever reaps it), or None: no pid, one
    already gone, or no pidfd_open here (then `_wait_gone` polls the pid)."""
    if pid is None or pid <= 0:
        return None
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


def _wait_gone(pid: int, pidfd: int | None, limit: float) -> bool:
    """Whether process `pid` has ended within `limit` seconds."""
    if pidfd is not None:
        import select

        return bool(select.select([pidfd], [], [], limit)[0])
    import time

    deadline = time.monotonic() + limit
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # another user's process has its number now: ours is gone
            return True
        if _zombie(pid):  # exited, not yet reaped by the agent
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[:1] == [b"Z"]
    except OSError:
        return False
