"""Manifests in other dialects: WML's training definition and plain FfDL.

Both outputs are for reading and for moving to those systems by hand, so secrets are always
masked: a converted file never carries a key. What the target dialect cannot express is dropped and
listed in `notes` (the CLI prints them on stderr).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..config import MASK
from .model import Manifest

# Longest names first so that L40S is not read as L4, or A100 as A10.
_GPU_TYPES = ("L40S", "P100", "V100", "A100", "H100", "H200", "B200", "K40", "K80", "A10", "L4", "T4")
_GPU_RE = re.compile("|".join(_GPU_TYPES), re.IGNORECASE)
FFDL_KEYS = ("name", "description", "version", "gpus", "gpu_type", "cpus", "memory", "learners",
             "data_stores", "framework", "evaluation_metrics")


@dataclass
class Converted:
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_yaml(self) -> str:
        return yaml.dump(self.data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def gpu_family(gpu_type: str | None) -> str | None:
    """`nvidia-TeslaK80` -> `K80`; None when no known type is named."""
    if not gpu_type:
        return None
    match = _GPU_RE.search(gpu_type)
    return match.group(0).upper() if match else None


def compute_configuration_name(manifest: Manifest) -> str:
    """WML's compute configuration: `k80`, `k80x2`, `v100x4`; `cpu` for a run without GPUs."""
    if manifest.gpus == 0:
        return "cpu"
    family = (gpu_family(manifest.gpu_type) or "K80").lower()
    return family if manifest.gpus == 1 else f"{family}x{manifest.gpus}"


def _connection(manifest: Manifest) -> dict[str, Any]:
    conn = manifest.data_store.connection
    if conn is None:
        return {}
    out: dict[str, Any] = {}
    if conn.auth_url:
        out["endpoint_url"] = conn.auth_url
    if conn.user_name:
        out["access_key_id"] = MASK
    if conn.password:
        out["secret_access_key"] = MASK
    if conn.region:
        out["region"] = conn.region
    return out


def to_wml(manifest: Manifest) -> Converted:
    notes = []
    store = manifest.data_store
    framework: dict[str, Any] = {"name": manifest.framework.name}
    if manifest.framework.version:
        framework["version"] = manifest.framework.version
    compute: dict[str, Any] = {"name": compute_configuration_name(manifest)}
    if manifest.learners > 1:
        compute["nodes"] = manifest.learners
    if manifest.gpus and manifest.gpu_type and gpu_family(manifest.gpu_type) is None:
        notes.append(f"gpu_type {manifest.gpu_type!r} is not a WML type; compute_configuration uses k80")
    definition: dict[str, Any] = {"name": manifest.name}
    if manifest.description:
        definition["description"] = manifest.description
    definition["framework"] = framework
    definition["execution"] = {"command": manifest.framework.command, "compute_configuration": compute}
    kind = "s3" if store.is_s3 else "local"
    source: dict[str, Any] = {"bucket": store.training_data.container}
    if store.training_data.prefix:
        source["prefix"] = store.training_data.prefix
    data_ref: dict[str, Any] = {"name": f"{store.id}-data", "type": kind}
    results_ref: dict[str, Any] = {"name": f"{store.id}-results", "type": kind}
    connection = _connection(manifest)
    if connection:
        data_ref["connection"] = connection
        results_ref["connection"] = dict(connection)
    data_ref["source"] = source
    results_ref["target"] = {"bucket": store.training_results.container}
    for key in ("env", "sweep", "max_duration", "evaluation_metrics"):
        if getattr(manifest, key):
            notes.append(f"{key} has no place in WML's training definition; dropped")
    if manifest.cpus != 1 or manifest.memory != "4GiB":
        notes.append("cpus and memory are set by WML's compute configuration; dropped")
    return Converted(
        {
            "model_definition": definition,
            "training_data_reference": data_ref,
            "training_results_reference": results_ref,
        },
        notes,
    )


def to_ffdl(manifest: Manifest) -> Converted:
    dumped = manifest.model_dump(mode="json", exclude_none=True)  # Secret fields dump as ****
    data = {key: dumped[key] for key in FFDL_KEYS if key in dumped}
    data["cpus"] = manifest.cpus
    notes = [f"{key} is not part of FfDL's manifest; dropped"
             for key in ("env", "max_duration", "sweep") if getattr(manifest, key)]
    if manifest.priority != "normal":
        notes.append("priority is not part of FfDL's manifest; dropped")
    if manifest.sweep and re.search(r"\$\{(" + "|".join(map(re.escape, manifest.sweep.parameters)) + r")\}",
                                    manifest.framework.command):
        notes.append("framework.command uses sweep parameters (${NAME}); FfDL will not fill them in")
    return Converted(data, notes)


CONVERTERS = {"wml": to_wml, "ffdl": to_ffdl}
