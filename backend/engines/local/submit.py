"""Submit: validate manifests, refuse what can never run, store the code, record runs QUEUED at once.

Everything that can be checked is checked before anything is written: the manifest (C101), the
framework mapping and the device request against the tier and the machine (C104), the secrets the
env names, the model archive (C102). Then each run's code goes to
`<results-bucket>/<run-id>/_submitted_code/model.zip` and every run of the request is inserted in
ONE transaction, so a sweep is recorded whole or not at all.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend import clock
from ...cost import canonical_gpu_type
from ...errors import BadInput, NotFound, StoreError
from ...ledger import db
from ...packaging import check_zip, unpacked_cap, zip_model
from ...runs import ErrorCode, Run, RunState, SubmitRequest, new_run_id
from .stores import connection_of, run_store

DEFAULT_ENV_FRAMEWORKS = ("pytorch", "python")




def resolve_framework(config, framework) -> str:
    """The python of the framework's environment; C104 listing the known ones when unmapped."""
    mapped = config.frameworks.get(framework.name, {})
    version = framework.version or ""
    entry = mapped.get(version)
    if entry is not None and entry.python:
        return entry.python
    if framework.name in DEFAULT_ENV_FRAMEWORKS:
        return sys.executable
    known = sorted({*DEFAULT_ENV_FRAMEWORKS, *config.frameworks})
    if mapped:
        versions = ", ".join(sorted(v for v, e in mapped.items() if e.python)) or "none with a python"
        raise BadInput(
            f"framework {framework.name} {version or '(no version)'} has no local environment; "
            f"mapped versions: {versions}", code=ErrorCode.NEVER_FITS.value)
    raise BadInput(
        f"framework {framework.name!r} is not mapped to a local environment; known: {', '.join(known)} "
        "(add it under [frameworks] in the config)", code=ErrorCode.NEVER_FITS.value)


def check_fits(engine, manifest) -> None:
    """C104 with the numbers when the request exceeds the tier or the machine, ever."""
    backend = engine.backend
    _check_box(backend, manifest)
    need = manifest.gpus * manifest.learners
    if need == 0:
        return
    tier = backend.config.tier_gpus(backend.profile)
    if tier and need > tier:
        raise BadInput(
            f"{manifest.name}: needs {need} GPU(s) ({manifest.gpus} x {manifest.learners} learner(s)) "
            f"but tier {backend.profile.tier!r} allows {tier} at a time", code=ErrorCode.NEVER_FITS.value)
    from .nvml import read_inventory

    devices = list(read_inventory(cpu_slots=backend.profile.cpu_slots).devices)
    real = [d for d in devices if not d.is_cpu_slot]
    pool = devices
    what = "device(s)"
    if real and manifest.gpu_type:
        want = canonical_gpu_type(manifest.gpu_type) or manifest.gpu_type
        pool = [d for d in real if d.gpu_type == want]
        what = f"{want} GPU(s)"
    elif not real:
        what = "cpu slot(s) standing in for GPUs"
    if need > len(pool):
        raise BadInput(
            f"{manifest.name}: needs {need} GPU(s) ({manifest.gpus} x {manifest.learners} learner(s)) "
            f"but this machine has {len(pool)} {what}", code=ErrorCode.NEVER_FITS.value)
    cap = manifest.gpu_memory_bytes
    if cap and real and manifest.share:
        big = [d for d in pool if d.memory_total is None or d.memory_total >= cap]
        if need > len(big):
            from .scheduler import fmt_bytes

            raise BadInput(
                f"{manifest.name}: needs {need} GPU(s) with {fmt_bytes(cap)} of memory to share (gpu_memory) "
                f"but this machine has {len(big)} that large", code=ErrorCode.NEVER_FITS.value)


