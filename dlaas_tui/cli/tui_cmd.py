"""`dlaas-tui` with no command: open the TUI on the chosen profile.

The app is started before the backend is opened (it opens it after its first frame), so a bad
config or an unknown profile is reported here, in one line, once the app has exited.
"""
from __future__ import annotations

import argparse

from .context import Context


def launch_tui(args: argparse.Namespace, ctx: Context) -> int:
    from ..app import DlaasApp

    if ctx._backend is not None:  # already opened by the caller
        app = DlaasApp(ctx._backend)
    else:
        app = DlaasApp(opener=lambda: _open(ctx))
    app.run()
    if app.open_error is not None:
        raise app.open_error
    if app.backend_ready and app.backend is not ctx._backend:
        app.backend.close()  # `:profile` swapped it; the context closes the one it opened
    return app.return_code or 0


def _open(ctx: Context):
    return ctx.backend
