"""JSON Schema of the manifest, for editors (yaml-language-server) and other tools.

Generated from the pydantic model so it cannot drift from what the parser accepts, then given what
pydantic cannot say on its own: descriptions, the memory and duration patterns, one data store, key
patterns, and the `values` or `min`/`max` rule of a sweep parameter. Unknown keys stay allowed, as in
the parser (they are warnings there, since FfDL manifests carry keys we do not use).
"""
from __future__ import annotations

from typing import Any

SCHEMA_ID = "https://dlaas-tui.invalid/schemas/manifest.json"
MEMORY_PATTERN = r"^\s*(\d+(\.\d*)?|\.\d+)\s*(MB|MiB|GB|GiB|TB|TiB|Mb|Gb)\s*$"
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?[dhms])+\s*$"

DESCRIPTIONS: dict[str, dict[str, str]] = {
    "Manifest": {
        "": "A dlaas-tui training manifest (FfDL's dialect plus sweeps).",
        "name": "Name of the training run (required).",
        "description": "Free text shown with the run.",
        "version": "The manifest's own version, kept as text.",
        "gpus": "GPUs per learner (whole number >= 0); a run holds gpus x learners.",
        "gpu_type": "GPU type such as V100, A100, H100 or an alias (nvidia-TeslaV100).",
        "cpus": "CPUs per learner (> 0, decimals allowed).",
        "memory": "Memory per learner: a number and one of MB, MiB, GB, GiB, TB, TiB (FfDL's Mb/Gb = MB/GB).",
        "learners": "Number of learners (>= 1); more than one get MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK.",
        "data_stores": "Exactly one data store: where training data is read and results are written.",
        "framework": "What runs: framework name and version, and the command (run by sh -c in MODEL_DIR).",
        "env": "Environment variables: NAME: \"value\" or NAME: {secret: NAME_IN_CONFIG}.",
        "evaluation_metrics": "Kept for FfDL compatibility.",
        "max_duration": "Longest the command may run, e.g. 90m, 2h, 30s, 1h30m (then C203).",
        "priority": "A priority name from the config's [priorities] (default normal).",
        "sweep": "Run many variants: grid or random over parameters.",
        "gpu_memory": "Local engine: most GPU memory each learner may use on its GPU (e.g. 20GiB); over it the "
                      "run is stopped (C207). Needs gpus >= 1.",
        "share": "Local engine: let this run share a GPU with other sharing runs while their gpu_memory caps "
                 "fit. Needs gpu_memory.",
    },
    "DataStore": {
        "id": "A name for the store.",
        "type": "s3_datastore or mount_cos (an S3-compatible store) or local (the embedded store).",
        "training_data": "Bucket (container) and optional prefix mounted at DATA_DIR.",
        "training_results": "Bucket (container) that receives results under <run-id>/.",
        "connection": "Endpoint and keys; without it the profile's store is used.",
    },
    "Connection": {
        "auth_url": "S3 endpoint URL.",
        "user_name": "Access key id (masked in every output).",
        "password": "Secret access key (masked in every output).",
        "region": "Region of the endpoint.",
    },
    "BucketRef": {"container": "Bucket name.", "prefix": "Key prefix inside the bucket."},
    "Framework": {
        "name": "Framework name (pytorch, python, tensorflow, ...), mapped by the config's [frameworks].",
        "version": "Framework version, kept as text.",
        "command": "Shell command; sees DATA_DIR, RESULT_DIR, MODEL_DIR, LOG_DIR, JOB_STATE_DIR and more.",
    },
    "SecretRef": {"secret": "Name of a secret in the config's [secrets]."},
    "Sweep": {
        "method": "grid (every combination) or random (max_runs draws, reproducible from seed).",
        "parameters": "Parameter name -> {values: [...]} or {min, max, distribution}.",
        "metric": "The metric that ranks runs (and drives early stopping).",
        "max_runs": "Cap on runs (grid) or number of draws (random).",
        "parallel": "Most runs of the sweep at once.",
        "max_failed": "Stop launching after this many failures.",
        "early_stop": "Halt runs worse than the median of earlier runs at the same step.",
        "seed": "Seed of a random sweep.",
    },
    "SweepParameter": {
        "values": "The values to try.",
        "min": "Lower bound (<= max; > 0 for log_uniform).",
        "max": "Upper bound.",
        "distribution": "uniform, log_uniform or int_uniform (default uniform).",
    },
    "SweepMetric": {"name": "Metric name as the run reports it.", "goal": "minimize or maximize."},
    "EarlyStop": {
        "type": "Only median.",
        "min_runs": "Runs that must have reached a step before comparing.",
        "start_step": "First step at which runs are compared.",
    },
}


def _clean(node: Any) -> Any:
    """Drop pydantic's titles and stray keywords that are not JSON Schema (e.g. `ge` in a union)."""
    if isinstance(node, dict):
        out = {k: _clean(v) for k, v in node.items() if k not in ("title", "ge")}
        if "ge" in node and "minimum" not in out:
            out["minimum"] = node["ge"]
        return out
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def _describe(schema: dict[str, Any], name: str) -> None:
    texts = DESCRIPTIONS.get(name, {})
    if "" in texts:
        schema["description"] = texts[""]
    for key, prop in schema.get("properties", {}).items():
        if key in texts:
            prop["description"] = texts[key]


def manifest_schema() -> dict[str, Any]:
    from .model import Manifest

    schema = _clean(Manifest.model_json_schema(mode="validation"))
    defs = schema.setdefault("$defs", {})
    props = schema["properties"]
    text_or_number = {"type": ["string", "number"]}
    props["version"] = dict(text_or_number)
    props["memory"] = {"type": "string", "pattern": MEMORY_PATTERN, "default": "4GiB"}
    props["gpu_memory"] = {"type": "string", "pattern": MEMORY_PATTERN}
    props["max_duration"] = {"type": "string", "pattern": DURATION_PATTERN}
    props["data_stores"].update(minItems=1, maxItems=1)
    props["env"]["propertyNames"] = {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}
    props["env"]["additionalProperties"] = {
        "anyOf": [{"type": ["string", "number", "boolean"]}, {"$ref": "#/$defs/SecretRef"}]
    }
    defs["Framework"]["properties"]["version"] = dict(text_or_number)
    defs["Framework"]["properties"]["command"]["minLength"] = 1
    defs["DataStore"]["properties"]["id"] = dict(text_or_number, default="data_store")
    defs["BucketRef"]["properties"]["container"]["pattern"] = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"
    sweep = defs["Sweep"]["properties"]
    sweep["parameters"]["propertyNames"] = {"pattern": r"^[A-Za-z_][A-Za-z0-9_.-]*$"}
    sweep["parameters"]["minProperties"] = 1
    defs["SweepParameter"]["anyOf"] = [{"required": ["values"]}, {"required": ["min", "max"]}]
    defs["SweepParameter"]["properties"]["values"] = {
        "type": "array", "minItems": 1, "items": {"type": ["string", "number", "boolean"]}
    }
    for name, sub in defs.items():
        _describe(sub, name)
    _describe(schema, "Manifest")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "dlaas-tui manifest",
        **schema,
    }
