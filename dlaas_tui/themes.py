"""Themes are data: `themes/*.yaml`, each one a Textual `Theme`, registered when the app starts.

A file that does not parse or names an unknown field is skipped and reported (the app still starts
with the others). The user's choice lives in the UI state file (`ui.json`), not in the config.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from textual.theme import Theme

DEFAULT_THEME = "dark"
_FIELDS = {f.name for f in dataclasses.fields(Theme)} - {"ansi"}


def load_theme(path: Path) -> Theme:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a theme is a mapping of fields")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ValueError(f"{path}: unknown field {unknown[0]!r} (known: {', '.join(sorted(_FIELDS))})")
    data.setdefault("name", path.stem)
    if "primary" not in data:
        raise ValueError(f"{path}: 'primary' is required")
    variables = data.pop("variables", None) or {}
    return Theme(**data, variables={str(k): str(v) for k, v in variables.items()})


def load_themes(folder: Path) -> tuple[list[Theme], list[str]]:
    """Every theme in `folder`, and a message for each file that could not be loaded."""
    themes: list[Theme] = []
    errors: list[str] = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            themes.append(load_theme(path))
        except Exception as exc:  # a bad theme file must not stop the app
            errors.append(f"theme {path.name} skipped: {exc}")
    return themes, errors
