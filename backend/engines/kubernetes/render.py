"""Kubernetes objects for one run, as plain dicts (pure functions: no cluster, no client import).

A run is a batch/v1 Job that Kueue admits: it is created suspended, labelled with the profile's
LocalQueue and the manifest's WorkloadPriorityClass, and Kueue unsuspends it when quota is free.

Creating a run is two steps, because Kubernetes garbage collection needs the owner's uid:
  1. create the Job (from `render_job`); the API server assigns its uid;
  2. create the objects it owns (`render_owned(..., job_uid=uid)`): the per-run Secret (S3 keys when
     the profile names no `s3_secret`, and the values of the manifest's `env` secrets) and, for
     learners > 1, the headless Service. Deleting the Job deletes them.
The pod may be admitted before step 2 ends; its containers then wait (CreateContainerConfigError)
until the Secret exists, which the kubelet retries. No secret value is ever written into the Job.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.config import Config, Profile
    from backend.manifest.model import Manifest

from backend.errors import BadInput

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

LEARNER = "learner"
LOADER = "loader"
RDZV_PORT = 29500
WORK = "/work"
UPLOADER_PATH = "/work/bin/rclone"
REMOTE = "dlaas"  # rclone remote name configured through RCLONE_CONFIG_DLAAS_* variables
SECRET_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
SECRET_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
UID_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"
MASKED = "****"
RUN_ID_RE = re.compile(r"^training-[a-z0-9]{8}$")

# Node label values of `nvidia.com/gpu.product` (GPU feature discovery) for the canonical types.
# A gpu_type that is not a key here is used as the label value itself.
GPU_PRODUCT_LABELS: dict[str, tuple[str, ...]] = {
    "K80": ("Tesla-K80",),
    "P100": ("Tesla-P100-PCIE-16GB", "Tesla-P100-SXM2-16GB"),
    "V100": ("Tesla-V100-SXM2-16GB", "Tesla-V100-SXM2-32GB", "Tesla-V100-PCIE-16GB", "Tesla-V100-PCIE-32GB"),
    "T4": ("Tesla-T4",),
    "A10": ("NVIDIA-A10",),
    "L4": ("NVIDIA-L4",),
    "L40S": ("NVIDIA-L40S",),
    "A100": ("NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-PCIE-40GB", "NVIDIA-A100-80GB-PCIe"),
    "H100": ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe", "NVIDIA-H100-NVL"),
    "H200": ("NVIDIA-H200", "NVIDIA-H200-141GB-HBM3e"),
    "B200": ("NVIDIA-B200",),
}



def memory_quantity(memory: str) -> str:
    """A manifest memory size as a Kubernetes quantity (DESIGN.md's mapping: MB -> M, MiB -> Mi)."""
    from backend.manifest.units import memory_to_kubernetes

    try:
        return memory_to_kubernetes(memory)
    except ValueError as exc:
        raise BadInput(f"memory: {exc}") from None


def label_value(text: str | None) -> str | None:
    """A label-safe form of free text (<= 63 characters of [A-Za-z0-9-_.], alphanumeric ends)."""
    if not text:
        return None
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    value = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)
    return value or None


def cpu_quantity(cpus: float) -> str:
    return str(int(cpus)) if float(cpus).is_integer() else f"{int(round(cpus * 1000))}m"


def wrapper_script() -> str:
    return resources.files(__package__).joinpath("wrapper.sh").read_text()


@dataclass(frozen=True)
class RunSpec:
    """Everything about one run that rendering needs beyond the manifest, the profile and the config."""

    run_id: str
    user: str = "unknown"
    experiment: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    submitted_at: str | None = None  # ISO-8601, kept as an annotation


@dataclass(frozen=True)
class S3Target:
    endpoint_url: str | None
    region: str | None
    access_key_id: str | None
    secret_access_key: str | None
    existing_secret: str | None  # the profile's `s3_secret`, used instead of keys we hold


def s3_target(manifest: Manifest, profile: Profile) -> S3Target:
    """Where the run's data and results live: the manifest's connection (FfDL's way), else the profile's."""
    conn = manifest.data_store.connection
    if conn is not None and conn.auth_url:
        return S3Target(
            conn.auth_url,
            conn.region,
            _reveal(conn.user_name),
            _reveal(conn.password),
            None,
        )
    s3 = profile.s3
    secret = profile.kubernetes.s3_secret
    return S3Target(
        s3.endpoint_url,
        s3.region,
        None if secret else _reveal(s3.access_key_id),
        None if secret else _reveal(s3.secret_access_key),
        secret,
    )


def _reveal(value: Any) -> str | None:
    if value is None:
        return None
    return value.reveal() if hasattr(value, "reveal") else str(value)


