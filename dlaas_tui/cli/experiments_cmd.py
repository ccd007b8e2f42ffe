"""CLI commands: experiments (not yet implemented)."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the parser."""
