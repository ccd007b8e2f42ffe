"""Reading a manifest: YAML with a mark for every key and value, then the pydantic model.

Every problem found is reported at once, each as `FILE:LINE:COL: field.path: message` (1-based line
and column). pyyaml composes the node tree (which keeps marks), the same loader builds plain data from
it, and pydantic's error locations are mapped back onto the nodes. Unknown keys are warnings with a
close match, because FfDL manifests carry keys we do not use and should still run.
"""
from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import BadInput
from . import model as _model
from .model import SYSTEM_ENV, Located, Manifest

MAX_MANIFEST_BYTES = 1024 * 1024
Path_ = tuple[str | int, ...]
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Problem:
    file: str
    line: int  # 1-based
    col: int  # 1-based
    field: str  # dotted path such as `data_stores[0].training_data.container`; "" for the file
    message: str
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        kind = "warning: " if self.severity == "warning" else ""
        where = f"{self.field}: " if self.field else ""
        return f"{self.file}:{self.line}:{self.col}: {kind}{where}{self.message}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ManifestResult:
    source: str
    manifest: Manifest | None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def problems(self) -> list[Problem]:
        return sorted(self.errors + self.warnings, key=lambda p: (p.line, p.col, p.severity))


class ManifestError(BadInput):
    """A manifest that cannot be used; `problems` holds every error (FILE:LINE:COL each)."""

    error_code = "C101"

    def __init__(self, problems: list[Problem], warnings: list[Problem] | None = None) -> None:
        self.problems = problems
        self.warnings = warnings or []
        super().__init__("\n".join(str(p) for p in problems) or "invalid manifest")


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Marks:
    """Marks of every key and value node, by data path; plus problems the tree itself shows."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.values: dict[Path_, yaml.Mark] = {}
        self.keys: dict[Path_, yaml.Mark] = {}
        self.nodes: dict[Path_, yaml.Node] = {}
        self.errors: list[Problem] = []

    def walk(self, node: yaml.Node, path: Path_ = (), depth: int = 0) -> None:
        if depth > 64:  # aliases can build cycles; no manifest is this deep
            return
        self.nodes[path] = node
        self.values[path] = node.start_mark
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, yaml.Node] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.errors.append(self._problem(key_node.start_mark, path, "keys must be plain text"))
                    continue
                key = key_node.value
                if key == "<<":  # merge key: its content is folded into this mapping by the loader
                    continue
                if key in seen:
                    first = seen[key].start_mark.line + 1
                    self.errors.append(
                        self._problem(key_node.start_mark, (*path, key), f"duplicate key (first at line {first})")
                    )
                seen[key] = key_node
                self.keys[(*path, key)] = key_node.start_mark
                self.walk(value_node, (*path, key), depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.walk(item, (*path, i), depth + 1)

    def _problem(self, mark: yaml.Mark, path: Path_, message: str, severity: str = "error") -> Problem:
        return Problem(self.source, mark.line + 1, mark.column + 1, format_path(path), message, severity)

    def at(self, path: Path_, message: str, *, key: bool | None = None, severity: str = "error",
           field: Path_ | None = None) -> Problem:
        """A problem at `path` (or its nearest ancestor that exists). A scalar is shown at its
        value; a mapping or list at its key (the line a reader looks for); `key=True` forces the key."""
        probe = path
        while probe:
            node = self.nodes.get(probe)
            use_key = key if key is not None else not isinstance(node, yaml.ScalarNode)
            mark = (self.keys.get(probe) if use_key else None) or self.values.get(probe)
            if mark is not None:
                return self._problem(mark, path if field is None else field, message, severity)
            probe = probe[:-1]
        mark = self.values.get(())
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return Problem(self.source, line, col, format_path(path if field is None else field), message,
                       severity)

    def raw_text(self, path: Path_) -> str | None:
        node = self.nodes.get(path)
        return node.value if isinstance(node, yaml.ScalarNode) else None


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


def _compose(text: str, source: str) -> tuple[Any, _Marks]:
    marks = _Marks(source)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    if node is not None:
        marks.walk(node)
    return data, marks


# Fields whose YAML scalar may be read as a number but mean text (`version: 1.10` is not 1.1).
_TEXT_PATHS: tuple[Path_, ...] = (("version",), ("framework", "version"), ("data_stores", 0, "id"))


def _restore_text(data: dict[str, Any], marks: _Marks) -> None:
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


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    return str(value)


_TYPE_WORDS = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "text",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if kind == "missing":
        return "required, but missing"
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {_describe(got)}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        close = difflib.get_close_matches(str(got), choices, n=1, cutoff=0.5)
        hint = f", did you mean {close[0]!r}?" if close else ""
        return f"must be one of {', '.join(choices)}; got {_describe(got)}{hint}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')}, got {_describe(got)}"
    if kind == "greater_than":
        return f"must be > {ctx.get('gt')}, got {_describe(got)}"
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    return str(err.get("msg", kind))


def _data_path(loc: tuple[Any, ...], data: Any) -> Path_:
    """pydantic's location minus the union/validator tags it adds, which are not in the data."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not _is_tag(part):
            out.append(part)  # a missing key
            node = None
    return tuple(out)


_MODEL_NAMES = {cls.__name__ for cls in vars(_model).values()
                if isinstance(cls, type) and issubclass(cls, BaseModel)}
