"""The one retry policy for the bytes the transfer code reads itself.

Requests are botocore's to retry: its standard mode sends again a request that could not connect
or was answered 5xx or "slow down" (`max_attempts` in [s3]), and the fast path (s3_fastget) hands
any request it cannot complete to botocore, within the same attempt. What no request-level retry
covers is a body that breaks after its answer began: a dropped connection, a short or long read, a
read timeout, bytes that fail their MD5. `retry` reads such a body again, ATTEMPTS times in all,
pausing PAUSE_S, then twice that, before each new attempt (a cancel cuts the pause short); when
the last attempt breaks too, it raises one StoreError that names the object and the attempts.
Anything else (403, 404, If-Match failed, a cancel) is raised at once: reading again cannot help.
"""
from __future__ import annotations

import concurrent.futures
import http.client
import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import StoreError
from .s3_errors import Where, clean, translate

ATTEMPTS = 3
PAUSE_S = 0.2
MAX_PAUSE_S = 2.0

T = TypeVar("T")


class BrokenBody(Exception):
    """The body ended early, ran past its length, or did not match its checksum."""


def transient(exc: BaseException) -> bool:
    """A body that broke mid-way: reading it again may well succeed."""
    if isinstance(exc, BrokenBody | ConnectionError | TimeoutError | http.client.HTTPException):
        return True
    import botocore.exceptions as bx

    return isinstance(exc, bx.ReadTimeoutError | bx.ResponseStreamingError | bx.IncompleteReadError
                      | bx.ConnectionClosedError)


def pause_s(attempt: int) -> float:
    """The pause before attempt number `attempt` (0 is the first, with none)."""
    return 0.0 if attempt == 0 else min(MAX_PAUSE_S, PAUSE_S * 2 ** (attempt - 1))


def retry(attempt_fn: Callable[[int], T], where: Where, halted: Callable[[], bool]) -> T:
    """attempt_fn(0), then again on a transient failure; see the module's docstring."""
    last: BaseException | None = None
    for attempt in range(ATTEMPTS):
        deadline = time.monotonic() + pause_s(attempt)
        while time.monotonic() < deadline and not halted():
            time.sleep(0.02)
        if halted():
            raise concurrent.futures.CancelledError()
        try:
            return attempt_fn(attempt)
        except BaseException as exc:
            if not transient(exc):
                raise
            last = exc
    reason = clean(last) if isinstance(last, BrokenBody) else str(translate(last, where))  # type: ignore[arg-type]
    raise StoreError(f"{where.op} {where.target} failed after {ATTEMPTS} attempts: {reason}")