def _check_box(backend, manifest) -> None:
    """The cores and memory a run holds must fit what this machine lets runs hold, ever."""
    from .limits import capacity, cores_per_learner
    from .scheduler import fmt_bytes

    cap = capacity(backend.profile)
    cores = cores_per_learner(manifest.cpus) * manifest.learners
    if cores > len(cap.cores):
        raise BadInput(
            f"{manifest.name}: needs {cores} core(s) ({manifest.cpus} x {manifest.learners} learner(s)) "
            f"but runs here may hold {len(cap.cores)}", code=ErrorCode.NEVER_FITS.value)
    memory = manifest.memory_bytes * manifest.learners
    if cap.memory and memory > cap.memory:
        raise BadInput(
            f"{manifest.name}: needs {fmt_bytes(memory)} of memory ({manifest.memory} x "
            f"{manifest.learners} learner(s)) but runs here may hold {fmt_bytes(cap.memory)}",
            code=ErrorCode.NEVER_FITS.value)


def _check_secrets(config, manifest) -> None:
    for name, value in manifest.env.items():
        if not isinstance(value, str):
            ref = getattr(value, "secret", None)
            if not ref or ref not in config.secrets:
                known = ", ".join(sorted(config.secrets)) or "none"
                raise BadInput(f"{manifest.name}: env {name} names secret {ref!r}, which is not in "
                               f"the config's [secrets] (known: {known})", code=ErrorCode.BAD_MANIFEST.value)


def default_model_source(manifest_path: Path) -> Path:
    folder = Path(manifest_path).resolve().parent
    return folder / "model" if (folder / "model").is_dir() else folder


def _package(src: Path, dest: Path, max_bytes: int, max_unpacked: int) -> None:
    if src.is_file():
        check_zip(src, max_bytes=max_bytes, max_unpacked=max_unpacked)
        shutil.copyfile(src, dest)
    elif src.is_dir():
        zip_model(src, dest, max_bytes=max_bytes, max_unpacked=max_unpacked)
    else:
        raise BadInput(f"{src}: no such model folder or zip")


def _ensure_bucket(store, bucket: str) -> None:
    if store.bucket_exists(bucket):
        return
    if getattr(store, "kind", "local") == "local":
        try:
            store.make_bucket(bucket)
        except StoreError:
            if not store.bucket_exists(bucket):  # not a concurrent submit that made it first
                raise
        return
    raise NotFound(f"results bucket {bucket!r} does not exist on {store.describe()}")


def _seed_samples(store, bucket: str) -> None:
    """The bundled samples read `dlaas-samples`: put their data there on first use."""
    from ...samples_seed import SAMPLES_BUCKET, ensure_sample_data

    if bucket == SAMPLES_BUCKET and getattr(store, "kind", "") == "local":
        ensure_sample_data(store)


