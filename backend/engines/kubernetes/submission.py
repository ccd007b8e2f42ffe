"""Submitting runs to the cluster: the model archive to the results bucket, the Job, then the objects
it owns (see render.py for why it is two steps). Mixed into KubernetesEngine.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from backend.errors import BadInput, EngineError
from backend.runs import ErrorCode, Run, RunEvent, RunState, SubmitRequest, iso, utcnow

from . import render
from .client import KubeError, jobs_path, path_for
from .runview import run_from_job

if TYPE_CHECKING:
    from backend.manifest.model import Manifest


class Submitting:
    """Needs from its engine: api, store, ledger, profile, config, user, _lock, _submitting,
    _registered, _manifests, _delete_job and _refresh_positions."""

    def submit_run(self, manifest: Manifest, *, run_id: str | None = None, model_zip: bytes | None = None,
                   experiment: str | None = None, params: dict[str, Any] | None = None,
                   manifest_text: str = "") -> Run:
        """Create one run: model.zip to the results bucket, the Job, then the objects it owns."""
        run_id = run_id or new_run_id()
        now = utcnow()
        spec = render.RunSpec(run_id, self.user or render._current_user(), experiment, dict(params or {}), iso(now))
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

    def _create(self, manifest: Manifest, spec: render.RunSpec, job: dict[str, Any], run_id: str, now: datetime,
                manifest_text: str) -> Run:
        created = self.api.request("POST", jobs_path(self.ns), body=job)
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
        run.submitted_at = now
        with self._lock:  # the sync loop writes runs too; one writer at a time keeps copies fresh
            self._registered[run_id] = utcnow()
            self.ledger.record(RunEvent(run_id, now, RunState.QUEUED, "submitted"))
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
            trials = expand(manifest)
            sizes.append((manifest, len(trials)))
            for trial in trials:
                render.render_job(trial.manifest, render.RunSpec("training-00000000"), self.profile, self.config)
                planned.append((path, trial))
        if not request.dry_run:  # over the profile's budget: refused with the figures, nothing created
            from backend.budget import check_budget

            check_budget(getattr(self, "_backend", None) or self, sizes, engine=self)
        if request.dry_run:
            return [run_from_job(render.render_job(t.manifest, render.RunSpec(new_run_id(), self.user or "unknown",
                                                                              request.experiment, t.params),
                                                   self.profile, self.config), self.config) for _, t in planned]
        runs, zips = [], {}
        for path, trial in planned:
            source = request.model or _default_model(path)
            if source not in zips:
                zips[source] = _zip_model(source, self.profile.max_model_mb)
            runs.append(self.submit_run(trial.manifest, model_zip=zips[source], experiment=request.experiment,
                                        params=trial.params, manifest_text=path.read_text()))
        return runs

    def check_fits(self, manifest: Manifest) -> None:
        """C104: a run larger than the profile's tier can never be admitted; refuse it at submit."""
        tier = self.config.tier_gpus(self.profile)
        if tier and manifest.total_gpus > tier:
            raise BadInput(f"{manifest.name}: asks for {manifest.total_gpus} GPUs, the {self.profile.tier!r} tier "
                           f"allows {tier} at once; it could never run", code=ErrorCode.NEVER_FITS.value)

    # -- observing -----------------------------------------------------------------------------------

def new_run_id() -> str:
    import secrets
    import string

    alphabet = string.ascii_lowercase + string.digits
    return "training-" + "".join(secrets.choice(alphabet) for _ in range(8))


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
