"""Reading a manifest for the fake engine: the real loader when there is one, else a plain read.

The plain read (YAML + the pydantic model) is what lets the fake work before the manifest parser is
in; once `backend.manifest.load_manifest` exists every manifest goes through it, with its
FILE:LINE:COL errors.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import BadInput, NotFound
from ...manifest.model import Manifest
from ...runs import ErrorCode


def _real_loader() -> Any:
    try:
        from ...manifest import load_manifest  # type: ignore[attr-defined]
    except ImportError:
        return None
    return load_manifest


def load_manifest_any(source: Path | Mapping[str, Any] | Manifest) -> tuple[Manifest, str]:
    """A Manifest and the text to show for it, from a file, a dict or a Manifest."""
    import yaml

    if isinstance(source, Manifest):
        return source, yaml.safe_dump(source.model_dump(exclude_none=True), sort_keys=False)
    if isinstance(source, Mapping):
        return _validate(dict(source), "<manifest>"), yaml.safe_dump(dict(source), sort_keys=False)
    path = Path(source)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NotFound(f"{path}: no such manifest") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read the manifest: {exc}", code=ErrorCode.BAD_MANIFEST.value) from None
    loader = _real_loader()
    if loader is not None:
        return loader(path), text
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise BadInput(f"{where}: {getattr(exc, 'problem', exc)}", code=ErrorCode.BAD_MANIFEST.value) from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}:1:1: a manifest is a mapping of keys", code=ErrorCode.BAD_MANIFEST.value)
    return _validate(data, str(path)), text


def _validate(data: dict[str, Any], source: str) -> Manifest:
    from pydantic import ValidationError

    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'manifest'}: {e['msg']}" for e in exc.errors()
        )
        raise BadInput(f"{source}: {problems}", code=ErrorCode.BAD_MANIFEST.value) from None


def expand_sweep(manifest: Manifest) -> list[Any] | None:
    """The sweep's trials (each with `.index`, `.params`, `.manifest`) through the manifest
    package's expansion, or None for a manifest without a sweep. Before that expansion exists a
    sweep is submitted as one run."""
    if manifest.sweep is None:
        return None
    try:
        from ...manifest import sweep as sweeps  # type: ignore[attr-defined]
    except ImportError:
        return None
    return sweeps.expand(manifest)
