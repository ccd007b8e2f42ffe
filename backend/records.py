"""Plain records: what `@dataclass` gives (keyword `__init__`, `__repr__`, `__eq__`, frozen), without it.

`dataclasses` generates and compiles each class's methods when its module is imported (with
`inspect`, `ast` and `dis` loaded for it): about 20 ms of every `dlaas-tui runs` on the bench machine
(13 ms to import it, ~1 ms per class), against a budget of 80 ms for the whole listing. The records every command and the TUI's first frame load (Run, RunEvent, Paths, Backend, the
queue ETAs) are written out instead: `__init__` by hand, the rest from `_fields` here. Add a field to
`_fields` and `__init__` together (tests/unit/test_records.py holds each record to that).
"""
from __future__ import annotations


class Record:
    """`__repr__`, `__eq__` and `replace()` over `_fields`, as a dataclass's (unhashable: mutable)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _repr_fields: tuple[str, ...] | None = None  # default: `_fields`

    def __repr__(self) -> str:
        shown = self._fields if self._repr_fields is None else self._repr_fields
        return f"{type(self).__qualname__}({', '.join(f'{f}={getattr(self, f)!r}' for f in shown)})"

    def _values(self) -> tuple:
        return tuple(getattr(self, f) for f in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def replace(self, **changes):
        """A copy with `changes` (as `dataclasses.replace`: through `__init__`)."""
        return type(self)(**{**{f: getattr(self, f) for f in self._fields}, **changes})


class FrozenRecord(Record):
    """A Record whose fields are set once, in `__init__` (through `_set`); hashable."""

    __slots__ = ()

    def _set(self, **values) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __hash__(self) -> int:
        return hash(self._values())
