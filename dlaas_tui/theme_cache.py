"""The parsed theme files, kept as JSON in the cache dir so that start-up need not import yaml.

PyYAML costs about as much to import and run as the rest of our start-up work before the first
frame, and the theme files rarely change. The cache is keyed by each file's name, size and mtime
(and the folder): edit, add or remove a theme and the YAML is read again. A cache that cannot be
read or written is no error; the themes are then read from YAML, as before.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from textual.theme import Theme

from backend.facade import write_private

from .themes import load_themes

_VERSION = 1


def _stamp(folder: Path) -> list[list[object]]:
    stamp: list[list[object]] = []
    for path in sorted(folder.glob("*.yaml")):
        st = path.stat()
        stamp.append([path.name, st.st_size, st.st_mtime_ns])
    return stamp


def cached_themes(folder: Path, cache_file: Path) -> tuple[list[Theme], list[str]]:
    """What `load_themes(folder)` gives, from `cache_file` when the theme files are unchanged."""
    try:
        key = {"version": _VERSION, "folder": str(folder), "files": _stamp(folder)}
    except OSError:
        return load_themes(folder)
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
        if data.get("key") == key:
            return [Theme(**fields) for fields in data["themes"]], [str(e) for e in data["errors"]]
    except Exception:  # missing, damaged, or written by a Textual whose Theme had other fields
        pass
    themes, errors = load_themes(folder)
    try:
        payload = {"key": key, "themes": [dataclasses.asdict(t) for t in themes], "errors": errors}
        write_private(cache_file, json.dumps(payload))
    except Exception:
        pass  # read-only home: the YAML is simply read again next time
    return themes, errors
