"""Kubernetes objects for one run, as plain dicts (pure functions: no cluster, no client import).

A run is a batch/v1 Job that Kueue admits: it is created suspended, labelled with the profile's
LocalQueue and the manifest's WorkloadPriorityClass, and Kueue unsuspends it when quota is free.

Creating a run is two steps, because Kubernetes garbage collection needs the owner's uid:
  1. create the Job (from `render_job`); the API server assigns its uid;
  2. create the objects it owns (`render_owned(..., job_uid=uid)`): the ConfigMap holding the
     learner's wrapper script, the per-run Secret (S3 keys when the profile names no `s3_secret`,
     and the values of the manifest's `env` secrets) and, for learners > 1, the headless Service.
     Deleting the Job deletes them.
The pod may be admitted before step 2 ends; it then waits (ContainerCreating, or
CreateContainerConfigError for the Secret) until they exist, which the kubelet retries. No secret
value is ever written into the Job. The wrapper lives in the ConfigMap rather than in the Job's
command so that Jobs and Pods stay small: a sync lists every Job and Pod of the namespace.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.config import Config, Profile
    from backend.manifest.model import Manifest

from backend.errors import BadInput
from backend.runs import new_run_id

from .podspec import (  # noqa: F401  (re-exported: the names other modules and tests use)
    GPU_PRODUCT_LABELS,
    LEARNER,
    LOADER,
    RDZV_PORT,
    REMOTE,
    SECRET_ACCESS_KEY_ID,
    SECRET_SECRET_ACCESS_KEY,
    UPLOADER_PATH,
    WORK,
    RunSpec,
    S3Target,
    _env_secret_names,
    _learner_env,
    _loader_script,
    _node_affinity,
    _security,
    _uploader_env,
    cpu_quantity,
    framework_image,
    memory_quantity,
    s3_target,
    secret_name,
    service_name,
    work_size,
    wrapper_script,
)

LABEL_RUN = "dlaas.io/run-id"
LABEL_EXPERIMENT = "dlaas.io/experiment"
LABEL_USER = "dlaas.io/user"
LABEL_MANIFEST = "dlaas.io/manifest"
LABEL_LEARNER_COUNT = "dlaas.io/learners"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
ANN_NAME = "dlaas.io/name"
ANN_EXPERIMENT = "dlaas.io/experiment"
ANN_GPU_TYPE = "dlaas.io/gpu-type"
ANN_RESULTS = "dlaas.io/results"
ANN_SUBMITTED = "dlaas.io/submitted-at"
ANN_MAX_DURATION = "dlaas.io/max-duration-s"  # the manifest's max_duration (ETAs and budgets)

UID_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"
MASKED = "****"
WRAPPER_DIR = "/dlaas"
WRAPPER_FILE = "wrapper.sh"
WRAPPER_PATH = f"{WRAPPER_DIR}/{WRAPPER_FILE}"
STORING_FLAG = f"{WORK}/state/.wrapper/storing"  # JOB_STATE_DIR/.wrapper/storing, made by wrapper.sh
RUN_ID_RE = re.compile(r"^training-[a-z0-9]{8}$")

def label_value(text: str | None) -> str | None:
    """A label-safe form of free text (<= 63 characters of [A-Za-z0-9-_.], alphanumeric ends)."""
    if not text:
        return None
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    value = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)
    return value or None


def priority_class(priority: str) -> str:
    """A [priorities] name as its WorkloadPriorityClass name (a DNS-1123 name; `cluster setup` uses
    the same), for the Job's `kueue.x-k8s.io/priority-class` label."""
    name = re.sub(r"[^a-z0-9-]+", "-", priority.lower()).strip("-")[:63].strip("-")
    if not name:
        raise BadInput(f"priority {priority!r} gives no valid Kubernetes name")
    return name


def _labels(manifest: Manifest, spec: RunSpec) -> dict[str, str]:
    labels = {LABEL_RUN: spec.run_id, LABEL_USER: label_value(spec.user), LABEL_MANIFEST: label_value(manifest.name),
              LABEL_EXPERIMENT: label_value(spec.experiment)}
    return {k: v for k, v in labels.items() if v}


def _needs_run_secret(manifest: Manifest, target: S3Target) -> bool:
    has_keys = bool(target.access_key_id and target.secret_access_key)
    return (has_keys and not target.existing_secret) or bool(_env_secret_names(manifest))


