"""Submitting runs to the cluster: the model archive to the results bucket, the Job, then the objects
it owns (see render.py for why it is two steps). Mixed into KubernetesEngine.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from backend.errors import BadInput, EngineError
from backend.runs import ErrorCode, Run, RunEvent, RunState, SubmitRequest, iso, new_run_id, utcnow

from . import render
from .client import KubeError, jobs_path, path_for
from .ledger import AgentLedger
from .runview import run_from_job

if TYPE_CHECKING:
    from backend.manifest.model import Manifest


class Submitting:
    """Needs from its engine: api, store, ledger, profile, config, user, _lock, _submitting,
    _registered, _manifests, _backend, _cost, _delete_job, _refresh_positions, cluster_now and _learn_skew."""

    def submit_run(self, manifest: Manifest, *, run_id: str | None = None, model_zip: bytes | None = None,
                   experiment: str | None = None, params: dict[str, Any] | None = None,
                   manifest_text: str = "") -> Run:
        """Create one run: model.zip to the results bucket, the Job, then the objects it owns."""
        run_id = run_id or new_run_id()
        now = self.cluster_now()
        data_bytes, model_bytes = self._sizes(manifest, run_id, model_zip)
        spec = render.RunSpec(run_id, self.user or render._current_user(), experiment, dict(params or {}), iso(now),
                              data_bytes=data_bytes, model_bytes=model_bytes)
        job = render.render_job(manifest, spec, self.profile, self.config)
        if model_zip is not None:
            if self.store is None:
                raise EngineError(f"{run_id}: no object store to hold the model archive")
            bucket = manifest.data_store.training_results.container
            self.store.put_bytes(bucket, f"{run_id}/_submitted_code/model.zip", model_zip)
        self._submitting.add(run_id)  # a sync meanwhile must not adopt it as "found on the cluster"
        try:
            return self._create(manifest, spec, job, run_id, now, manifest_text)
        finally:
            self._submitting.discard(run_id)

    def _sizes(self, manifest: Manifest, run_id: str, model_zip: bytes | None) -> tuple[int | None, int | None]:
        """The training data's and the model archive's sizes in the store, to size the pod's /work
        (one listing of the data prefix per run; unknown when the store cannot say)."""
        if self.store is None:
            return None, len(model_zip) if model_zip is not None else None
        ds = manifest.data_store
        try:
            prefix = (ds.training_data.prefix or "").lstrip("/")
            data = sum(o.size for o in self.store.iter_objects(ds.training_data.container, prefix))
        except Exception:  # a bucket we may not list, a store that is down: the headroom alone
            data = None
        if model_zip is not None:
            return data, len(model_zip)
        try:
            return data, self.store.stat(ds.training_results.container, f"{run_id}/_submitted_code/model.zip").size
        except Exception:
            return data, None

    def _create(self, manifest: Manifest, spec: render.RunSpec, job: dict[str, Any], run_id: str, now: datetime,
                manifest_text: str) -> Run:
        sent_at = utcnow()
        created = self.api.request("POST", jobs_path(self.ns), body=job)
        # The API server's own stamp on this Job tells its clock: from here on the ledger is in the
        # cluster's time (to the stamp's second; within SKEW_NOISE our finer clock stands for it).
        self._learn_skew(created, sent_at, utcnow())
        now = self.cluster_now()
        uid = (created.get("metadata") or {}).get("uid")
        if not uid:
            raise EngineError(f"{run_id}: the API server returned the Job without a uid")
        try:
            for obj in render.render_owned(manifest, spec, self.profile, self.config, job_uid=uid, reveal_secrets=True):
                self.api.request("POST", path_for(obj), body=obj)
        except KubeError:
            self._delete_job(run_id)
            raise
        self._uids[run_id] = uid
        self._manifests[run_id] = manifest_text
        run = run_from_job(created if created.get("spec") else job, self.config)
        held = self.ledger.get_run(run_id)
        run.submitted_at = held.submitted_at if held else now  # a held run was submitted when accepted
        if held is not None and held.gpu_type and not run.gpu_type:
            run.gpu_type = held.gpu_type  # a resumed run: its earlier attempts were priced as that type
        with self._lock:  # the sync loop writes runs too; one writer at a time keeps copies fresh
            self._registered[run_id] = self.cluster_now()
            if self.ledger.events(run_id):  # a held or resumed run: QUEUED since it was accepted
                self.ledger.record(RunEvent(run_id, now, None, "released: Job created"))
            else:
                self.ledger.record(RunEvent(run_id, now, RunState.QUEUED, "submitted"))
            # what earlier attempts cost stays on the bill while this one waits
            run.cost_micro_usd = self._cost(run, now)
            self.ledger.put_run(run)
            try:
                self._refresh_positions()
            except KubeError:
                pass  # positions come with the next sync; the run is created either way
        return self.get_run(run_id)

    def submit(self, request: SubmitRequest) -> list[Run]:
        """Every run of every manifest (a sweep gives one run per trial); Kueue queues them.

        Inside the agent, sweeps are released `parallel` at a time through `submit_run` instead.
        """
        from backend.manifest import load_manifest
        from backend.manifest.sweep import expand

        planned, sizes = [], []
        for path in request.manifests:
            manifest = load_manifest(path)
            if request.name:
                manifest = manifest.model_copy(update={"name": request.name})
            self.check_fits(manifest)
            _local_only(path, manifest, request)
            trials = expand(manifest)
            sizes.append((manifest, len(trials)))
            for trial in trials:
                render.render_job(trial.manifest, render.RunSpec("training-00000000"), self.profile, self.config)
                planned.append((path, trial))
        if not request.dry_run:  # over the profile's budget: refused with the figures, nothing created
            from backend.budget import check_budget

            check_budget(self._backend or self, sizes, engine=self)
        if not request.dry_run:
            self._seed_samples(request.manifests)
        if request.dry_run:
            return [run_from_job(render.render_job(t.manifest, render.RunSpec(new_run_id(), self.user or "unknown",
                                                                              request.experiment, t.params),
                                                   self.profile, self.config), self.config) for _, t in planned]
        if isinstance(self.ledger, AgentLedger):
            return self._hold_all(request, planned)
        runs, zips = [], {}
        for path, trial in planned:
            source = request.model or _default_model(path)
            if source not in zips:
                zips[source] = _zip_model(source, self.profile.max_model_mb)
            runs.append(self.submit_run(trial.manifest, model_zip=zips[source], experiment=request.experiment,
                                        params=trial.params, manifest_text=path.read_text()))
        return runs

    def _seed_samples(self, manifests: list[Any]) -> None:
        """A bundled sample reads its data from bucket `dlaas-samples` (as on the local store): the
        first submit of one puts the samples' data into the profile's S3 store, so the same manifest
        runs on the cluster without edits. Other manifests' data is the user's to upload."""
        from pathlib import Path

        from backend.paths import resource_dir

        samples = resource_dir("samples").resolve()
        if self.store is None or self.profile.read_only:
            return
        if not any(Path(p).resolve().is_relative_to(samples) for p in manifests):
            return
        from backend.samples_seed import ensure_sample_data

        ensure_sample_data(self.store, samples)

    def _hold_all(self, request: SubmitRequest, planned: list[tuple[Any, Any]]) -> list[Run]:
        """With a persistent ledger every run is accepted there first and the agent creates the Jobs
        (a sweep `parallel` at a time). The model archive goes to the results bucket now, so the
        release needs nothing from this process."""
        import secrets

        runs, zips, groups = [], {}, {}
        for path, trial in planned:
            source = request.model or _default_model(path)
            if source not in zips:
                zips[source] = _zip_model(source, self.profile.max_model_mb)
            run_id = new_run_id()
            bucket = trial.manifest.data_store.training_results.container
            if self.store is None:
                raise EngineError(f"{run_id}: no object store to hold the model archive")
            self.store.put_bytes(bucket, f"{run_id}/_submitted_code/model.zip", zips[source])
            runs.append(self.hold_run(trial.manifest, run_id=run_id, experiment=request.experiment,
                                      params=trial.params, manifest_text=path.read_text(),
                                      group=groups.setdefault(path, request.experiment or secrets.token_hex(6)),
                                      **_policy(path)))
        if not self._wake_agent():
            self.release_held()
        return [self.get_run(r.id) for r in runs]

    def hold_run(self, manifest: Manifest, *, run_id: str | None = None, experiment: str | None = None,
                 params: dict[str, Any] | None = None, manifest_text: str = "", group: str | None = None,
                 parallel: int | None = None, max_failed: int | None = None) -> Run:
        """Accept a run into the ledger without creating its Job; `release_held` creates it when its
        group (a sweep) has fewer than `parallel` runs on the cluster. The model archive, if any,
        must already be in the results bucket."""
        run_id = run_id or new_run_id()
        now = self.cluster_now()
        spec = render.RunSpec(run_id, self.user or render._current_user(), experiment, dict(params or {}), iso(now))
        run = run_from_job(render.render_job(manifest, spec, self.profile, self.config), self.config)
        run.submitted_at = now
        run.message = f"held back: {parallel} at a time" if parallel else "waiting for the agent"
        # behind everything queued so far, until Kueue says where it really stands
        run.queue_position = 1 + self.ledger.queued_count()
        run.queue_position_approximate = True
        self.ledger.hold(run, manifest=manifest.model_dump(mode="json", by_alias=True), group=group or run_id,
                         parallel=parallel, max_failed=max_failed, manifest_text=manifest_text)
        return run

    def release_held(self) -> list[str]:
        """Create the Jobs of held runs that their group's `parallel` leaves room for (the agent's
        part; a process without an agent calls it too). Returns the run ids released."""
        with self._release_lock:
            return self._release_held()

    def _release_held(self) -> list[str]:
        from backend.manifest.model import Manifest

        done: list[str] = []
        for row in self.ledger.releasable():
            run_id = row["run_id"]
            if row["manifest"] is None:  # halted while held, or its sweep reached max_failed
                self.ledger.released(run_id)
                run = self.ledger.get_run(run_id)
                if row.get("failed") and run is not None and not run.state.terminal:
                    from .states import Observation

                    what = f"experiment {row['experiment']}" if row["experiment"] else "its sweep"
                    with self._lock:
                        self._transition(run, Observation(
                            RunState.HALTED, error_code=ErrorCode.SWEEP_MAX_FAILED.value,
                            message=f"not started: {what} reached max_failed ({row['failed']} failed)"))
                continue
            try:
                self.submit_run(Manifest.model_validate(row["manifest"]), run_id=run_id,
                                experiment=row["experiment"], params=row["params"], manifest_text=row["manifest_text"])
            except KubeError as exc:
                if getattr(exc, "status", None) == 409:  # created before a crash, not marked: it is out
                    self.ledger.released(run_id)
                    continue
                raise  # the cluster is unreachable or refuses for now: the next pass tries again
            except Exception as exc:  # a run that can never be created: say why, once
                self.ledger.released(run_id)
                run = self.ledger.get_run(run_id)
                if run is not None:
                    from .states import Observation

                    with self._lock:
                        self._transition(run, Observation(RunState.FAILED, message=f"could not create the Job: {exc}",
                                                          error_code=ErrorCode.COMMAND_FAILED.value))
                continue
            self.ledger.released(run_id)
            done.append(run_id)
        return done

    def check_fits(self, manifest: Manifest) -> None:
        """C104: a run larger than the profile's tier can never be admitted; refuse it at submit."""
        tier = self.config.tier_gpus(self.profile)
        if tier and manifest.total_gpus > tier:
            raise BadInput(f"{manifest.name}: asks for {manifest.total_gpus} GPUs, the {self.profile.tier!r} tier "
                           f"allows {tier} at once; it could never run", code=ErrorCode.NEVER_FITS.value)

    # -- observing -----------------------------------------------------------------------------------

