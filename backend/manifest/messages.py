"""pydantic's validation errors and unknown keys, told in the manifest's own terms.

pydantic reports locations such as `('env', 'A', 'function-before[...]')`; these are mapped back to
data paths (dropping the tags pydantic adds for unions and validators) and then to marks.
"""
from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

import backend.manifest.model as _model  # the module itself, not the package: no import circle
from .model import Located, Manifest
from .problems import Marks, Path_, Problem, format_path


def describe(value: Any) -> str:
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
        return f"expected {_TYPE_WORDS[kind]}, got {describe(got)}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        close = difflib.get_close_matches(str(got), choices, n=1, cutoff=0.5)
        hint = f", did you mean {close[0]!r}?" if close else ""
        return f"must be one of {', '.join(choices)}; got {describe(got)}{hint}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')}, got {describe(got)}"
    if kind == "greater_than":
        return f"must be > {ctx.get('gt')}, got {describe(got)}"
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


def validation_problems(exc: ValidationError, data: Any, marks: Marks) -> list[Problem]:
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
            message = f"expected text or {{secret: NAME}}, got {describe(errs[0].get('input'))}"
        elif len(errs) == 1:
            message = _message(errs[0])
        else:  # a union: say what would have been accepted
            kinds = {e["type"] for e in errs}
            got = describe(errs[0].get("input"))
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


def unknown_keys(model: type[BaseModel], data: Any, path: Path_, marks: Marks) -> list[Problem]:
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
            out += unknown_keys(sub, value, (*path, key), marks)
        elif how == "list" and isinstance(value, list):
            for i, item in enumerate(value):
                out += unknown_keys(sub, item, (*path, key, i), marks)
        elif how == "dict" and isinstance(value, dict):
            for name, item in value.items():
                out += unknown_keys(sub, item, (*path, key, name), marks)
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