def render_job(manifest: Manifest, spec: RunSpec, profile: Profile, config: Config) -> dict[str, Any]:
    """The batch/v1 Job of a run (suspended; Kueue admits it)."""
    if not RUN_ID_RE.match(spec.run_id):
        raise BadInput(f"run id {spec.run_id!r}: expected training-<8 lowercase alphanumerics>")
    k8s = profile.kubernetes
    target = s3_target(manifest, profile)
    run_secret = secret_name(spec.run_id)
    labels = _labels(manifest, spec)
    if manifest.priority not in config.all_priorities():
        known = ", ".join(sorted(config.all_priorities()))
        raise BadInput(f"priority {manifest.priority!r} is not in [priorities] (known: {known})")
    max_seconds = manifest.max_duration_seconds
    image = framework_image(manifest, config)
    mem = memory_quantity(manifest.memory)
    work = work_size(spec, k8s.work_headroom_gib)
    resources_: dict[str, Any] = {"requests": {"cpu": cpu_quantity(manifest.cpus), "memory": mem},
                                  "limits": {"memory": mem}}
    if k8s.request_work_storage:
        resources_["requests"]["ephemeral-storage"] = work
    if manifest.gpus:
        resources_["requests"]["nvidia.com/gpu"] = str(manifest.gpus)
        resources_["limits"]["nvidia.com/gpu"] = str(manifest.gpus)
    mounts = [{"name": "work", "mountPath": WORK}, {"name": "tmp", "mountPath": "/tmp"}]
    # The training data has its own volume: the loader fills it, the learner sees it read-only.
    data_mount = {"name": "data", "mountPath": f"{WORK}/data"}
    learner = {
        "name": LEARNER,
        "image": image,
        "command": ["/bin/sh", WRAPPER_PATH],
        "env": _learner_env(manifest, spec, target, run_secret, config),
        "resources": resources_,
        "volumeMounts": [*mounts, {**data_mount, "readOnly": True}, {"name": "dshm", "mountPath": "/dev/shm"},
                         {"name": "wrapper", "mountPath": WRAPPER_DIR, "readOnly": True}],
        "securityContext": _security(),
        "terminationMessagePolicy": "File",
        # Ready while training; not Ready once storing: the wrapper creates this flag when it starts
        # storing, and the kubelet's probe turns it into the pod's Ready condition, which the watch
        # brings (no log reads). Ready during training keeps Kueue's waitForPodsReady satisfied; the
        # generous timeout and threshold keep a slow probe on a busy node from looking like storing.
        "readinessProbe": {"exec": {"command": ["/bin/sh", "-c", f"test ! -e {STORING_FLAG}"]},
                           "periodSeconds": 5, "timeoutSeconds": 10, "failureThreshold": 3},
    }
    if manifest.learners > 1:
        learner["ports"] = [{"name": "rendezvous", "containerPort": RDZV_PORT}]
    loader = {
        "name": LOADER,
        "image": k8s.uploader_image,
        "command": ["/bin/sh", "-c", _loader_script(manifest, spec)],
        "env": _uploader_env(target, run_secret),
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "volumeMounts": [*mounts, data_mount],
        "securityContext": _security(),
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": k8s.termination_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [loader],
        "containers": [learner],
        "volumes": [
            {"name": "work", "emptyDir": {"sizeLimit": work}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "data", "emptyDir": {"sizeLimit": work}},  # bounded as /work, which is sized for it
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            {"name": "wrapper", "configMap": {"name": wrapper_configmap_name(spec.run_id), "defaultMode": 0o555}},
        ],
        "automountServiceAccountToken": False,
    }
    if k8s.service_account:
        pod_spec["serviceAccountName"] = k8s.service_account
    affinity = _node_affinity(manifest.gpu_type, k8s.gpu_product_label)
    if affinity:
        pod_spec["affinity"] = affinity
    if manifest.gpus:
        pod_spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if manifest.learners > 1:
        pod_spec["subdomain"] = service_name(spec.run_id)
    annotations = {
        ANN_NAME: manifest.name,
        ANN_RESULTS: f"{manifest.data_store.training_results.container}/{spec.run_id}",
    }
    if spec.experiment:
        annotations[ANN_EXPERIMENT] = spec.experiment
    if manifest.gpu_type:
        annotations[ANN_GPU_TYPE] = manifest.gpu_type
    if spec.submitted_at:
        annotations[ANN_SUBMITTED] = spec.submitted_at
    if max_seconds:
        annotations[ANN_MAX_DURATION] = str(max_seconds)
    job_spec: dict[str, Any] = {
        "suspend": True,
        "backoffLimit": 0,
        # A pod taken away (node drain, taint eviction, scheduler preemption) is not the run's failure:
        # the Job controller replaces it without counting it against backoffLimit (the Job docs' recipe).
        "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]},
        "ttlSecondsAfterFinished": k8s.ttl_seconds_after_finished,
        "completions": manifest.learners,
        "parallelism": manifest.learners,
        "template": {"metadata": {"labels": dict(labels), "annotations": {ANN_NAME: manifest.name}}, "spec": pod_spec},
    }
    if manifest.learners > 1:
        job_spec["completionMode"] = "Indexed"
    if max_seconds:
        # The deadline also covers image pulls, loading and storing, so they get an allowance on top.
        job_spec["activeDeadlineSeconds"] = max_seconds + k8s.startup_allowance_seconds + k8s.termination_grace_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": spec.run_id,
            "namespace": k8s.namespace,
            "labels": {**labels, QUEUE_LABEL: k8s.queue, PRIORITY_LABEL: priority_class(manifest.priority),
                       LABEL_LEARNER_COUNT: str(manifest.learners)},
            "annotations": annotations,
        },
        "spec": job_spec,
    }


