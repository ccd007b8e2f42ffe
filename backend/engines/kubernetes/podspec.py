"""The pod of a run: the loader (init) container, the learner container and its environment, the
S3 credentials they use, and the mapping of manifest resources onto Kubernetes quantities.
Pure functions over the manifest, profile and config; `render.py` wraps them in the Job.
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

LEARNER = "learner"


LOADER = "loader"


RDZV_PORT = 29500


WORK = "/work"


UPLOADER_PATH = "/work/bin/rclone"


# Inside RESULT_DIR, so the wrapper's upload of the results (when the command ends, and when the pod
# is told to stop) stores it as `<run-id>/checkpoints/`, where the loader of a later attempt finds it.
CHECKPOINT_DIR = "/work/results/checkpoints"


REMOTE = "dlaas"  # rclone remote name configured through RCLONE_CONFIG_DLAAS_* variables


SECRET_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"


SECRET_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"


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


def cpu_quantity(cpus: float) -> str:
    return str(int(cpus)) if float(cpus).is_integer() else f"{int(round(cpus * 1000))}m"


GIB = 1024 ** 3


def work_size(spec: RunSpec, headroom_gib: int) -> str:
    """The `/work` emptyDir's sizeLimit and the learner's ephemeral-storage request: the data as
    loaded, the model archive and its unpacked copy (taken as three times the archive), plus
    headroom for results, checkpoints and logs, in whole GiB."""
    need = (spec.data_bytes or 0) + 3 * (spec.model_bytes or 0)
    return f"{-(-need // GIB) + headroom_gib}Gi"


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
    data_bytes: int | None = None  # the training data's size in the store, when known (sizes /work)
    model_bytes: int | None = None  # the model archive's size


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
    """The learner's image: the built-in table (images.py) under the config's [frameworks]."""
    from .images import framework_image as resolve

    return resolve(manifest, config)


def secret_name(run_id: str) -> str:
    return f"{run_id}-secrets"


def service_name(run_id: str) -> str:
    return run_id


def _secret_of(value: Any) -> str | None:
    """The config secret an env entry names (`{secret: NAME}`), or None for a plain value."""
    if isinstance(value, dict):
        return value.get("secret")
    return getattr(value, "secret", None)


def _env_secret_names(manifest: Manifest) -> list[str]:
    return sorted({name for v in manifest.env.values() if (name := _secret_of(v))})


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
        # A resumed or re-admitted run: the checkpoints an earlier attempt stored go back into
        # CHECKPOINT_DIR (an empty prefix is no error: a first attempt has none).
        f"mkdir -p {CHECKPOINT_DIR}",
        f"if rclone copy '{results}/checkpoints' {CHECKPOINT_DIR} 2>/dev/null"
        f" && [ -n \"$(ls -A {CHECKPOINT_DIR})\" ]; then echo 'dlaas: checkpoints restored'; fi",
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
        {"name": "CHECKPOINT_DIR", "value": CHECKPOINT_DIR},
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
