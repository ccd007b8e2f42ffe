"""A manifest checked against the profile it would run on, as the editor types: what parsing alone
cannot know. A request larger than the profile can ever hold (the engines' C104 check, asked before
submitting rather than after) and a priority the config does not name are errors at their own line
and column, so the editor never says "valid" for a manifest the engine would refuse.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from .manifest import ManifestResult, Problem, parse_manifest

if TYPE_CHECKING:
    from .config import Config
    from .manifest import Manifest


class Backend(Protocol):
    """What this module needs of the facade's Backend (which sits above it)."""

    config: Config
    engine: Any


def check_for_profile(backend: Backend, text: str, source: str = "<manifest>") -> ManifestResult:
    """`parse_manifest` plus the profile's priority names and capacity; never raises for bad input."""
    result = parse_manifest(text, source)
    manifest, marks = result.manifest, result.marks
    if manifest is None or marks is None:
        return result
    problems: list[Problem] = []
    priorities = backend.config.all_priorities()
    if manifest.priority not in priorities:
        known = ", ".join(sorted(priorities, key=lambda p: -priorities[p]))
        problems.append(marks.at(("priority",), f"unknown priority {manifest.priority!r}; the config's "
                                                f"[priorities] name {known}"))
    why = never_fits(backend, manifest)
    if why is not None:
        where = next((p for p in (("gpus",), ("learners",)) if p in marks.nodes), ())
        problems.append(marks.at(where, why))
    if problems:
        result.errors = sorted(result.errors + problems, key=lambda p: (p.line, p.col))
        result.manifest = None
    return result


def never_fits(backend: Backend, manifest: Manifest) -> str | None:
    """Why the profile could never run `manifest` (the engine's own check), or None when it could,
    or when the engine cannot say (it has no check, or cannot be reached now)."""
    from .engine_protocol import FitCheck
    from .errors import BadInput

    try:
        engine = backend.engine
        if not isinstance(engine, FitCheck):
            return None
        engine.check_fits(manifest)
    except BadInput as exc:
        return f"never fits this profile ({exc.code or 'C104'}): {exc.message}"
    except Exception:  # an engine that cannot be opened is the submit's problem, not the editor's
        return None
    return None
