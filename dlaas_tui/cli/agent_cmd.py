"""CLI commands: agent start | stop | status (the per-DLAAS_HOME background agent)."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="the background agent that queues and runs runs")
    asub = p.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    s = asub.add_parser("start", help="start the agent unless one runs")
    s.set_defaults(func=cmd_start)
    s = asub.add_parser("stop", help="stop the agent (running runs go on; the next agent adopts them)")
    s.set_defaults(func=cmd_stop)
    s = asub.add_parser("status", help="say whether the agent runs, and its pid")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)


def cmd_start(args, ctx) -> int:
    from backend.facade import agent_start

    print(f"agent running, pid {agent_start()}")
    return 0


def cmd_stop(args, ctx) -> int:
    from backend.facade import agent_stop

    pid = agent_stop()
    print("agent was not running" if pid is None else f"agent {pid} stopped")
    return 0


def cmd_status(args, ctx) -> int:
    from backend.facade import agent_status, get_paths

    from .output import print_json

    pid = agent_status()
    log = get_paths().state_dir / "agent.log"
    if args.json:
        print_json({"running": pid is not None, "pid": pid, "log": str(log)})
    elif pid is None:
        print("agent not running")
    else:
        print(f"agent running, pid {pid} (log: {log})")
    return 0 if pid is not None else 1