def framework_image(manifest: Manifest, config: Config) -> str:
    fw = manifest.framework
    versions = config.frameworks.get(fw.name)
    if not versions:
        known = ", ".join(sorted(config.frameworks)) or "none configured"
        raise BadInput(f"framework {fw.name!r} has no image in [frameworks] (known: {known})")
    entry = versions.get(fw.version or "") if fw.version else None
    if entry is None and not fw.version and len(versions) == 1:
        entry = next(iter(versions.values()))
    if entry is None or not entry.image:
        known = ", ".join(sorted(v for v, e in versions.items() if e.image)) or "none with an image"
        raise BadInput(f"framework {fw.name} {fw.version or ''}: no image in [frameworks.{fw.name}] (versions: {known})")
    return entry.image


def secret_name(run_id: str) -> str:
    return f"{run_id}-secrets"


def service_name(run_id: str) -> str:
    return run_id


def _labels(manifest: Manifest, spec: RunSpec) -> dict[str, str]:
    labels = {LABEL_RUN: spec.run_id, LABEL_USER: label_value(spec.user), LABEL_MANIFEST: label_value(manifest.name),
              LABEL_EXPERIMENT: label_value(spec.experiment)}
    return {k: v for k, v in labels.items() if v}


def _secret_of(value: Any) -> str | None:
    """The config secret an env entry names (`{secret: NAME}`), or None for a plain value."""
    if isinstance(value, dict):
        return value.get("secret")
    return getattr(value, "secret", None)


def _env_secret_names(manifest: Manifest) -> list[str]:
    return sorted({name for v in manifest.env.values() if (name := _secret_of(v))})


def _needs_run_secret(manifest: Manifest, target: S3Target) -> bool:
    has_keys = bool(target.access_key_id and target.secret_access_key)
    return (has_keys and not target.existing_secret) or bool(_env_secret_names(manifest))


def _key_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _uploader_env(target: S3Target, run_secret: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": f"RCLONE_CONFIG_{REMOTE.upper()}_TYPE", "value": "s3"},
        {"name": f"RCLONE_CONFIG_{REMOTE.upper()}_PROVIDER", "value": "Other" if target.endpoint_url else "AWS"},
        {"name": f"RCLONE_CONFIG_{REMOTE.upper()}_FORCE_PATH_STYLE", "value": "true"},
        {"name": "RCLONE_CONFIG", "value": "/tmp/rclone.conf"},
    ]
    if target.endpoint_url:
        env.append({"name": f"RCLONE_CONFIG_{REMOTE.upper()}_ENDPOINT", "value": target.endpoint_url})
    if target.region:
        env.append({"name": f"RCLONE_CONFIG_{REMOTE.upper()}_REGION", "value": target.region})
    secret = target.existing_secret or (run_secret if target.access_key_id and target.secret_access_key else None)
    if secret:
        env.append(_key_env(f"RCLONE_CONFIG_{REMOTE.upper()}_ACCESS_KEY_ID", secret, SECRET_ACCESS_KEY_ID))
        env.append(_key_env(f"RCLONE_CONFIG_{REMOTE.upper()}_SECRET_ACCESS_KEY", secret, SECRET_SECRET_ACCESS_KEY))
    else:  # no keys held anywhere: the pod's own identity (IRSA, workload identity)
        env.append({"name": f"RCLONE_CONFIG_{REMOTE.upper()}_ENV_AUTH", "value": "true"})
    return env


def _security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _loader_script(manifest: Manifest, spec: RunSpec) -> str:
    ds = manifest.data_store
    results = f"{REMOTE}:{ds.training_results.container}/{spec.run_id}"
    data = f"{REMOTE}:{ds.training_data.container}"
    if ds.training_data.prefix:
        data += "/" + ds.training_data.prefix.strip("/")
    # `sh` and `unzip` come from the uploader image (busybox in rclone's); the framework image needs neither.
    return "\n".join([
        "set -eu",
        f"mkdir -p {WORK}/bin {WORK}/model {WORK}/data",
        f"cp \"$(command -v rclone)\" {UPLOADER_PATH}",
        f"rclone copyto '{results}/_submitted_code/model.zip' /tmp/model.zip",
        f"unzip -q -o /tmp/model.zip -d {WORK}/model",
        f"rclone copy '{data}' {WORK}/data",
        "echo 'dlaas: loaded model and data'",
    ])


