"""What every CLI handler gets: the backend (opened on first use) and the error-to-exit-code rule."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~2.5 ms) on the CLI's path
if TYPE_CHECKING:
    from typing import Any
    from backend.facade import Backend


class Context:
    """The global options and the backend they open (a plain class: `runs` loads no dataclasses)."""

    def __init__(self, profile: str | None = None, read_only: bool = False, _backend: Any = None) -> None:
        self.profile = profile
        self.read_only = read_only
        self._backend = _backend

    def __repr__(self) -> str:
        return f"Context(profile={self.profile!r}, read_only={self.read_only!r})"

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            from backend.facade import open_backend

            self._backend = open_backend(self.profile, read_only=self.read_only)
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


Handler = Callable[[argparse.Namespace, Context], int | None]


def run_handler(func: Handler, args: argparse.Namespace, ctx: Context) -> int:
    """Run a handler; a user-facing error becomes one line on stderr and an exit code."""
    from backend.facade import DlaasError

    try:
        rc = func(args, ctx)
        if sys.stdout is not None:
            sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
        return 0 if rc is None else int(rc)
    except DlaasError as exc:
        print(f"dlaas-tui: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("dlaas-tui: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader stopped reading (`| head`): what it wanted it has. Point stdout at /dev/null so
        # the flush at exit cannot complain ("Broken pipe") about the bytes left in the buffer.
        _silence_stdout()
        return 0
    except Exception as exc:  # a bug, not a user error: one line, the traceback only on request
        import os

        from backend.facade import explain_failure

        known = explain_failure(exc)
        if known is not None:
            print(f"dlaas-tui: {known}", file=sys.stderr)
            return known.exit_code
        if os.environ.get("DLAAS_DEBUG"):
            raise
        print(
            f"dlaas-tui: internal error: {type(exc).__name__}: {exc} "
            "(run again with DLAAS_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        ctx.close()


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
