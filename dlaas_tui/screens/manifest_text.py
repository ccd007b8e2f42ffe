"""Manifest text helpers for the editor: samples, the training-data edit, validation, saving.

Pure functions (no Textual): the validation runs in the editor's thread worker.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLANK_MANIFEST = """\
name: my-training
description: ""
gpus: 1
learners: 1
memory: 4GiB
max_duration: 1h
data_stores:
  - id: data
    type: local
    training_data:
      container: training-data
    training_results:
      container: training-results
framework:
  name: pytorch
  command: python train.py --data "$DATA_DIR" --out "$RESULT_DIR"
"""


# -- samples and templates -------------------------------------------------------------------
def list_samples() -> list[Path]:
    from backend.facade import resource_dir

    root = resource_dir("samples")
    try:
        return sorted(root.glob("*/manifest.yml"))
    except OSError:
        return []


def starter_sample() -> Path | None:
    """The sample a new manifest starts from: the plain digits one when shipped, else the first."""
    samples = list_samples()
    preferred = [p for p in samples if p.parent.name == "pytorch-digits"] or samples
    return next((p for p in preferred if p.is_file()), None)


def starter_manifest() -> str:
    """The starter sample's text, else a blank manifest."""
    path = starter_sample()
    if path is not None:
        try:
            return path.read_text(encoding="utf-8")
        except OSError:
            pass
    return BLANK_MANIFEST


def sample_model_dir(sample_manifest: Path | None) -> Path | None:
    """The model code that goes with a sample's manifest (its `model/` folder), if it has one."""
    if sample_manifest is None:
        return None
    model = sample_manifest.parent / "model"
    return model if model.is_dir() else None


def manifest_with_training_data(text: str, bucket: str, prefix: str = "") -> str:
    """`text` with data_stores[0].training_data set to bucket/prefix, the rest left as written."""
    import yaml

    lines = [f"container: {json.dumps(bucket)}"]
    if prefix:
        lines.append(f"prefix: {json.dumps(prefix)}")
    try:
        root = yaml.compose(text)
        stores = _mapping_get(root, "data_stores")
        store = stores.value[0] if stores is not None and stores.value else None
        key, value = _mapping_item(store, "training_data")
    except (yaml.YAMLError, AttributeError, IndexError, TypeError):
        key = value = None
    if key is not None:
        indent = " " * max(value.start_mark.column, key.start_mark.column + 2)
        span_end = value.start_mark.index + len(text[value.start_mark.index : value.end_mark.index].rstrip())
        if value.start_mark.index == value.end_mark.index:  # `training_data:` with nothing after
            span_end = key.end_mark.index + text[key.end_mark.index :].index(":") + 1
        body = "".join(f"\n{indent}{line}" for line in lines)
        return text[: key.end_mark.index] + ":" + body + text[span_end:]
    # No data store to edit in place: rebuild it from the parsed manifest (comments are lost).
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    stores = data.get("data_stores") if isinstance(data.get("data_stores"), list) else []
    store = stores[0] if stores and isinstance(stores[0], dict) else {"id": "data", "type": "local"}
    store["training_data"] = {"container": bucket, **({"prefix": prefix} if prefix else {})}
    store.setdefault("training_results", {"container": "training-results"})
    data["data_stores"] = [store, *stores[1:]]
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _mapping_get(node: Any, name: str) -> Any:
    _, value = _mapping_item(node, name)
    return value


def _mapping_item(node: Any, name: str) -> tuple[Any, Any]:
    for key, value in getattr(node, "value", []) or []:
        if getattr(key, "value", None) == name:
            return key, value
    return None, None


# -- validation ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    line: int  # 1-based; 0 = not tied to a line
    col: int
    message: str
    severity: str = "error"

    def label(self) -> str:
        where = f"{self.line}:{self.col}" if self.line else "-"
        return f"{where} {self.severity}: {self.message}"


@dataclass
class Validation:
    problems: list[Problem] = field(default_factory=list)
    manifest: Any = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def _problem(item: Any, severity: str) -> Problem:
    line = getattr(item, "line", 0) or 0
    col = getattr(item, "col", 0) or 0
    where = getattr(item, "field", "")
    message = str(getattr(item, "message", item))
    return Problem(int(line), int(col), f"{where}: {message}" if where else message, severity)


def validate_text(text: str, source: str, backend: Any = None) -> Validation:
    """Every problem with line and column; given the `backend`, also what its profile would refuse
    (capacity, priority names), so "valid" means the engine would take it."""
    import backend.facade as facade

    try:
        if backend is not None:
            result = facade.check_for_profile(backend, text, source)
        else:
            result = facade.parse_manifest(text, source)
    except facade.DlaasError as exc:
        return Validation([Problem(0, 0, str(exc))])
    problems = [_problem(e, "error") for e in getattr(result, "errors", [])]
    problems += [_problem(w, "warning") for w in getattr(result, "warnings", [])]
    return Validation(problems, getattr(result, "manifest", None))


def atomic_write(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
