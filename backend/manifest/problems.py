"""What the parser reports: problems with file, line, column and field, and where nodes sit.

`Marks` keeps the mark of every key and value node of the composed YAML by data path, so any
later check can place its message on the exact line and column.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from ..errors import BadInput
from .model import Manifest

Path_ = tuple[str | int, ...]
MAX_NODES = 20_000


class TooLarge(ValueError):
    """The document is too big or cyclic to be a manifest."""



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
    # Where every key and value sits, for checks made later (backend.preflight); None if unparsed.
    marks: Marks | None = field(default=None, repr=False, compare=False)

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


class Marks:
    """Marks of every key and value node, by data path; plus problems the tree itself shows."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.values: dict[Path_, yaml.Mark] = {}
        self.keys: dict[Path_, yaml.Mark] = {}
        self.nodes: dict[Path_, yaml.Node] = {}
        self.errors: list[Problem] = []
        self.visits = 0

    def walk(self, node: yaml.Node, path: Path_ = (), active: frozenset[int] = frozenset()) -> None:
        # Aliases share nodes: a few lines can expand to billions of paths, or refer to themselves.
        self.visits += 1
        if self.visits > MAX_NODES:
            raise TooLarge(f"the YAML expands to more than {MAX_NODES} values (through aliases)")
        if id(node) in active:
            raise TooLarge("an alias refers to itself")
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            active = active | {id(node)}
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
                self.walk(value_node, (*path, key), active)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.walk(item, (*path, i), active)

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
