"""Resuming a HALTED or FAILED run on the cluster: its Job again, under the same name.

The run's checkpoints live in the results bucket under `<run-id>/checkpoints/` (CHECKPOINT_DIR is
inside RESULT_DIR, which the wrapper uploads when the command ends and when the pod is told to stop);
the new pod's loader copies them back before the command starts (podspec._loader_script). The
ledger keeps every attempt's events, so the bill sums every attempt's billed intervals.
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from backend.errors import BadInput, EngineError, ReadOnly
from backend.runs import RESUMABLE_STATES, Run, RunEvent, RunState, attempt_of, resume_message

from .ledger import AgentLedger

if TYPE_CHECKING:
    from backend.manifest.model import Manifest

KubernetesEngine = Any  # the engine calls in here (engine.resume); naming its class would be an import circle

JOB_GONE_TIMEOUT = 60.0  # a halted Job is deleted in the foreground: its pods get their grace period


def trial_manifest(text: str, run: Run) -> Manifest:
    """The manifest this run was created from: the submitted text, and for a sweep the trial whose
    parameters are the run's."""
    from backend.manifest import parse_manifest
    from backend.manifest.sweep import expand

    result = parse_manifest(text, f"{run.id} manifest")
    if result.manifest is None:
        raise BadInput(f"{run.id}: its stored manifest no longer parses; submit it again")
    trials = expand(result.manifest)
    if len(trials) == 1 and not run.params:
        return trials[0].manifest
    want = json.dumps(run.params, sort_keys=True, default=str)
    for trial in trials:
        if json.dumps(trial.params, sort_keys=True, default=str) == want:
            return trial.manifest
    raise BadInput(f"{run.id}: no trial of its sweep has parameters {want}; submit it again")


def _wait_job_gone(engine: KubernetesEngine, run_id: str, timeout: float = JOB_GONE_TIMEOUT) -> None:
    if not engine._job_exists(run_id):
        return
    engine._delete_job(run_id)
    deadline = time.monotonic() + timeout
    while engine._job_exists(run_id):
        if time.monotonic() > deadline:
            raise EngineError(f"{run_id}: its previous Job is still being deleted; try again in a moment")
        time.sleep(0.2)


def resume_run(engine: KubernetesEngine, run_id: str) -> Run:
    if engine.profile.read_only:
        raise ReadOnly(f"profile {engine.profile.name!r} is read-only: resume is not allowed")
    run = engine.get_run(run_id)
    if run.state not in RESUMABLE_STATES:
        raise BadInput(f"{run_id} is {run.state.value}: only a HALTED or FAILED run can be resumed")
    manifest = trial_manifest(engine.manifest_text(run_id), run)
    _wait_job_gone(engine, run_id)
    attempt = attempt_of(engine.ledger.events(run_id)) + 1
    now = engine.cluster_now()
    message = resume_message(attempt)
    text = engine.manifest_text(run_id)
    persistent = isinstance(engine.ledger, AgentLedger)  # the agent creates held runs' Jobs
    engine._submitting.add(run_id)  # until its Job exists, a sync must not call it vanished
    try:
        with engine._lock:
            if not engine.ledger.reopen(_queued(run, message), RunEvent(run_id, now, RunState.QUEUED, message),
                                        manifest=manifest.model_dump(mode="json", by_alias=True),
                                        manifest_text=text):
                raise BadInput(f"{run_id} is {engine.get_run(run_id).state.value}: it can no longer be resumed")
        if persistent:
            if not engine._wake_agent():
                engine.release_held()
        else:
            _create_again(engine, manifest, run, text)
    finally:
        engine._submitting.discard(run_id)
    return engine.get_run(run_id)


def _create_again(engine: KubernetesEngine, manifest: Manifest, run: Run, text: str) -> None:
    try:
        engine.submit_run(manifest, run_id=run.id, experiment=run.experiment, params=run.params, manifest_text=text)
    except Exception as exc:
        from .states import Observation

        with engine._lock:
            engine._transition(engine.get_run(run.id), Observation(
                RunState.FAILED, message=f"resume: could not create the Job: {exc}", error_code="S301"))
        raise


def _queued(run: Run, message: str) -> Run:
    fields: dict[str, Any] = {"state": RunState.QUEUED, "message": message, "error_code": None,
                              "finished_at": None, "queue_position": None, "assigned": []}
    return run.replace(**fields)
