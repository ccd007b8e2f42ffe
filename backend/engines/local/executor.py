"""One run's life inside the agent, on its own thread: PENDING -> DOWNLOADING -> PROCESSING -> STORING.

Every step is written to the ledger before the next begins, and each step can be resumed from the
ledger alone, which is how an agent restarted after `kill -9` carries on: a command whose wrapper
left a pid file is never started again (it is adopted, or the run is lost with S401), and a run cut
off in STORING stores again (the outcome it was storing for is kept in the row).
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from backend import clock
from ...ledger import db
from ...metrics import ParsedMetrics, parse_metrics_line, primary_metric, read_metrics_jsonl
from ...packaging import ArchiveError, safe_unzip
from ...runs import ErrorCode, RunState, retry_message
from .limits import enforcement
from .procs import Learner, free_port, launch, start_time, stop_group, was_started
from .stores import folder_of

log = logging.getLogger("dlaas.agent")
OOM_PATTERNS = re.compile(rb"CUDA out of memory|OutOfMemoryError|torch\.OutOfMemoryError|Killed\s*$|"
                          rb"^MemoryError|Cannot allocate memory|std::bad_alloc", re.M)
TAIL_LINES = 5


def _metrics_jsonl_line(line: str) -> ParsedMetrics | None:
    """The metrics in one line of $RESULT_DIR/metrics.jsonl, or None."""
    got = read_metrics_jsonl([line])
    return got[0] if got else None


def tail_lines(path: Path, n: int) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            data = fh.read()
    except OSError:
        return []
    return [ln for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()][-n:]


class RunHost(Protocol):
    """What a RunWorker needs from the process that runs it (the agent, backend/agent/agent.py)."""

    paths: Any
    config: Any
    halt_grace: float

    def store_for(self, profile: str, connection: dict | None = None) -> Any: ...

    def resolve_env(self, env: dict[str, Any]) -> dict[str, str]: ...

    def cores_for(self, run_id: str) -> tuple[int, ...]: ...

    def lock_fds(self, run_id: str) -> list[int]: ...

    def cost_micro(self, row: dict, events: list[tuple[float, str | None]], now: float) -> int | None: ...

    def run_document(self, conn: Any, run_id: str, outcome: dict) -> dict: ...

    def release(self, run_id: str) -> None: ...


class RunWorker(threading.Thread):
    def __init__(self, agent: RunHost, run_id: str) -> None:
        super().__init__(name=f"run-{run_id}", daemon=True)
        self.agent = agent
        self.run_id = run_id
        self.halt_requested = threading.Event()
        self.stop_reason: tuple[str, str] | None = None  # (error code, message) when a policy halts it
        # (error code, message) when the agent stops it for a failure of its own (over its gpu_memory cap)
        self.fail_reason: tuple[str, str] | None = None
        self.learners: list[Learner] = []
        self.conn = db.connect(agent.paths.db_file)
        self.wd = agent.paths.runs_dir / run_id
        self._offsets: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._seen: list[str] = []
        # (data folder, DATA_DIR, other folders) to mount read-only in the learners' namespace
        self._ro_data: tuple[Path, Path, tuple[Path, ...]] | None = None

    # -- paths ----------------------------------------------------------------------------------
    def learner_log_dir(self, i: int) -> Path:
        return self.wd / "logs" / f"learner-{i}"

    @property
    def model_dir(self) -> Path:
        return self.wd / "model"

    @property
    def result_dir(self) -> Path:
        return self.wd / "results"

    # -- the thread -----------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug must not leave the run hanging in a billed state
            log.exception("run %s: unexpected error", self.run_id)
            self._finish(RunState.FAILED, ErrorCode.LOAD_FAILED.value, f"internal error: {exc}")
        finally:
            try:
                self._remove_working_copies()
            except Exception:  # tidying must not keep the devices held
                log.exception("run %s: removing its working copies failed", self.run_id)
            self.agent.release(self.run_id)
            self.conn.close()

    def _remove_working_copies(self) -> None:
        """An ended run keeps its logs (and, if storing failed, its results) but not its copies.

        The extracted model, the model archive and the data view or private data copy go; the
        results go too once they are in the bucket. A run that has not ended keeps everything."""
        import shutil

        row = db.get_row(self.conn, self.run_id)
        if not RunState(row["state"]).terminal:
            return
        doomed = [self.wd / "model.zip", self.model_dir, self.wd / "data"]
        if row.get("error_code") != ErrorCode.STORE_FAILED.value:
            doomed.append(self.result_dir)
        for path in doomed:
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir() and not os.path.ismount(path):
                shutil.rmtree(path, ignore_errors=True)

    def _run(self) -> None:
        row = db.get_row(self.conn, self.run_id)
        self.row = row
        self.spec: dict[str, Any] = row["spec"]
        state = RunState(row["state"])
        if state == RunState.PENDING:
            self._forget_earlier_attempt()
            if self.halt_requested.is_set():
                return self._finish(RunState.HALTED, None, "halted before it started")
            if not self._move(RunState.DOWNLOADING, "fetching model and data"):
                return
            state = RunState.DOWNLOADING
        if state == RunState.DOWNLOADING:
            bases = [self.wd / "state" / f"learner-{i}" for i in range(1, row["learners"] + 1)]
            if any(was_started(b) for b in bases):
                # An earlier agent started the command and died before recording it: adopt.
                self.learners = [self._learner_from_files(i, b) for i, b in enumerate(bases, 1)]
                self._move(RunState.PROCESSING, "adopted after agent restart",
                           started_at=clock.time(), procs=[lr.to_json() for lr in self.learners])
            else:
                try:
                    self._download()
                except ArchiveError as exc:
                    return self._finish(RunState.FAILED, ErrorCode.BAD_MODEL_ARCHIVE.value, exc.message)
                except Exception as exc:
                    return self._finish(RunState.FAILED, ErrorCode.LOAD_FAILED.value,
                                        f"loading model or data failed: {exc}")
                if self.halt_requested.is_set():
                    return self._finish(RunState.HALTED, None, "halted before the command started")
                self._launch()
            state = RunState.PROCESSING
        if state == RunState.PROCESSING:
            if not self.learners:
                self.learners = [Learner.from_json(p) for p in db.get_row(self.conn, self.run_id)["procs"]]
                self._reset_metrics()
            outcome = self._monitor()
            if outcome["state"] == RunState.FAILED.value and self._retry(outcome):
                return
            if not self._move(RunState.STORING, "storing results", outcome=outcome):
                return
            state = RunState.STORING
        if state == RunState.STORING:
            outcome = db.get_row(self.conn, self.run_id)["outcome"] or {
                "state": RunState.COMPLETED.value, "code": None, "message": ""}
            self._collect_metrics()
            try:
                self._store(outcome)
            except Exception as exc:
                log.exception("run %s: storing failed", self.run_id)
                outcome = {"state": RunState.FAILED.value, "code": ErrorCode.STORE_FAILED.value,
                           "message": f"storing results failed ({exc}); a local copy is kept in {self.wd}"}
            self._finish(RunState(outcome["state"]), outcome.get("code"), outcome.get("message", ""))

    # -- steps ----------------------------------------------------------------------------------
    def _move(self, state: RunState, message: str = "", **fields: Any) -> bool:
        return db.transition(self.conn, self.run_id, state, message=message, **fields)

    def _finish(self, state: RunState, code: str | None, message: str) -> None:
        now = clock.time()
        ev = [(e["at"], e["state"]) for e in db.events(self.conn, self.run_id)] + [(now, state.value)]
        cost = self.agent.cost_micro(self.row if hasattr(self, "row") else
                                     db.get_row(self.conn, self.run_id), ev, now)
        if db.transition(self.conn, self.run_id, state, message=message, error_code=code, at=now,
                         finished_at=now, cost_micro=cost, priced=0 if cost is None else 1):
            from .rows import seal_run

            seal_run(self.conn, self.run_id)

    def _forget_earlier_attempt(self) -> None:
        """A run admitted again (requeued, or resumed) keeps its folder: checkpoints/, results/ and
        the logs carry on. Only the wrapper's pid/exit files of the last attempt go, or they would
        read as a command already started; in PENDING this attempt has started nothing yet."""
        state = self.wd / "state"
        for i in range(1, self.row["learners"] + 1):
            for suffix in (".pid", ".exit"):
                (state / f"learner-{i}{suffix}").unlink(missing_ok=True)

    def _download(self) -> None:
        store = self.agent.store_for(self.row["profile"], self.spec.get("connection"))
        self.wd.mkdir(parents=True, exist_ok=True)
        bucket = self.row["results_bucket"]
        zip_path = self.wd / "model.zip"
        src = folder_of(store, bucket, self.spec["model_key"])
        if src is None:
            store.get_file(bucket, self.spec["model_key"], zip_path)
            src = zip_path
        if self.model_dir.exists():
            import shutil

            shutil.rmtree(self.model_dir)
        own_key = f"{self.run_id}/_submitted_code/model.zip"
        if self.spec["model_key"] != own_key:  # a sweep stores its code once: each run that starts gets its copy
            store.put_file(src, bucket, own_key)
        safe_unzip(src, self.model_dir, max_bytes=self.spec.get("max_unpacked_bytes",
                                                                self.spec.get("max_model_bytes", 500 * 2**20)))
        self._prepare_data(store)
        for d in ("results", "state", "checkpoints"):
            (self.wd / d).mkdir(parents=True, exist_ok=True)
        (self.wd / "state" / "config.json").write_text(
            self.spec.get("config_json") or json.dumps(self.row["params"], indent=2))

    def _prepare_data(self, store) -> None:
        """DATA_DIR, read-only to the run: a read-only mount of the data in the learners' own mount
        namespace (rodata), or where that is impossible, a private copy the run may change."""
        from . import rodata

        data = self.spec["data"]
        where = f"{data['bucket']}/{data.get('prefix') or ''}"
        dest = self.wd / "data"
        if dest.is_symlink():
            dest.unlink()
        elif dest.exists():
            import shutil

            shutil.rmtree(dest)
        mount, why = rodata.probe(self.agent.paths.state_dir)
        if os.environ.get("DLAAS_DATA_PROTECT") == "copy":
            mount, why = False, "DLAAS_DATA_PROTECT=copy"
        folder = folder_of(store, data["bucket"], data.get("prefix") or "")
        if folder is not None:
            if not folder.is_dir():
                raise FileNotFoundError(f"training data {where} is an object, not a folder" if folder.exists()
                                        else f"training data {where} not found")
            if mount:
                dest.mkdir(parents=True)
                self._ro_data = (Path(os.path.realpath(folder)), dest, ())
                mount, why = rodata.check(*self._ro_data)  # this data's own file system may refuse
                if not mount:
                    self._ro_data = None
                    dest.rmdir()
            if not mount:
                files, size = rodata.private_copy(folder, dest)
        else:
            objects = self.agent.paths.cache_dir / "data" / "objects"
            if mount:
                objects.mkdir(parents=True, exist_ok=True, mode=0o700)
                dest.mkdir(parents=True)
                mount, why = rodata.check(dest, dest, (objects,))
            self._fetch_remote_data(store, data, dest, link=mount)
            if mount:
                self._ro_data = (dest, dest, (objects,))
            else:
                files = sum(len(f) for _, _, f in os.walk(dest))
                size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
        if mount:
            db.note(self.conn, self.run_id, f"training data {where} is mounted read-only at DATA_DIR")
        else:
            db.note(self.conn, self.run_id,
                    f"training data {where}: a read-only mount is not possible here ({why}); the run "
                    f"gets a private copy ({files} files, {size} bytes) that it may change")

    def _fetch_remote_data(self, store, data: dict, dest: Path, link: bool = True) -> None:
        """Data on S3: through the machine's shared cache, so a sweep downloads it once.

        Without a read-only mount the run gets copies, not hard links into the cache."""
        from ...datacache import DataCache

        cache_cfg = self.agent.config.cache
        cache = DataCache(self.agent.paths.cache_dir / "data", int(cache_cfg.max_gb * 2**30))
        cache.fetch(store, data["bucket"], data.get("prefix") or "", dest, link=link)

    def _env(self, learner: int, devices: list[str], port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DLAAS_")}
        python = self.spec.get("python")
        if python:
            env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
        n = self.row["learners"]
        log_dir = self.learner_log_dir(learner)
        env.update(
            DATA_DIR=str(self.wd / "data"), RESULT_DIR=str(self.result_dir), MODEL_DIR=str(self.model_dir),
            LOG_DIR=str(log_dir), JOB_STATE_DIR=str(self.wd / "state"),
            CHECKPOINT_DIR=str(self.wd / "checkpoints"), TRAINING_ID=self.run_id,
            LEARNER_ID=str(learner), NUM_LEARNERS=str(n), GPU_COUNT=str(self.row["gpus"]),
            PYTHONUNBUFFERED="1",
            CUDA_VISIBLE_DEVICES=",".join(d for d in devices if not d.startswith("cpu:")),
        )
        if n > 1:
            env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(n),
                       RANK=str(learner - 1))
        env.update(self.agent.resolve_env(self.spec.get("env", {})))
        return env

    def _launch(self) -> None:
        n = self.row["learners"]
        per = self.row["gpus"]
        devices = list(db.get_row(self.conn, self.run_id)["assigned"])
        port = free_port() if n > 1 else 0
        fds = tuple(self.agent.lock_fds(self.run_id))
        attempt = db.attempt(self.conn, self.run_id)
        if attempt > 1:
            for i in range(1, n + 1):
                path = self.learner_log_dir(i) / "training-log.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a") as fh:
                    fh.write(f"dlaas: attempt {attempt} started; CHECKPOINT_DIR kept from the last attempt\n")
        # An earlier attempt's lines were parsed then: read only what this attempt appends.
        for path in [self.learner_log_dir(i) / "training-log.txt" for i in range(1, n + 1)] + [
                self.result_dir / "metrics.jsonl"]:
            try:
                self._offsets[str(path)] = path.stat().st_size
            except OSError:
                pass
        prefix: tuple[str, ...] = ()
        if self._ro_data is not None:
            from .rodata import helper_argv

            src, dest, also = self._ro_data
            prefix = tuple(helper_argv(src, dest, [], also))
        cores = self.agent.cores_for(self.run_id)
        each = len(cores) // n if cores else 0
        memory = int(self.spec.get("memory") or 0)
        for i in range(1, n + 1):
            mine = devices[(i - 1) * per : i * per]
            self.learners.append(launch(
                i, self.spec["command"], cwd=self.model_dir, env=self._env(i, mine, port),
                log_file=self.learner_log_dir(i) / "training-log.txt",
                state_base=self.wd / "state" / f"learner-{i}", pass_fds=fds, prefix=prefix,
                cores=tuple(cores[(i - 1) * each : i * each]) if each else tuple(cores),
                memory=memory, memory_mode=enforcement(),
            ))
        self._move(RunState.PROCESSING, "command started", started_at=clock.time(),
                   procs=[lr.to_json() for lr in self.learners])

    def _learner_from_files(self, i: int, base: Path) -> Learner:
        try:
            pid = int(Path(f"{base}.pid").read_text().strip())
        except (OSError, ValueError):
            pid = 0
        # Only trust a pid whose process started after the run was admitted (not a reused pid).
        start = start_time(pid) if pid else None
        return Learner(i, pid, start, base)

    def _monitor(self) -> dict[str, Any]:
        started = db.get_row(self.conn, self.run_id)["started_at"] or clock.time()
        limit = self.spec.get("max_duration_s")
        next_metrics = 0.0
        while True:
            now = time.monotonic()
            if now >= next_metrics:
                self._collect_metrics()
                next_metrics = now + 0.5
            if self.halt_requested.is_set():
                stop_group(self.learners, self.agent.halt_grace)
                if self.fail_reason is not None:
                    return self._failure(*self.fail_reason)
                code, message = self.stop_reason or (None, "halted by request")
                return {"state": RunState.HALTED.value, "code": code, "message": message}
            if limit and clock.time() - started > limit:
                stop_group(self.learners, self.agent.halt_grace)
                return self._failure(ErrorCode.MAX_DURATION.value,
                                     f"ran past max_duration ({limit} s) and was stopped")
            alive = [lr.alive() for lr in self.learners]
            done = [lr for lr, a in zip(self.learners, alive) if not a]
            bad = [lr for lr in done if lr.exit_code() != 0]
            if bad:
                stop_group(self.learners, self.agent.halt_grace)
                lr = bad[0]
                code = lr.exit_code()
                if code is None:
                    return self._failure(ErrorCode.RUN_LOST.value,
                                         f"learner {lr.index}'s process vanished", lr.index)
                if code == 137 or self._oom_in_log(lr.index):
                    return self._failure(ErrorCode.OUT_OF_MEMORY.value,
                                         f"learner {lr.index} ran out of memory (exit {code}"
                                         f"{self._memory_note()})", lr.index)
                return self._failure(ErrorCode.COMMAND_FAILED.value,
                                     f"learner {lr.index} exited with {code}", lr.index)
            if len(done) == len(self.learners):
                return {"state": RunState.COMPLETED.value, "code": None, "message": ""}
            self.halt_requested.wait(0.2)

    def _retry(self, outcome: dict[str, Any]) -> bool:
        """A failed attempt of a run with `max_retries` left goes back to QUEUED as its next attempt,
        as a resume would: its folder (checkpoints, logs) kept, its time so far billed (the ledger
        has every attempt). Every attempt counts, resumed ones too."""
        retries = int(self.spec.get("max_retries") or 0)
        attempt = db.attempt(self.conn, self.run_id)
        if attempt > retries:
            return False
        return self._move(RunState.QUEUED, retry_message(attempt + 1, retries, outcome.get("code"),
                                                         outcome.get("message", "")),
                          assigned=[], labels=[], procs=[], outcome={})

    def _failure(self, code: str, message: str, learner: int = 1) -> dict[str, Any]:
        lines = tail_lines(self.learner_log_dir(learner) / "training-log.txt", TAIL_LINES)
        if lines:
            message += ": " + " | ".join(lines)
        return {"state": RunState.FAILED.value, "code": code, "message": message}

    def _memory_note(self) -> str:
        """The limit the run was held to, and by what, for an out-of-memory failure."""
        memory = int(self.spec.get("memory") or 0)
        if not memory:
            return ""
        from .limits import describe
        from .scheduler import fmt_bytes

        return f"; limit {fmt_bytes(memory)} per learner, enforced by {describe()}"

    def _oom_in_log(self, learner: int) -> bool:
        lines = tail_lines(self.learner_log_dir(learner) / "training-log.txt", 50)
        return bool(OOM_PATTERNS.search("\n".join(lines).encode()))

    # -- metrics --------------------------------------------------------------------------------
    def _reset_metrics(self) -> None:
        """An adopted run's metrics are parsed again from the start of its files."""
        with db.write(self.conn):
            self.conn.execute("DELETE FROM metrics WHERE run_id = ?", (self.run_id,))

    def _read_new(self, path: Path) -> list[str]:
        key = str(path)
        off = self._offsets.get(key, 0)
        try:
            with open(path, "rb") as fh:
                if off > os.fstat(fh.fileno()).st_size:  # rewritten from the start (a new attempt)
                    off = 0
                fh.seek(off)
                data = fh.read(8 << 20)
        except OSError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self._offsets[key] = off + end + 1
        return data[: end + 1].decode("utf-8", "replace").splitlines()

    def _collect_metrics(self) -> None:
        points: list[tuple] = []
        now = clock.time()
        sources = [(i, self.learner_log_dir(i) / "training-log.txt", parse_metrics_line)
                   for i in range(1, self.row["learners"] + 1)]
        sources.append((1, self.result_dir / "metrics.jsonl", _metrics_jsonl_line))
        for learner, path, parse in sources:
            for line in self._read_new(path):
                got = parse(line)
                if got is None:
                    continue
                at = (got.at.timestamp() if got.at is not None else None) or now
                for name, value in got.values.items():
                    points.append((learner, name, value, got.step, at))
                    if name not in self._seen:
                        self._seen.append(name)
                    if learner == 1:
                        self._last[name] = value
        if points:
            primary = primary_metric(self._seen, self.spec.get("sweep_metric"))
            db.add_metrics(self.conn, self.run_id, points, self._last, primary)

    # -- storing --------------------------------------------------------------------------------
    def _store(self, outcome: dict[str, Any]) -> None:
        store = self.agent.store_for(self.row["profile"], self.spec.get("connection"))
        bucket = self.row["results_bucket"]
        rid = self.run_id
        if self.result_dir.is_dir() and any(self.result_dir.iterdir()):
            store.put_folder(self.result_dir, bucket, rid)
        for i in range(1, self.row["learners"] + 1):
            ldir = self.learner_log_dir(i)
            ldir.mkdir(parents=True, exist_ok=True)
            logf = ldir / "training-log.txt"
            if not logf.exists():
                logf.touch()
            store.put_file(logf, bucket, f"{rid}/learner-{i}/training-log.txt")
            mfile = ldir / "metrics.jsonl"
            rows = self.conn.execute(
                "SELECT name, value, step, at FROM metrics WHERE run_id = ? AND learner = ? ORDER BY rowid",
                (rid, i)).fetchall()
            with open(mfile, "w") as fh:
                for name, value, step, at in rows:
                    fh.write(json.dumps({"name": name, "value": value, "step": step, "at": at}) + "\n")
            store.put_file(mfile, bucket, f"{rid}/learner-{i}/metrics.jsonl")
        doc = self.agent.run_document(self.conn, rid, outcome)
        rj = self.wd / "run.json"
        rj.write_text(json.dumps(doc, indent=2, default=str))
        store.put_file(rj, bucket, f"{rid}/run.json")

