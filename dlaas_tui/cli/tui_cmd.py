"""`dlaas-tui` with no command: open the TUI on the chosen profile."""
from __future__ import annotations

import argparse

from .context import Context


def launch_tui(args: argparse.Namespace, ctx: Context) -> int:
    from ..app import DlaasApp

    DlaasApp(ctx.backend).run()
    return 0