def prepare_and_record(engine, request: SubmitRequest, before_record: Callable[[], None] | None = None) -> list[Run]:
    from ...manifest import load_manifest
    from ...manifest.sweep import expand
    from .rows import row_to_run

    backend = engine.backend
    config = backend.config
    if not request.dry_run:
        backend.require_writable("submit")
    if not request.manifests:
        raise BadInput("no manifest given")
    priorities = config.all_priorities()
    max_bytes = backend.profile.max_model_mb * 1024 * 1024
    max_unpacked = unpacked_cap(backend.profile)
    prepared = []
    for path in request.manifests:
        m = load_manifest(Path(path))
        if m.priority not in priorities:
            raise BadInput(f"{path}: priority {m.priority!r} is not one of {', '.join(priorities)}",
                           code=ErrorCode.BAD_MANIFEST.value)
        python = resolve_framework(config, m.framework)
        check_fits(engine, m)
        _check_secrets(config, m)
        trials = expand(m)
        prepared.append((Path(path), m, Path(path).read_text(), python, trials))
    from . import sweeps
    from .limits import cores_per_learner

    if not request.dry_run:  # refused over budget before anything is written
        from ...budget import check_budget

        check_budget(backend, [(m, len(trials)) for _p, m, _t, _py, trials in prepared], engine=engine)
    after = resolve_after(engine, request, prepared)
    experiments, policies = sweeps.assign_experiments(
        None if request.dry_run else engine.conn, request.experiment, [p[1] for p in prepared])

    rows: list[dict[str, Any]] = []
    now = clock.time()
    with tempfile.TemporaryDirectory(prefix="dlaas-submit-") as tmp:
        for k, (path, m, text, python, trials) in enumerate(prepared):
            src = Path(request.model) if request.model else default_model_source(path)
            zpath = Path(tmp) / f"model-{k}.zip"
            _package(src, zpath, max_bytes, max_unpacked)
            results = m.data_store.training_results.container
            data = m.data_store.training_data
            connection = connection_of(m)
            store = None if request.dry_run else run_store(backend, connection)
            if store is not None:
                _ensure_bucket(store, results)
                _seed_samples(store, data.container)
            experiment = experiments[k]
            manifest_path, model_source = str(path.resolve()), str(src.resolve())
            max_duration_s = m.max_duration_seconds
            code_key = None  # one stored copy per manifest; each run copies it to its own key when it starts
            for i, trial in enumerate(trials):
                params = dict(trial.params)
                tm = trial.manifest
                rid = new_run_id()
                spec = {
                    "command": tm.framework.command,
                    "framework": m.framework.name, "framework_version": m.framework.version,
                    "python": python, "env": {k2: (v if isinstance(v, str) else {"secret": v.secret})
                                              for k2, v in tm.env.items()},
                    "config_json": trial.config_json, "connection": connection,
                    "data": {"type": m.data_store.type, "bucket": data.container, "prefix": data.prefix},
                    "max_duration_s": max_duration_s,
                    "sweep_metric": m.sweep.metric.name if m.sweep and m.sweep.metric else None,
                    "model_key": code_key or f"{rid}/_submitted_code/model.zip",
                    "max_model_bytes": max_bytes, "max_unpacked_bytes": max_unpacked,
                    "manifest_path": manifest_path, "model_source": model_source,
                    "manifest_name": m.name,
                    # Cores and memory held while it runs, per learner and in all (limits.py).
                    "cpus": tm.cpus, "memory": tm.memory_bytes,
                    "cpus_total": cores_per_learner(tm.cpus) * tm.learners,
                    "memory_total": tm.memory_bytes * tm.learners,
                    "max_retries": m.max_retries,
                    # GPU sharing: the per-GPU memory cap the agent watches, and whether to share.
                    "gpu_memory": tm.gpu_memory_bytes, "share": bool(tm.share),
                }
                spec.update(_gates(after[k], request))
                if request.request_id:  # the CLI's: what a lost answer is looked up by (recorded_submit)
                    spec["request_id"] = request.request_id
                name = request.name or m.name
                if len(trials) > 1:
                    name = f"{name}-{i + 1}"
                rows.append({
                    "id": rid, "name": name, "experiment": experiment, "profile": backend.profile.name,
                    "state": RunState.QUEUED.value, "priority": m.priority,
                    "prio": priorities[m.priority], "submitted_at": now + len(rows) * 1e-6,
                    "gpus": m.gpus, "learners": m.learners,
                    "gpu_type": canonical_gpu_type(m.gpu_type) if m.gpu_type else None,
                    "params": params, "results_bucket": results, "spec": spec, "manifest_text": text,
                    "metric_goal": m.sweep.metric.goal if m.sweep and m.sweep.metric else "minimize",
                })
                if store is not None and code_key is None:
                    store.put_file(zpath, results, spec["model_key"])
                code_key = spec["model_key"]
    if request.dry_run:
        return [row_to_run(dict(r, admitted_at=None, started_at=None, finished_at=None, labels="[]",
                                error_code=None, message="", metrics="{}", primary_metric=None,
                                params=r["params"]), cost=0) for r in rows]
    if before_record is not None:
        before_record()
    conn = engine.conn
    with db.write(conn):
        seq = db.next_seq(conn)
        for row in rows:
            db.insert_run(conn, row, seq)
        sweeps.record_policies(conn, policies, now)
    remember_submission(engine, [r["id"] for r in rows])
    return sweeps.recorded_runs(engine, [r["id"] for r in rows])  # as recorded: QUEUED, positions


def recorded_submit(engine, request_id: str) -> list[Run]:
    """The runs a submit with `request_id` recorded, as `prepare_and_record` returns them; [] when it
    recorded none. A submit's runs are inserted in one transaction: all of them or none. Found, they
    are remembered as this home's last submission, as the submit would have done next."""
    ids = [r[0] for r in engine.conn.execute(
        "SELECT id FROM runs WHERE json_extract(spec, '$.request_id') = ? ORDER BY submitted_at, id",
        (request_id,))]
    if not ids:
        return []
    from . import sweeps

    remember_submission(engine, ids)
    return sweeps.recorded_runs(engine, ids)