_SCALAR_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _is_tag(part: str) -> bool:
    """Parts pydantic adds to a location for unions, validators and dict keys."""
    return part in _MODEL_NAMES or part in _SCALAR_TAGS or "[" in part or part.startswith("function-")


def _pick_union_branch(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For `text | {secret: NAME}` style unions keep only the branch that matches the input's shape,
    so a mapping with a bad key is not also told it should have been text."""
    groups: dict[tuple[Any, ...], list[tuple[int, dict[str, Any]]]] = {}
    for err in errors:
        loc = err["loc"]
        tag_at = next((i for i, part in enumerate(loc) if isinstance(part, str) and _is_tag(part)), None)
        if tag_at is None:
            continue
        groups.setdefault(loc[:tag_at], []).append((tag_at, err))
    drop: set[int] = set()
    for members in groups.values():
        model_branch = [e for i, e in members if e["loc"][i] in _MODEL_NAMES]
        scalar_branch = [e for i, e in members if e["loc"][i] not in _MODEL_NAMES]
        if model_branch and scalar_branch:
            nested = len(model_branch[0]["loc"]) > len(scalar_branch[0]["loc"])
            keep_models = nested or isinstance(model_branch[0].get("input"), dict)
            drop |= {id(e) for e in (scalar_branch if keep_models else model_branch)}
    return [e for e in errors if id(e) not in drop]


def _validation_problems(exc: ValidationError, data: Any, marks: _Marks) -> list[Problem]:
    by_path: dict[Path_, list[dict[str, Any]]] = {}
    problems: list[Problem] = []
    for err in _pick_union_branch(exc.errors(include_url=False)):
        path = _data_path(err["loc"], data)
        error = (err.get("ctx") or {}).get("error")
        if isinstance(error, Located):
            for suffix, message in error.items:
                problems.append(marks.at((*path, *suffix), message))
            continue
        by_path.setdefault(path, []).append(err)
    for path, errs in by_path.items():
        if len(path) == 2 and path[0] == "env" and errs[0]["type"] == "string_type":
            message = f"expected text or {{secret: NAME}}, got {_describe(errs[0].get('input'))}"
        elif len(errs) == 1:
            message = _message(errs[0])
        else:  # a union: say what would have been accepted
            kinds = {e["type"] for e in errs}
            got = _describe(errs[0].get("input"))
            if kinds <= {"int_type", "float_type"}:
                message = f"expected a number, got {got}"
            elif path[:1] == ("env",):
                message = f"expected text or {{secret: NAME}}, got {got}"
            else:
                message = _message(errs[0])
        missing = errs[0]["type"] == "missing"
        if missing:  # a missing key has no mark of its own: show it at the mapping that should hold it
            problems.append(marks.at(path[:-1], message, field=path))
        else:
            problems.append(marks.at(path, message, key=True if "[key]" in errs[0]["loc"] else None))
    return problems


def _model_in(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """('model'|'list'|'dict', Model) when a field holds a model directly, in a list or a dict."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found and found[0] == "model":
                return found
        return None
    if origin is list:
        inner = _model_in(typing.get_args(annotation)[0])
        return ("list", inner[1]) if inner and inner[0] == "model" else None
    if origin is dict:
        inner = _model_in(typing.get_args(annotation)[1])
        return ("dict", inner[1]) if inner and inner[0] == "model" else None
    return None


def _unknown_keys(model: type[BaseModel], data: Any, path: Path_, marks: _Marks) -> list[Problem]:
    if not isinstance(data, dict):
        return []
    out: list[Problem] = []
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            out.append(marks.at((*path, key), _unknown_message(str(key), fields, path), key=True,
                                severity="warning"))
            continue
        found = _model_in(fields[key].annotation)
        if found is None:
            continue
        how, sub = found
        if how == "model":
            out += _unknown_keys(sub, value, (*path, key), marks)
        elif how == "list" and isinstance(value, list):
            for i, item in enumerate(value):
                out += _unknown_keys(sub, item, (*path, key, i), marks)
        elif how == "dict" and isinstance(value, dict):
            for name, item in value.items():
                out += _unknown_keys(sub, item, (*path, key, name), marks)
    return out


def _unknown_message(key: str, fields: dict[str, Any], path: Path_) -> str:
    where = f"in {format_path(path)}" if path else "at the top level"
    close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r} {where}, did you mean {close[0]!r}? (ignored)"
    if path:
        top = difflib.get_close_matches(key, list(Manifest.model_fields), n=1, cutoff=0.6)
        if top:
            return f"unknown key {key!r} {where}, did you mean top-level {top[0]!r}? (ignored)"
    return f"unknown key {key!r} {where} (ignored); known keys: {', '.join(fields)}"


def _lint(manifest: Manifest, marks: _Marks) -> list[Problem]:
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
    for name in manifest.env:
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
    result.errors += marks.errors
    if not isinstance(data, dict):
        got = "an empty file" if data is None else _describe(data)
        result.errors.append(marks.at((), f"a manifest is a mapping of keys (name, framework, "
                                          f"data_stores, ...), got {got}"))
        return result
    _restore_text(data, marks)
    result.warnings += _unknown_keys(Manifest, data, (), marks)
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        result.errors += _validation_problems(exc, data, marks)
    else:
        result.warnings += _lint(manifest, marks)
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