def _learner_env(manifest: Manifest, spec: RunSpec, target: S3Target, run_secret: str, config: Config) -> list[dict[str, Any]]:
    ds = manifest.data_store
    max_seconds = manifest.max_duration_seconds or 0
    env: list[dict[str, Any]] = [
        {"name": "DATA_DIR", "value": f"{WORK}/data"},
        {"name": "MODEL_DIR", "value": f"{WORK}/model"},
        {"name": "RESULT_DIR", "value": f"{WORK}/results"},
        {"name": "LOG_DIR", "value": f"{WORK}/logs"},
        {"name": "JOB_STATE_DIR", "value": f"{WORK}/state"},
        {"name": "CHECKPOINT_DIR", "value": f"{WORK}/results/checkpoints"},
        {"name": "TRAINING_ID", "value": spec.run_id},
        {"name": "NUM_LEARNERS", "value": str(manifest.learners)},
        {"name": "GPU_COUNT", "value": str(manifest.gpus)},
        {"name": "HOME", "value": "/tmp"},
        {"name": "DLAAS_COMMAND", "value": manifest.framework.command},
        {"name": "DLAAS_MAX_SECONDS", "value": str(max_seconds)},
        {"name": "DLAAS_UPLOADER", "value": UPLOADER_PATH},
        {"name": "DLAAS_RESULTS_REMOTE", "value": f"{REMOTE}:{ds.training_results.container}/{spec.run_id}"},
    ]
    if manifest.learners > 1:
        index = {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
        env += [
            {"name": "LEARNER_ID", "valueFrom": index},
            {"name": "RANK", "valueFrom": index},
            {"name": "WORLD_SIZE", "value": str(manifest.learners)},
            {"name": "MASTER_ADDR", "value": f"{spec.run_id}-0.{service_name(spec.run_id)}"},
            {"name": "MASTER_PORT", "value": str(RDZV_PORT)},
        ]
    else:
        env.append({"name": "LEARNER_ID", "value": "0"})
    if spec.params:
        env.append({"name": "DLAAS_PARAMS_JSON", "value": json.dumps(spec.params, sort_keys=True)})
        for name, value in sorted(spec.params.items()):
            hp = "HP_" + re.sub(r"[^A-Z0-9_]", "_", name.upper())
            if hp not in manifest.env:  # a sweep trial's manifest already carries its HP_ entries
                env.append({"name": hp, "value": str(value)})
    for name, value in manifest.env.items():
        secret = _secret_of(value)
        if secret is not None:
            if secret not in config.secrets:
                raise BadInput(f"env {name}: secret {secret!r} is not in the config's [secrets]")
            env.append(_key_env(name, run_secret, f"env-{secret}"))
        else:
            env.append({"name": name, "value": str(value)})
    env += _uploader_env(target, run_secret)
    return env


def _node_affinity(gpu_type: str | None, label: str) -> dict[str, Any] | None:
    if not gpu_type:
        return None
    values = list(GPU_PRODUCT_LABELS.get(gpu_type.upper(), (gpu_type,)))
    term = {"matchExpressions": [{"key": label, "operator": "In", "values": values}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


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
    resources_: dict[str, Any] = {"requests": {"cpu": cpu_quantity(manifest.cpus), "memory": mem}, "limits": {"memory": mem}}
    if manifest.gpus:
        resources_["requests"]["nvidia.com/gpu"] = str(manifest.gpus)
        resources_["limits"]["nvidia.com/gpu"] = str(manifest.gpus)
    mounts = [{"name": "work", "mountPath": WORK}, {"name": "tmp", "mountPath": "/tmp"}]
    learner = {
        "name": LEARNER,
        "image": image,
        "command": ["/bin/sh", "-c", wrapper_script(), "dlaas-wrapper"],
        "env": _learner_env(manifest, spec, target, run_secret, config),
        "resources": resources_,
        "volumeMounts": [*mounts, {"name": "dshm", "mountPath": "/dev/shm"}],
        "securityContext": _security(),
        "terminationMessagePolicy": "File",
    }
    if manifest.learners > 1:
        learner["ports"] = [{"name": "rendezvous", "containerPort": RDZV_PORT}]
    loader = {
        "name": LOADER,
        "image": k8s.uploader_image,
        "command": ["/bin/sh", "-c", _loader_script(manifest, spec)],
        "env": _uploader_env(target, run_secret),
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "volumeMounts": mounts,
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
            {"name": "work", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
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
    job_spec: dict[str, Any] = {
        "suspend": True,
        "backoffLimit": 0,
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
            "labels": {**labels, QUEUE_LABEL: k8s.queue, PRIORITY_LABEL: manifest.priority,
                       LABEL_LEARNER_COUNT: str(manifest.learners)},
            "annotations": annotations,
        },
        "spec": job_spec,
    }


def _owner(run_id: str, job_uid: str) -> list[dict[str, Any]]:
    return [{"apiVersion": "batch/v1", "kind": "Job", "name": run_id, "uid": job_uid, "blockOwnerDeletion": True}]


def render_owned(
    manifest: Manifest,
    spec: RunSpec,
    profile: Profile,
    config: Config,
    *,
    job_uid: str,
    reveal_secrets: bool = False,
) -> list[dict[str, Any]]:
    """The objects the Job owns (per-run Secret, headless Service), created once its uid is known."""
    k8s = profile.kubernetes
    labels = _labels(manifest, spec)
    out: list[dict[str, Any]] = []
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

    from .engine import new_run_id

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