LAST_SUBMIT = "last-submit.json"  # the run ids of this home's last submission (`submit --after @`)


def remember_submission(engine, ids: list[str]) -> None:
    from ...paths import write_private

    write_private(engine.backend.paths.state_dir / LAST_SUBMIT, json.dumps(ids))


def last_submission(engine) -> list[str]:
    try:
        ids = json.loads((engine.backend.paths.state_dir / LAST_SUBMIT).read_text())
    except (OSError, ValueError):
        ids = []
    if not ids:
        raise BadInput("--after @: nothing has been submitted from this home yet")
    return list(ids)


def resolve_after(engine, request: SubmitRequest, prepared: list) -> list[list[str]]:
    """Each manifest's prerequisites (its `depends_on` and `--after`), checked to exist and not to
    have failed already; "@" is the last submission."""
    common: list[str] = []
    for ref in request.after:
        common += last_submission(engine) if ref == "@" else [ref]
    out = []
    for path, m, *_ in prepared:
        ids = list(dict.fromkeys([*m.depends_on, *common]))
        for rid in ids:
            where = f"{path}: depends_on" if rid in m.depends_on else "--after"
            row = engine.conn.execute("SELECT state, error_code FROM runs WHERE id = ?", (rid,)).fetchone()
            if row is None:
                raise BadInput(f"{where}: no run {rid!r}", code=ErrorCode.BAD_MANIFEST.value)
            if row[0] in (RunState.FAILED.value, RunState.HALTED.value):
                raise BadInput(f"{where}: {rid} already ended {row[0]}"
                               f"{f' ({row[1]})' if row[1] else ''}; this run could never start",
                               code=ErrorCode.DEPENDENCY_FAILED.value)
        out.append(ids)
    return out


def _gates(after: list[str], request: SubmitRequest) -> dict[str, Any]:
    """The spec keys that keep a run queued until its gates open (the agent opens them)."""
    out: dict[str, Any] = {}
    wait: dict[str, Any] = {}
    if after:
        out["depends_on"] = after
        wait["after"] = after
    if request.hold:
        wait["hold"] = True
    if request.begin_at is not None and request.begin_at > clock.time():
        wait["begin_at"] = request.begin_at
    if wait:
        out["wait"] = wait
    return out


def rerun(engine, run_id: str) -> list[Run]:
    """The same manifest text, parameters and code again, as a new run."""
    engine.backend.require_writable("rerun")
    old = db.get_row(engine.conn, run_id)
    rid = new_run_id()
    spec = dict(old["spec"], model_key=f"{rid}/_submitted_code/model.zip")
    for gate in ("wait", "depends_on"):  # its prerequisites were met for the first one
        spec.pop(gate, None)
    spec.pop("request_id", None)  # not made by that submit
    backend = engine.backend
    if old["profile"] != backend.profile.name:
        backend = backend.__class__(config=backend.config, profile=backend.config.profile(old["profile"]),
                                    paths=backend.paths)
    store = run_store(backend, old["spec"].get("connection"))
    bucket = old["results_bucket"]
    with tempfile.TemporaryDirectory(prefix="dlaas-rerun-") as tmp:
        z = Path(tmp) / "model.zip"
        try:
            store.get_file(bucket, old["spec"]["model_key"], z)
        except Exception as exc:
            raise NotFound(f"{run_id}: its submitted code {bucket}/{old['spec']['model_key']} "
                           f"cannot be read ({exc})") from None
        store.put_file(z, bucket, spec["model_key"])
    row = {k: old[k] for k in ("name", "experiment", "profile", "priority", "prio", "gpus", "learners",
                               "gpu_type", "params", "results_bucket", "manifest_text", "metric_goal")}
    row.update(id=rid, state=RunState.QUEUED.value, submitted_at=clock.time(), spec=spec)
    with db.write(engine.conn):
        db.insert_run(engine.conn, row, db.next_seq(engine.conn))
    return [engine.get_run(rid)]
