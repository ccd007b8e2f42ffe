"""CLI command: budget — the profile's budgets, with what is spent and what is committed."""
from __future__ import annotations

import argparse

from .context import Context


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "budget",
        help="the profile's daily and monthly budgets: spent, committed and left",
        description="Spent is what runs have cost today and this month (UTC); committed is what every "
        "queued and running run is estimated to cost still. A submit whose estimate does not fit in "
        "budget - spent - committed is refused (exit 2) and queues nothing.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=show_budget)


def show_budget(args: argparse.Namespace, ctx: Context) -> int:
    from backend.facade import budget_lines, budget_status

    from .output import print_json

    status = budget_status(ctx.backend)
    if args.json:
        print_json({"profile": ctx.backend.profile.name, "budget": None if status is None else status.to_json()})
        return 0
    for line in budget_lines(status):
        print(line)
    return 0
