"""`${...}` in the command: what sh would make of it, checked before a run is spent on it.

A sweep writes its parameters into the command as `${NAME}` (declared names only, see sweep.py);
everything else is left for sh, which expands an unknown `${hiden}` to nothing and stops at a stray
`${` with "bad substitution". Those cannot run as meant: a `${` without its `}`, an empty `${}`, and
a name one typo away from a sweep parameter are errors; another lower-case name that is neither a
parameter nor an environment variable the run gets is a warning. Each is placed at its own line and
column in the file.
"""
from __future__ import annotations

import difflib
import re

from .model import SYSTEM_ENV, Manifest
from .problems import Marks, Problem

_OPEN = "${"
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHELL_SPECIAL = set("0123456789#!@*?$-")  # `${1}`, `${#X}`, `${!X}`, `${@}`...
_SHELL_OPERATORS = set(":-=+?#%/^,[")  # `${X:-default}`, `${X%.*}`, `${X[0]}`...
COMMAND: tuple[str, ...] = ("framework", "command")


def _where(text: str, marks: Marks, nth: int) -> tuple[int, int] | None:
    """Line and column (1-based) of the `nth` `${` of the command as written in the file."""
    node = marks.nodes.get(COMMAND)
    if node is None:
        return None
    start, end = node.start_mark.index, node.end_mark.index
    index = start - 1
    for _ in range(nth + 1):
        index = text.find(_OPEN, index + 1, end)
        if index < 0:
            return None
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def placeholder_problems(manifest: Manifest, marks: Marks, text: str) -> list[Problem]:
    command = manifest.framework.command
    params = list(manifest.sweep.parameters) if manifest.sweep is not None else []
    from .sweep import hp_env_name

    env = set(manifest.env) | SYSTEM_ENV | {hp_env_name(p) for p in params}
    out: list[Problem] = []

    def report(nth: int, message: str, severity: str = "error") -> None:
        at = _where(text, marks, nth)
        if at is None:  # the text and the value disagree (escapes): the command's own position
            out.append(marks.at(COMMAND, message, severity=severity))
        else:
            out.append(Problem(marks.source, at[0], at[1], "framework.command", message, severity))

    pos, nth = command.find(_OPEN), 0
    while pos >= 0:
        close = _closing(command, pos)
        if close < 0:
            report(nth, "`${` has no closing `}`: sh stops with \"bad substitution\" (write ${NAME})")
            break
        inner = command[pos + 2 : close]
        name = _SHELL_NAME.match(inner)
        rest = inner[name.end():] if name else inner
        if inner in params or (inner[:1] and inner[0] in _SHELL_SPECIAL):
            pass  # a sweep parameter, or sh's own `${1}`, `${#X}`, `${@}`...
        elif not inner.strip():
            report(nth, "`${}` names nothing: sh stops with \"bad substitution\"")
        elif name is None or (rest and rest[0] not in _SHELL_OPERATORS):
            report(nth, f"`${{{inner}}}` is not a name sh can expand: it stops with \"bad substitution\"")
        elif rest and name.group(0) in params and name.group(0) not in env:
            # `${lr:-0.1}`: only a bare `${lr}` is filled in per trial; sh sees an unset `lr` and
            # every trial would run with the same fallback.
            param = name.group(0)
            from .sweep import hp_env_name

            report(nth, f"`${{{inner}}}` is not filled in by the sweep (only `${{{param}}}` is): sh sees no "
                        f"variable {param} and every trial gets the same value; write ${{{param}}}, or "
                        f"${{{hp_env_name(param)}{rest}}} to keep the fallback")
        elif not rest and inner not in env and params:
            close_to = difflib.get_close_matches(inner, params, n=1, cutoff=0.75)
            if close_to:
                report(nth, f"${{{inner}}} is not a sweep parameter (did you mean ${{{close_to[0]}}}?); "
                            "sh would make it empty")
            elif inner != inner.upper():
                report(nth, f"${{{inner}}} is not a sweep parameter ({', '.join(params)}) nor an "
                            "environment variable of the run; sh makes it empty unless it is set", "warning")
        pos = command.find(_OPEN, pos + 2)
        nth += 1
    return out


def _closing(command: str, pos: int) -> int:
    """The index of the `}` that closes the `${` at `pos` (nested `${...}` counted), or -1."""
    depth, i = 1, pos + 2
    while i < len(command):
        if command.startswith(_OPEN, i):
            depth += 1
            i += 2
            continue
        if command[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1