def _local_only(path: Any, manifest: Manifest, request: SubmitRequest) -> None:
    """What only the local agent schedules is refused here, not silently dropped."""
    used = [k for k, on in (("depends_on", manifest.depends_on), ("max_retries", manifest.max_retries),
                            ("gpu_memory", manifest.gpu_memory is not None), ("share", manifest.share),
                            ("--after", request.after), ("--hold", request.hold),
                            ("--begin", request.begin_at is not None)) if on]
    if used:
        raise BadInput(f"{path}: {', '.join(used)} work on local profiles only; not on a cluster",
                       code=ErrorCode.BAD_MANIFEST.value)


def _policy(path: Any) -> dict[str, int | None]:
    """The sweep's `parallel` and `max_failed` (the local agent's SweepPolicy reads the same fields)."""
    from backend.manifest import load_manifest

    sweep = load_manifest(path).sweep
    return {"parallel": getattr(sweep, "parallel", None), "max_failed": getattr(sweep, "max_failed", None)}


def _default_model(manifest_path: Any) -> Any:
    """DESIGN.md: the manifest's `model/` folder, else the manifest's own folder."""
    folder = manifest_path.parent / "model"
    return folder if folder.is_dir() else manifest_path.parent


def _zip_model(source: Any, max_mb: int = 500) -> bytes:
    """The model folder (or a given .zip, checked) as zip bytes, with the packaging rules (C102)."""
    import tempfile
    from pathlib import Path

    from backend.packaging import check_zip, zip_model

    src = Path(source)
    cap = max_mb * 1024 * 1024
    if src.is_file() and src.suffix == ".zip":
        check_zip(src, max_bytes=cap)
        return src.read_bytes()
    with tempfile.TemporaryDirectory(prefix="dlaas-model-") as tmp:
        dest = Path(tmp) / "model.zip"
        zip_model(src, dest, max_bytes=cap)
        return dest.read_bytes()