def wrapper_configmap_name(run_id: str) -> str:
    return f"{run_id}-wrapper"


def _owner(run_id: str, job_uid: str) -> list[dict[str, Any]]:
    # No blockOwnerDeletion: with OwnerReferencesPermissionEnforcement (on by default on OpenShift)
    # setting it needs `update` on jobs/finalizers, which a user's Role rarely has; without it a
    # foreground delete of the Job simply does not wait for these objects.
    return [{"apiVersion": "batch/v1", "kind": "Job", "name": run_id, "uid": job_uid}]


def render_owned(
    manifest: Manifest,
    spec: RunSpec,
    profile: Profile,
    config: Config,
    *,
    job_uid: str,
    reveal_secrets: bool = False,
) -> list[dict[str, Any]]:
    """The objects the Job owns (wrapper ConfigMap, per-run Secret, headless Service), created once
    its uid is known."""
    k8s = profile.kubernetes
    labels = _labels(manifest, spec)
    out: list[dict[str, Any]] = [{
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": wrapper_configmap_name(spec.run_id), "namespace": k8s.namespace, "labels": labels,
                     "ownerReferences": _owner(spec.run_id, job_uid)},
        "data": {WRAPPER_FILE: wrapper_script()},
    }]
    target = s3_target(manifest, profile)
    if _needs_run_secret(manifest, target):
        data: dict[str, str] = {}
        if target.access_key_id and target.secret_access_key and not target.existing_secret:
            data[SECRET_ACCESS_KEY_ID] = target.access_key_id
            data[SECRET_SECRET_ACCESS_KEY] = target.secret_access_key
        for name in _env_secret_names(manifest):
            if name not in config.secrets:
                raise BadInput(f"env: secret {name!r} is not in the config's [secrets]")
            data[f"env-{name}"] = config.secrets[name].reveal()
        if not reveal_secrets:
            data = {k: MASKED for k in data}
        out.append({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": secret_name(spec.run_id), "namespace": k8s.namespace, "labels": labels,
                         "ownerReferences": _owner(spec.run_id, job_uid)},
            "stringData": data,
        })
    if manifest.learners > 1:
        out.append({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service_name(spec.run_id), "namespace": k8s.namespace, "labels": labels,
                         "ownerReferences": _owner(spec.run_id, job_uid)},
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": {JOB_NAME_LABEL: spec.run_id},
                "ports": [{"name": "rendezvous", "port": RDZV_PORT, "targetPort": RDZV_PORT}],
            },
        })
    return out


def render_submission(
    manifest: Manifest,
    run_id: str,
    profile: Profile,
    config: Config,
    *,
    user: str | None = None,
    experiment: str | None = None,
    params: dict[str, Any] | None = None,
    submitted_at: str | None = None,
    job_uid: str = UID_PLACEHOLDER,
    reveal_secrets: bool = False,
) -> list[dict[str, Any]]:
    """Every object of a run, Job first. Secrets are masked unless `reveal_secrets` (the create path)."""
    spec = RunSpec(run_id, user or _current_user(), experiment, dict(params or {}), submitted_at)
    job = render_job(manifest, spec, profile, config)
    return [job, *render_owned(manifest, spec, profile, config, job_uid=job_uid, reveal_secrets=reveal_secrets)]


def dry_run_yaml(
    manifest: Manifest,
    run_id: str,
    profile: Profile,
    config: Config,
    **kwargs: Any,
) -> str:
    """`submit --dry-run -o yaml` for a kubernetes profile: every object, secrets masked."""
    import yaml

    kwargs.pop("reveal_secrets", None)
    objs = render_submission(manifest, run_id, profile, config, **kwargs)
    header = (
        f"# dlaas-tui run {run_id} for profile {profile.name!r}: the Job is created first; the objects\n"
        "# after it are created once its uid is known (ownerReferences), so they go with it.\n"
        "# Secret values are masked here.\n"
    )
    return header + yaml.safe_dump_all(objs, sort_keys=False, default_flow_style=False, width=100)


def submission_yaml(manifest_paths: list[Any], profile: Profile, config: Config, *, name: str | None = None,
                    experiment: str | None = None, user: str | None = None) -> str:
    """`submit --dry-run -o yaml` on a kubernetes profile: every run of every manifest (one per sweep
    trial), each with a fresh run id, secrets masked. Needs no cluster."""
    from backend.manifest import load_manifest
    from backend.manifest.sweep import expand

    parts = []
    for path in manifest_paths:
        manifest = load_manifest(path)
        if name:
            manifest = manifest.model_copy(update={"name": name})
        for trial in expand(manifest):
            parts.append(dry_run_yaml(trial.manifest, new_run_id(), profile, config, user=user,
                                      experiment=experiment, params=trial.params))
    return "---\n".join(parts)




def _current_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"
