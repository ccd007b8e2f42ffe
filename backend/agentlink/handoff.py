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
                    clock shift, profile, and the submit's arguments as typed
    worker -> CLI   {"ready": true}, or {"ready": false, "why": ...} when it will not serve it
                    (another home, another checkout or python, another engine): nothing was done
    CLI -> worker   "go": from here on the CLI never submits it itself
    worker -> CLI   {"runs": [...]} (each run's to_json), {"error": ...} (the error the CLI prints,
                    word for word, and its exit code), or {"internal": ...} (a bug)

Until the CLI says "go" it may give up (no agent, no socket, no worker ready within `READY_S`) and
submit in-process as before, and the worker, finding the connection closed, drops the request:
whichever way it goes, a submission is recorded once. After "go" the CLI waits for the answer; a
worker that ends without one (killed, crashed) is reported as such and nothing is retried, since
it may have recorded the runs before it ended. A CLI that goes away after "go" (Ctrl-C) abandons
the submit if the worker has not recorded it yet: the worker looks just before it records.
"""
from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from ..errors import DlaasError, EngineError
from .control import submit_sock_path

VERSION = 1
IDLE_S = 60.0  # a worker with no request for this long exits (it starts again on the next submit)
IDLE_ENV = "DLAAS_SUBMIT_WORKER_IDLE_S"  # overrides IDLE_S, in the agent's environment (tests)
READY_S = 10.0  # how long a CLI waits for the worker to take its request before submitting itself
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


def lost_answer(state_dir: Path) -> EngineError:
    return EngineError(
        "the agent's submission worker ended before it answered (see "
        f"{state_dir / 'agent.log'}); the submit was not retried, so it is recorded once or not at "
        "all: `dlaas-tui runs` shows which")


# -- the CLI's side -------------------------------------------------------------------------------
def hand_off(state_dir: Path, request: dict[str, Any], ready_s: float = READY_S) -> list[dict] | None:
    """Hand a submit to the agent's worker. Returns the runs' JSON documents; raises the error the
    worker met (RemoteError, or EngineError when it ended without answering); None when the request
    was not taken (no agent, no worker ready in time, a worker that will not serve it): the caller
    submits it itself, and the worker will not."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            s.settimeout(ready_s)
            s.connect(str(submit_sock_path(state_dir)))
            s.sendall(json.dumps({"v": VERSION, **request}).encode() + b"\n")
            reader = s.makefile("rb")
            line = reader.readline(65536)
            if not line or not json.loads(line).get("ready"):
                return None
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
        raise lost_answer(state_dir)
    if "runs" in answer:
        return list(answer["runs"])
    if "error" in answer:
        raise RemoteError(str(answer["error"]["text"]), int(answer["error"]["exit_code"]))
    internal = answer.get("internal") or {}
    if os.environ.get("DLAAS_DEBUG") and internal.get("traceback"):
        sys.stderr.write(internal["traceback"])
    raise RemoteError(f"internal error: {internal.get('type', 'Exception')}: {internal.get('message', '')} "
                      "(run again with DLAAS_DEBUG=1 for the traceback)", 1)
