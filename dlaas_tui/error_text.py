"""How a failed backend call reads in a notification: a user's error as its own words, anything else
with its type (a bug or an unexpected failure says what it was)."""
from __future__ import annotations

from backend.facade import DlaasError


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, DlaasError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
