"""`dlaas-tui` with no command: open the TUI on the chosen profile.

The app is started before the backend is opened (it opens it after its first frame), so a bad
config or an unknown profile is reported here, in one line, once the app has exited.
"""
from __future__ import annotations

import argparse
import gc

from .context import Context


def launch_tui(args: argparse.Namespace, ctx: Context) -> int:
    # Start-up makes some 80,000 container objects (Textual, Rich, pydantic, the screen) and frees
    # almost none: cyclic collections until the first frame is drawn and the config read are wasted
    # work (10-20 ms here). Then what start-up made is frozen out of later collections, which keeps
    # the 1 Hz updates cheaper too.
    gc.disable()
    try:
        return _run(ctx)
    finally:
        gc.enable()


def _resume_gc() -> None:
    gc.freeze()
    gc.enable()


def _run(ctx: Context) -> int:
    from ..app import DlaasApp

    if ctx._backend is not None:  # already opened by the caller
        app = DlaasApp(ctx._backend, on_started=_resume_gc)
    else:
        app = DlaasApp(opener=lambda: ctx.backend, on_started=_resume_gc)
    app.run()
    if app.open_error is not None:
        raise app.open_error
    if app.backend_ready and app.backend is not ctx._backend:
        app.backend.close()  # `:profile` swapped it; the context closes the one it opened
    return app.return_code or 0
