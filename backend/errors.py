"""Error types shared by every layer.

Every error a user can cause carries enough to act on: the file:line:col of a manifest, the
offending key of an object, the run id of a run. The CLI maps them to exit codes (2 bad input,
1 failure) and the TUI to notifications; neither ever shows a traceback.
"""
from __future__ import annotations


class DlaasError(Exception):
    """Base class: a message fit to show a user as is."""

    exit_code = 1

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message


class BadInput(DlaasError):
    """The user's input is wrong (a flag, a manifest, a key): exit code 2."""

    exit_code = 2


class ConfigError(BadInput):
    """The config file is wrong; the message names the file and the key."""


class NotFound(DlaasError):
    """A run, bucket, object or profile that does not exist."""


class StoreError(DlaasError):
    """An object-store operation failed (permissions, network, server)."""


class EngineError(DlaasError):
    """A scheduler operation failed."""


class ReadOnly(DlaasError):
    """The profile is read-only and the operation would change something."""
