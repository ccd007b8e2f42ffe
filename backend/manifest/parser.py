"""Reading a manifest: YAML with a mark for every key and value, then the pydantic model.

Every problem found is reported at once, each as `FILE:LINE:COL: field.path: message` (1-based line
and column). pyyaml composes the node tree (which keeps marks), the same loader builds plain data from
it, and pydantic's error locations are mapped back onto the nodes. Unknown keys are warnings with a
close match, because FfDL manifests carry keys we do not use and should still run.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .messages import describe, unknown_keys, validation_problems
from .model import SYSTEM_ENV, Manifest, looks_secret
from .placeholders import placeholder_problems
from .problems import ManifestError, ManifestResult, Marks, Path_, Problem, TooLarge, format_path  # noqa: F401

MAX_MANIFEST_BYTES = 1024 * 1024
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_problem(exc: yaml.YAMLError, text: str, source: str) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    if isinstance(exc, yaml.MarkedYAMLError) and mark is not None:
        message = f"YAML syntax error: {exc.problem}"
        context_mark = exc.context_mark
        if exc.context and context_mark is not None and context_mark.line != mark.line:
            message += f" ({exc.context} at line {context_mark.line + 1})"
        return Problem(source, mark.line + 1, mark.column + 1, "", message)
    position = getattr(exc, "position", None)
    if isinstance(position, int):  # ReaderError: a character YAML does not allow
        before = text[:position]
        line = before.count("\n") + 1
        col = position - (before.rfind("\n") + 1) + 1
        char = getattr(exc, "character", None)
        code = ord(char) if isinstance(char, str) and len(char) == 1 else char
        shown = f" #x{code:04x}" if isinstance(code, int) else ""
        return Problem(source, line, col, "", f"YAML syntax error: character{shown} is not allowed "
                       f"({getattr(exc, 'reason', 'bad character')})")
    return Problem(source, 1, 1, "", f"YAML syntax error: {exc}")


def _compose(text: str, source: str) -> tuple[Any, Marks]:
    marks = Marks(source)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, marks
        marks.walk(node)  # first: it refuses alias bombs and cycles before anything expands them
        return loader.construct_document(node), marks
    finally:
        loader.dispose()


# Fields whose YAML scalar may be read as a number but mean text (`version: 1.10` is not 1.1).
_TEXT_PATHS: tuple[Path_, ...] = (("version",), ("framework", "version"), ("data_stores", 0, "id"))


def _restore_text(data: dict[str, Any], marks: Marks) -> None:
    for path in _TEXT_PATHS:
        parent: Any = data
        for part in path[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        last = path[-1]
        if isinstance(parent, dict) and isinstance(parent.get(last), (int, float)):
            raw = marks.raw_text(path)
            if raw is not None:
                parent[last] = raw
    env = data.get("env")
    if isinstance(env, dict):
        for name, value in env.items():
            if isinstance(value, (bool, int, float)):
                raw = marks.raw_text(("env", name))
                if raw is not None:
                    env[name] = raw


def _lint(manifest: Manifest, marks: Marks) -> list[Problem]:
    """Legal but probably not what was meant."""
    out: list[Problem] = []

    def warn(path: Path_, message: str, key: bool | None = True) -> None:
        out.append(marks.at(path, message, key=key, severity="warning"))

    if manifest.gpu_type and manifest.gpus == 0:
        warn(("gpu_type",), f"gpu_type {manifest.gpu_type!r} has no effect with gpus: 0")
    if re.search(r"\n\s*-", manifest.framework.command.strip()):
        warn(("framework", "command"), "a line of the command starts with '-': sh runs each line as its "
             "own command (indent a folded `>` block evenly, or end lines with \\)", key=None)
    store = manifest.data_store
    if store.type == "local" and store.connection is not None:
        warn(("data_stores", 0, "connection"), "a local data store ignores `connection`")
    for name, value in manifest.env.items():
        if isinstance(value, str) and value and looks_secret(name):
            warn(("env", name), f"{name} looks like a secret: keep it out of the manifest with "
                 f"{{secret: NAME}} and the config's [secrets] (it is shown as ****)")
        if name in SYSTEM_ENV:
            warn(("env", name), f"{name} is set by the system for every run; this value is replaced")
    sweep = manifest.sweep
    if sweep is not None:
        if sweep.method == "grid" and sweep.max_runs and sweep.grid_size() > sweep.max_runs:
            warn(("sweep", "max_runs"), f"the grid has {sweep.grid_size()} combinations; only the "
                 f"first {sweep.max_runs} run", key=None)
        if sweep.method == "random" and sweep.seed is None:
            warn(("sweep", "method"), "a random sweep without `seed` draws different values each submit",
                 key=None)
        for name, param in sweep.parameters.items():
            if param.values is not None and len(set(map(repr, param.values))) != len(param.values):
                warn(("sweep", "parameters", name, "values"), "values repeat; the grid runs duplicates",
                     key=None)
    return out


def parse_manifest(text: str, source: str = "<manifest>") -> ManifestResult:
    """Parse and validate manifest text; never raises for bad input (errors are in the result)."""
    result = ManifestResult(source=source, manifest=None)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_MANIFEST_BYTES:
        result.errors.append(Problem(source, 1, 1, "", "a manifest is at most 1 MiB"))
        return result
    try:
        data, marks = _compose(text, source)
    except yaml.YAMLError as exc:
        result.errors.append(_yaml_problem(exc, text, source))
        return result
    except TooLarge as exc:
        result.errors.append(Problem(source, 1, 1, "", str(exc)))
        return result
    result.errors += marks.errors
    result.marks = marks
    if not isinstance(data, dict):
        got = "an empty file" if data is None else describe(data)
        result.errors.append(marks.at((), f"a manifest is a mapping of keys (name, framework, "
                                          f"data_stores, ...), got {got}"))
        return result
    _restore_text(data, marks)
    result.warnings += unknown_keys(Manifest, data, (), marks)
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        result.errors += validation_problems(exc, data, marks)
    else:
        result.warnings += _lint(manifest, marks)
        for problem in placeholder_problems(manifest, marks, text):
            (result.errors if problem.severity == "error" else result.warnings).append(problem)
        if not result.errors:
            result.manifest = manifest
    result.errors.sort(key=lambda p: (p.line, p.col))
    result.warnings.sort(key=lambda p: (p.line, p.col))
    return result


def check_manifest(path: str | Path) -> ManifestResult:
    """Read and parse a manifest file; an unreadable file is one error in the result."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        return ManifestResult(source, None, [Problem(source, 1, 1, "", f"cannot read: {exc.strerror or exc}")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return ManifestResult(source, None, [Problem(source, line, 1, "", "not UTF-8 text")])
    return parse_manifest(text, source)


def load_manifest(path: str | Path) -> Manifest:
    """The manifest at `path`, or ManifestError listing every problem (FILE:LINE:COL: ...)."""
    result = check_manifest(path)
    if result.manifest is None:
        raise ManifestError(result.errors, result.warnings)
    return result.manifest
