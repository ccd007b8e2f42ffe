"""The submission worker, `python -m backend.agent.submit_worker`: a program the agent starts
(backend/agentlink/handoff.py).

It imports what a submit needs (pydantic, the manifest models, YAML, SQLite) once, then accepts
connections on the agent's `submit.sock` and runs each request through the engine's own submit, as
the CLI would have in its own process: under the CLI's environment (DLAAS_HOME, DLAAS_PROFILE, the
fake-NVML and store settings), in its working folder (manifest paths and their FILE:LINE:COL errors
read as typed), with its umask and its clock shift, its profile and `--read-only`. It serves only requests of its
own home, checkout and python; it exits after `IDLE_S` seconds without a request, and when the agent
stops (its lifeline closes), once the request in hand is answered.
"""
from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import struct
import sys
import traceback
from pathlib import Path
from typing import Any

from ..agentlink.handoff import LIFELINE_FD_ENV, LISTEN_FD_ENV, MAX_REQUEST, idle_seconds

log = logging.getLogger("dlaas.submit")
ROOT = Path(__file__).resolve().parents[2]
CODE = str(ROOT / "backend")
READ_S = 10.0  # a client that connected sends its request (and its "go") at once
SEND_S = 30.0


class Declined(Exception):
    """This worker will not serve the request; the CLI submits it itself."""


class Abandoned(Exception):
    """The CLI went away after "go" and before anything was recorded: the submit is dropped."""


def _peer_uid(conn: socket.socket) -> int:
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)[1]


def _send(conn: socket.socket, obj: Any) -> None:
    conn.sendall(json.dumps(obj, default=str).encode() + b"\n")


def _readline(reader, limit: int) -> bytes:
    line = reader.readline(limit)
    if not line.endswith(b"\n"):
        raise Declined("incomplete request")
    return line


class Worker:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir  # the home this worker serves (the agent's)

    def prepare(self, req: dict[str, Any]):
        """Take on the CLI's environment and open its backend; Declined when this worker must not
        serve it (nothing has been done then)."""
        from backend import clock
        from backend.facade import get_paths, open_backend

        if req.get("v") != 1:
            raise Declined(f"protocol {req.get('v')!r}")
        if req.get("python") != sys.executable or req.get("code") != CODE:
            raise Declined(f"another python or checkout ({req.get('python')}, {req.get('code')})")
        if req.get("home") != str(self.state_dir):
            raise Declined(f"another home ({req.get('home')})")
        env = req.get("env")
        if not isinstance(env, dict):
            raise Declined("no environment")
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in env.items()})
        try:
            os.chdir(req["cwd"])
        except (OSError, KeyError, TypeError) as exc:
            raise Declined(f"working folder: {exc}") from None
        if not isinstance(req.get("umask"), int):
            raise Declined("no umask")
        os.umask(req["umask"])  # the files it writes (the stored code, buckets) get the CLI's mode
        if get_paths().state_dir != self.state_dir:
            raise Declined("the environment names another home")
        clock.set_clock(clock.SystemClock(float(req.get("clock_shift") or 0.0)))
        try:
            backend = open_backend(req.get("profile"), read_only=bool(req.get("read_only")))
        except Exception as exc:  # the CLI, opening it again, says what is wrong
            raise Declined(f"backend: {exc}") from None
        if backend.profile.scheduler != "local":
            backend.close()
            raise Declined(f"profile {backend.profile.name!r} is not a local one")
        return backend

    def submit(self, backend, req: dict[str, Any], conn: socket.socket) -> list[dict]:
        from backend.facade import SubmitRequest

        request = SubmitRequest(
            manifests=[Path(p) for p in req.get("manifests") or []],
            model=Path(req["model"]) if req.get("model") else None, name=req.get("name"),
            experiment=req.get("experiment"), dry_run=False, after=tuple(req.get("after") or ()),
            hold=bool(req.get("hold")), begin_at=req.get("begin_at"),
            request_id=str(req["request_id"]) if req.get("request_id") else None)

        def still_wanted() -> None:
            """Just before the runs are recorded: a CLI that went away (Ctrl-C) gets nothing recorded."""
            ready, _, _ = select.select([conn], [], [], 0)
            if not ready:
                return
            try:
                data = conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                raise Abandoned

        runs = backend.engine.submit_checked(request, before_record=still_wanted)
        return [r.to_json() for r in runs]

    def serve(self, conn: socket.socket) -> None:
        from backend.facade import DlaasError, explain_failure

        if _peer_uid(conn) != os.getuid():
            return
        conn.settimeout(READ_S)
        reader = conn.makefile("rb")
        backend = None
        try:
            try:
                req = json.loads(_readline(reader, MAX_REQUEST))
                if not isinstance(req, dict):
                    raise Declined("not a request")
                backend = self.prepare(req)
            except (Declined, ValueError) as exc:
                log.info("submit not taken: %s", exc)
                _send(conn, {"ready": False, "why": str(exc)})
                return
            _send(conn, {"ready": True, "pid": os.getpid()})  # the CLI waits for it to end if no answer comes
            if _readline(reader, 16) != b"go\n":
                return  # the CLI gave up waiting and submits it itself
            try:
                answer: dict[str, Any] = {"runs": self.submit(backend, req, conn)}
                log.info("submitted %s", " ".join(doc["id"] for doc in answer["runs"]))
            except Abandoned:
                log.info("submit abandoned by its client before anything was recorded")
                return
            except Exception as exc:
                known = exc if isinstance(exc, DlaasError) else explain_failure(exc)
                if known is not None:
                    answer = {"error": {"text": str(known), "exit_code": known.exit_code}}
                else:
                    log.exception("submit failed")
                    answer = {"internal": {"type": type(exc).__name__, "message": str(exc),
                                           "traceback": traceback.format_exc()}}
            conn.settimeout(SEND_S)
            _send(conn, answer)
        finally:
            if backend is not None:
                backend.close()
            os.chdir(ROOT)


def _preload() -> None:
    """What every submit needs, imported before the first request is taken."""
    import backend.budget  # noqa: F401
    import backend.engines.local.engine  # noqa: F401
    import backend.engines.local.submit  # noqa: F401
    import backend.engines.local.sweeps  # noqa: F401
    import backend.manifest.model  # noqa: F401
    import backend.manifest.sweep  # noqa: F401
    import backend.store.local  # noqa: F401
    from backend.manifest import load_manifest  # noqa: F401


def main() -> int:
    listen_fd = int(os.environ.pop(LISTEN_FD_ENV))
    lifeline = socket.socket(fileno=int(os.environ.pop(LIFELINE_FD_ENV)))
    sock = socket.socket(fileno=listen_fd)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    sys.path[:] = [str(ROOT), *(p for p in sys.path if p not in ("", str(ROOT)))]
    from backend.facade import get_paths

    worker = Worker(get_paths().state_dir)
    _preload()
    idle = idle_seconds()
    while True:
        ready, _, _ = select.select([sock, lifeline], [], [], idle)
        if not ready:
            log.info("submission worker %d: idle for %.0f s, exiting", os.getpid(), idle)
            return 0
        if lifeline in ready:
            log.info("submission worker %d: the agent stopped, exiting", os.getpid())
            return 0
        sock.setblocking(False)
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            continue
        finally:
            sock.setblocking(True)
        try:
            conn.setblocking(True)
            worker.serve(conn)
        except (OSError, Declined) as exc:  # a CLI that gave up waiting, or went away
            log.info("submit connection closed: %s", exc)
        except Exception:
            log.exception("submit connection failed")
        finally:
            conn.close()


if __name__ == "__main__":
    sys.exit(main())
