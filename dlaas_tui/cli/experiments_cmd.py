"""CLI commands: `experiments` (the list) and `experiments show ID` (the leaderboard)."""
from __future__ import annotations

import argparse

from .context import Context


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiments",
        help="list experiments (sweeps and grouped submissions); `show ID` for a leaderboard",
        description="Experiments group runs: a sweep's trials, or manifests submitted with --experiment.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=list_experiments)
    inner = p.add_subparsers(dest="experiments_command", metavar="SUBCOMMAND")
    show = inner.add_parser("show", help="runs ranked by the metric, with their parameters")
    show.add_argument("id", metavar="ID", help="experiment id (see `dlaas-tui experiments`)")
    show.add_argument("--metric", help="rank by this metric instead of the primary one")
    show.add_argument("--goal", choices=["minimize", "maximize"], help="override the sweep's goal")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=show_experiment)


def _fmt_value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _fmt_cost(cost: float | None) -> str:
    return "unpriced" if cost is None else f"${cost:,.2f}"


def list_experiments(args: argparse.Namespace, ctx: Context) -> int:
    from backend.facade import experiment_summaries
    from backend.facade import iso

    from .output import print_json, print_table

    summaries = experiment_summaries(ctx.backend.engine.list_runs())
    if args.json:
        print_json([{**s, "submitted_at": iso(s["submitted_at"])} for s in summaries])
        return 0
    if not summaries:
        print("no experiments yet: submit a manifest with a `sweep:` block, or use --experiment")
        return 0
    rows = []
    for s in summaries:
        states = " ".join(f"{k.lower()}:{v}" for k, v in sorted(s["counts"].items()))
        best = f"{s['metric']}={_fmt_value(s['best_value'])}" if s["metric"] else "-"
        rows.append([s["id"], s["runs"], states, best, _fmt_cost(s["cost_usd"])])
    print_table(["EXPERIMENT", "RUNS", "STATES", "BEST", "COST"], rows)
    return 0


def show_experiment(args: argparse.Namespace, ctx: Context) -> int:
    from backend.facade import leaderboard
    from backend.facade import NotFound

    from ..formatting import format_params
    from .output import print_json, print_table

    runs = ctx.backend.engine.list_runs(experiment=args.id)
    if not runs:
        raise NotFound(f"no experiment {args.id!r} (see `dlaas-tui experiments`)")
    goal = args.goal or runs[0].metric_goal
    board = leaderboard(args.id, runs, metric=args.metric, goal=goal)
    if args.json:
        _print_board(board.to_json(), print_json)
        return 0
    total = sum(board.counts.values())
    states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(board.counts.items()))
    print(f"experiment {board.experiment}: {total} runs ({states}); cost {_fmt_cost(None if board.cost_micro_usd is None else board.cost_micro_usd / 1e6)}")
    print(f"ranked by {board.metric or '(no metric reported yet)'} ({board.goal})")
    rows = []
    for row in board.rows:
        mark = "*" if row.best else ""
        rows.append(
            [
                f"{row.rank or '-'}{mark}",
                row.run.id,
                row.run.state.value,
                _fmt_value(row.value),
                format_params(row.run.params),
            ]
        )
    print_table(["RANK", "RUN", "STATE", (board.metric or "METRIC").upper(), "PARAMETERS"], rows, keep=(1,))
    if board.best:
        print(f"* best: {board.best.run.id}")
    return 0


def _print_board(doc: dict, print_json) -> None:
    """Indented JSON; a big sweep's runs one compact object per line (valid JSON, ~10x faster)."""
    import json
    import sys

    runs = doc["runs"]
    if len(runs) <= 200:
        print_json(doc)
        return
    head = json.dumps({k: v for k, v in doc.items() if k != "runs"}, indent=2, default=str)
    out = sys.stdout
    out.write(head[: head.rindex("}")].rstrip() + ',\n  "runs": [\n')
    last = len(runs) - 1
    for i, run in enumerate(runs):
        out.write("    " + json.dumps(run, default=str) + (",\n" if i < last else "\n"))
    out.write("  ]\n}\n")
