"""Runs and devices as the UI sees them, built from cluster objects (pure functions)."""
from __future__ import annotations

from typing import Any

from backend.runs import Device, Inventory, Run, RunState, utcnow

from . import render
from .states import parse_time

GPU = "nvidia.com/gpu"


def canonical_gpu(name: str | None) -> str | None:
    """A node label or NVML name as a canonical GPU type (H100, A100, ...); unknown names pass through."""
    from backend.cost import canonical_gpu_type

    if not name:
        return None
    return canonical_gpu_type(name) or name


def flavor_gpu(workload: dict[str, Any] | None) -> str | None:
    """The canonical GPU type named by the ResourceFlavor Kueue assigned for nvidia.com/gpu, if any."""
    from backend.cost import canonical_gpu_type

    admission = ((workload or {}).get("status") or {}).get("admission") or {}
    for assignment in admission.get("podSetAssignments") or []:
        flavor = (assignment.get("flavors") or {}).get(GPU)
        if flavor:
            return canonical_gpu_type(flavor)
    return None


def assigned_label(node: str, gpus: int, gpu_type: str | None) -> str:
    if gpus:
        return f"{node}: {gpus}×{gpu_type or 'GPU'}"
    return f"{node}: cpu"


def _learner_gpus(job: dict[str, Any]) -> int:
    for c in ((job.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []:
        if c.get("name") == render.LEARNER:
            return int(((c.get("resources") or {}).get("limits") or {}).get(GPU, 0) or 0)
    return 0


def _priority(label: str, config: Any) -> str:
    """The [priorities] name behind a priority-class label (the label is its DNS-cleaned form)."""
    if config is not None:
        for name in config.all_priorities():
            if render.priority_class(name) == label:
                return name
    return label


def run_from_job(job: dict[str, Any], config: Any = None) -> Run:
    """The run a Job stands for, from its labels and annotations (QUEUED until observed)."""
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    ann = meta.get("annotations") or {}
    learners = int((job.get("spec") or {}).get("completions") or labels.get(render.LABEL_LEARNER_COUNT) or 1)
    results = ann.get(render.ANN_RESULTS, "")
    gpu_type = ann.get(render.ANN_GPU_TYPE)
    return Run(
        id=meta.get("name", ""),
        name=ann.get(render.ANN_NAME) or labels.get(render.LABEL_MANIFEST) or meta.get("name", ""),
        state=RunState.QUEUED,
        submitted_at=parse_time(ann.get(render.ANN_SUBMITTED)) or parse_time(meta.get("creationTimestamp")) or utcnow(),
        experiment=ann.get(render.ANN_EXPERIMENT) or labels.get(render.LABEL_EXPERIMENT),
        gpus=_learner_gpus(job) * learners,
        gpu_type=canonical_gpu(gpu_type) if gpu_type else None,
        learners=learners,
        priority=_priority(labels.get(render.PRIORITY_LABEL, "normal"), config),
        results_bucket=results.split("/", 1)[0] or None,
        manifest_name=labels.get(render.LABEL_MANIFEST) or ann.get(render.ANN_NAME),
        max_duration_s=_max_duration(job, config),
    )


def _max_duration(job: dict[str, Any], config: Any) -> float | None:
    """The manifest's max_duration, as render recorded it (the Job's deadline adds allowances)."""
    ann = (job.get("metadata") or {}).get("annotations") or {}
    try:
        return float(ann[render.ANN_MAX_DURATION])
    except (KeyError, TypeError, ValueError):
        return None


def inventory_from_nodes(nodes: list[dict[str, Any]], product_label: str, held: dict[str, str],
                         tier_gpus: int) -> Inventory:
    """One Device per allocatable GPU of each node (the cluster does not say which device is whose)."""
    devices: list[Device] = []
    for node in nodes:
        meta = node.get("metadata") or {}
        count = int(((node.get("status") or {}).get("allocatable") or {}).get(GPU, 0) or 0)
        product = (meta.get("labels") or {}).get(product_label) or "GPU"
        for i in range(count):
            devices.append(Device(
                index=len(devices),
                uuid=f"{meta.get('name')}/gpu{i}",
                name=product,
                gpu_type=canonical_gpu(product),
                held_by=held.get(meta.get("name", "")) if i == 0 else None,
            ))
    msg = "" if devices else "no node in the cluster reports nvidia.com/gpu"
    return Inventory(devices=tuple(devices), nvml_available=False, message=msg, tier_gpus=tier_gpus)
