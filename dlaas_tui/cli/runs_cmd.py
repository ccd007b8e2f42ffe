"""CLI commands: submit, runs, show, logs, halt, resume, delete, rerun, results, wait."""
from __future__ import annotations

import argparse
import os
import sys
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~2.5 ms) on the CLI's path
if TYPE_CHECKING:
    from pathlib import Path


def _path(text: str) -> Path:
    """argparse's `type` for a file argument: a Path, with pathlib (~4 ms) imported only when a
    command that takes one is parsed, not by `runs`."""
    from pathlib import Path

    return Path(text)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit training manifests (one run each, or one per sweep trial)")
    p.add_argument("manifests", nargs="+", metavar="MANIFEST", type=_path)
    p.add_argument("--model", type=_path, metavar="DIR|ZIP",
                   help="model code (default: the manifest's model/ folder, else its folder)")
    p.add_argument("--name", metavar="N", help="run name (default: the manifest's name)")
    p.add_argument("--experiment", metavar="NAME", help="group the runs under an experiment")
    p.add_argument("--json", action="store_true", help="print the run objects as JSON")
    p.add_argument("--dry-run", action="store_true", help="validate and show, record nothing")
    p.add_argument("--after", action="append", default=[], metavar="RUN|@",
                   help="start only when RUN completes (@ = the last submission; repeatable)")
    p.add_argument("--hold", action="store_true", help="queue it held: it starts after `release`")
    p.add_argument("--begin", metavar="WHEN",
                   help="not before WHEN: HH:MM (the next one, local time), an ISO date-time, or +DURATION")
    p.add_argument("-o", "--output", choices=["yaml"],
                   help="with --dry-run: print each run's manifest (sweep expanded) as YAML")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("runs", help="list runs, newest first")
    p.add_argument("--state", action="append", metavar="S", help="only runs in state S (repeatable)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N runs (N >= 1)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--tree", action="store_true", help="runs under the runs they depend on")
    p.set_defaults(func=cmd_runs)

    for verb, what in (("hold", "keep queued runs from starting"), ("release", "let held runs start")):
        p = sub.add_parser(verb, help=what)
        p.add_argument("runs", nargs="+", metavar="RUN")
        p.set_defaults(func=cmd_hold, verb=verb)

    p = sub.add_parser("priority", help="change queued runs' priority (their place in the queue)")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("priority", metavar="PRIORITY", help="a name from [priorities] (high, normal, low), or on local profiles a number")
    p.add_argument("--json", action="store_true", help="print the run objects as JSON")
    p.set_defaults(func=cmd_priority)

    p = sub.add_parser("show", help="one run: state, queue, devices, cost, metrics, events")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("logs", help="a run's training log")
    p.add_argument("run", metavar="RUN")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
    p.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    p.add_argument("--learner", type=int, default=1, metavar="N", help="learner N's log (default 1)")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("halt", help="stop runs (SIGTERM, 10 s, SIGKILL; logs are kept)")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--no-wait", action="store_true", help="return once the halt is requested")
    p.set_defaults(func=cmd_halt)

    p = sub.add_parser("resume", help="start HALTED or FAILED runs again from their checkpoints "
                                      "(a new attempt of the same run)")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--json", action="store_true", help="print the run objects as JSON")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("delete", help="forget finished runs (their results stay in the bucket)")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("rerun", help="submit a run's manifest and code again")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rerun)

    p = sub.add_parser("results", help="download a run's results folder")
    p.add_argument("run", metavar="RUN")
    p.add_argument("dest", metavar="DEST", type=_path)
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("wait", help="wait for runs to end (0 all COMPLETED, 1 some not, 124 timeout)")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--timeout", type=float, metavar="S")
    p.set_defaults(func=cmd_wait)


def _money(run) -> str:
    return "unpriced" if run.cost_usd is None else f"${run.cost_usd:.4f}"


def _metric(run) -> str:
    name = run.primary_metric
    if not name or name not in run.metrics:
        return ""
    return f"{name}={run.metrics[name]:.4g}"


def _print_expanded_yaml(paths: list[Path]) -> None:
    """Each run a submit would make, as the manifest it runs (secrets stay masked)."""
    import yaml
    from backend.facade import expand_sweep, parse_manifest

    docs = []
    for path in paths:
        result = parse_manifest(path.read_text(), str(path))
        for trial in expand_sweep(result.manifest):
            doc = trial.manifest.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
            docs.append(doc)
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))


def cmd_submit(args, ctx) -> int:
    from backend.facade import BadInput, submit_through_agent

    from .output import print_json

    if args.output and not args.dry_run:
        raise BadInput("-o yaml goes with --dry-run")
    gated = bool(args.after or args.hold or args.begin)
    if gated and ctx.backend.profile.scheduler != "local":
        raise BadInput("--after, --hold and --begin work on local profiles only")
    if args.begin:
        from backend.facade import parse_begin

        begin_at = parse_begin(args.begin)
    else:
        begin_at = None
    # One random id for this submit, in each of its runs (whichever process records them): how a
    # submission worker that ended without answering is found to have recorded it or not.
    fields = dict(manifests=args.manifests, model=args.model, name=args.name, experiment=args.experiment,
                  after=tuple(args.after), hold=args.hold, begin_at=begin_at,
                  request_id=None if args.dry_run else os.urandom(12).hex())
    if not args.dry_run:
        # On a local profile whose agent runs, its submission worker (which has the manifest models
        # loaded) submits; else, or when it does not take the request, this process does.
        docs = submit_through_agent(ctx.backend, read_only=ctx.read_only, **fields)
        if docs is not None:
            if args.json:
                print_json(docs)
            else:
                for doc in docs:
                    print(doc["id"])
            return 0
    from backend.facade import SubmitRequest

    req = SubmitRequest(dry_run=args.dry_run, **fields)
    runs = ctx.backend.engine.submit(req)
    if args.output == "yaml":
        if ctx.backend.profile.scheduler == "kubernetes":
            # Every object the cluster would get (Job, ConfigMap, Secret, Service), secrets masked.
            from backend.facade import kubernetes_dry_run_yaml

            sys.stdout.write(kubernetes_dry_run_yaml(ctx.backend, args.manifests, name=args.name,
                                                     experiment=args.experiment))
        else:
            _print_expanded_yaml(args.manifests)
        return 0
    if args.json:
        print_json([r.to_json() for r in runs])
    else:
        if args.dry_run:
            print(f"valid: would submit {len(runs)} run(s)", file=sys.stderr)
        for r in runs:
            print(r.id if not args.dry_run else f"{r.name}  gpus={r.gpus}  params={r.params}")
    if args.dry_run:
        _print_estimate(ctx.backend, args.manifests, sys.stderr if args.json else sys.stdout)
    return 0


def _print_estimate(backend, manifests, out) -> None:
    """The cost estimate and the budget it would be checked against (a submit over it is refused)."""
    from backend.facade import describe_budget, estimate_submission

    estimates, status = estimate_submission(backend, manifests)
    for name, est in estimates:
        print(f"estimate {name}: {est.describe()}", file=out)
    totals = [e.total_usd for _, e in estimates]
    known = None if any(t is None for t in totals) else sum(totals)
    if len(estimates) > 1 and known is not None:
        print(f"estimate total: ${known:,.2f}", file=out)
    print(describe_budget(status, known), file=out)


def cmd_hold(args, ctx) -> int:
    from backend.facade import BadInput, Holds

    engine = ctx.backend.engine
    if not isinstance(engine, Holds):
        raise BadInput(f"{args.verb} works on local profiles only")
    for rid in args.runs:
        run = engine.hold(rid) if args.verb == "hold" else engine.release(rid)
        print(f"{run.id}: {run.state.value}{' held' if args.verb == 'hold' else ''}")
    return 0


def cmd_priority(args, ctx) -> int:
    from backend.facade import BadInput, Priorities

    engine = ctx.backend.engine
    if not isinstance(engine, Priorities):
        raise BadInput(f"priority: profile {ctx.backend.profile.name!r} cannot change a run's priority")
    changed = [engine.set_priority(rid, args.priority) for rid in args.runs]
    if args.json:
        from .output import print_json

        print_json([r.to_json() for r in changed])
        return 0
    for run in changed:
        pos = f", queue position {run.queue_position}" if run.queue_position else ""
        print(f"{run.id}: priority {run.priority}{pos}")
    return 0


def _print_tree(runs) -> None:
    """Each run under the runs it depends on (a run with several parents shows under each)."""
    from .output import safe_text

    by_id = {r.id: r for r in runs}
    children: dict[str, list] = {}
    roots = []
    for r in sorted(runs, key=lambda r: r.submitted_at):
        parents = [p for p in r.depends_on if p in by_id]
        for p in parents:
            children.setdefault(p, []).append(r)
        if not parents:
            roots.append(r)

    def line(r, prefix: str, branch: str) -> None:
        why = f"  {safe_text(r.message)}" if r.message and r.state.value in ("QUEUED", "FAILED") else ""
        print(f"{prefix}{branch}{r.id}  {safe_text(r.name)}  {r.state.value}{why}")
        kids = children.get(r.id, [])
        inner = prefix + ("" if not branch else ("   " if branch == "└─ " else "│  "))
        for i, kid in enumerate(kids):
            line(kid, inner, "└─ " if i == len(kids) - 1 else "├─ ")

    for r in roots:
        line(r, "", "")


def cmd_runs(args, ctx) -> int:
    from backend.facade import BadInput, RunState

    from .output import print_json, print_json_encoded, print_table

    if args.limit is not None and args.limit < 1:
        raise BadInput(f"--limit {args.limit}: give 1 or more runs (leave it out for all)")
    states = None
    if args.state:
        try:
            states = [RunState(s.upper()) for s in args.state]
        except ValueError:
            raise BadInput(f"--state must be one of {', '.join(s.value for s in RunState)}") from None
    engine = ctx.backend.engine
    if args.json and not args.tree:
        # 10,000 runs: finished ones pre-encoded (EncodedListing, asked for by name as list_lines is)
        list_json = getattr(engine, "list_runs_json", None)
        if list_json is not None:
            print_json_encoded(list_json(states=states, limit=args.limit))
            return 0
    # The table shows a RunLine's fields (names as a Run's): an engine that lists lines builds no Runs.
    list_lines = None if args.tree or args.json else getattr(engine, "list_lines", None)
    runs = (list_lines or engine.list_runs)(states=states, limit=args.limit)
    if args.tree:
        _print_tree(runs)
        return 0
    if args.json:
        print_json([r.to_json() for r in runs])
        return 0
    from backend.facade import format_eta, utcnow

    from ..formatting import format_age

    now = utcnow()
    queued = RunState.QUEUED
    rows = [(r.id, r.name, r.state,  # a StrEnum: the table writes its value (str), without .value's property
             (f"{r.queue_position} {format_eta(r.eta, now, bound=r.eta_bound)}" if r.eta else str(r.queue_position))
             if r.queue_position else "", r.gpus, format_age(r, now), _money(r), _metric(r) if r.primary_metric else "",
             r.message if r.state is queued else "") for r in runs]  # made safe by the table
    print_table(["ID", "NAME", "STATE", "Q", "GPUS", "TIME", "COST", "METRIC", "WAITING FOR"], rows)
    return 0


def cmd_show(args, ctx) -> int:
    from .output import print_json, safe_text

    engine = ctx.backend.engine
    run = engine.get_run(args.run)
    events = engine.events(args.run)
    if args.json:
        doc = run.to_json()
        doc["events"] = [e.to_json() for e in events]
        print_json(doc)
        return 0
    j = run.to_json()
    for key in ("id", "name", "experiment", "state", "queue_position", "priority", "gpus", "gpu_type",
                "submitted_at", "admitted_at", "started_at", "finished_at", "error_code"):
        if j[key] not in (None, ""):
            print(f"{key:15} {safe_text(str(j[key]))}")
    if run.eta is not None:
        from backend.facade import format_eta, iso

        what = "an upper bound: max_duration" if run.eta_bound else "an estimate"
        print(f"{'eta':15} {iso(run.eta)} ({format_eta(run.eta, bound=run.eta_bound)}, {what})")
    print(f"{'assigned':15} {safe_text(', '.join(run.assigned)) or '-'}")
    from backend.facade import attempt_of

    if (attempt := attempt_of(events)) > 1:
        print(f"{'attempt':15} {attempt} (resumed; cost covers every attempt)")
    if run.depends_on:
        print(f"{'depends_on':15} {safe_text(', '.join(run.depends_on))}")
    print(f"{'cost':15} {_money(run)}")
    if run.message:
        print(f"{'message':15} {safe_text(run.message)[:400]}")
    if run.params:
        print(f"{'params':15} {safe_text(str(run.params))}")
    for name, value in run.metrics.items():
        print(f"{'metric':15} {safe_text(name)} = {value:.6g}")
    print("events:")
    for e in events:
        state = e.state.value if e.state else "-"
        print(f"  {e.to_json()['at'][:22]}  {state:11} {safe_text(e.message)}".rstrip())  # whole: a script reads it
    return 0


def cmd_logs(args, ctx) -> int:
    from .output import safe_text

    from backend.facade import BadInput

    if args.learner < 1:
        raise BadInput("--learner counts from 1 (learner-1 is the first)")
    if args.tail is not None and args.tail < 0:
        raise BadInput(f"--tail {args.tail}: give 0 or more lines")
    lines = ctx.backend.engine.logs(args.run, learner=args.learner - 1, tail=args.tail, follow=args.follow)
    for line in lines:
        sys.stdout.write(safe_text(line) + "\n")
        if args.follow:
            sys.stdout.flush()
    return 0


def cmd_halt(args, ctx) -> int:
    engine = ctx.backend.engine
    for rid in args.runs:
        engine.halt(rid)
    if args.no_wait:
        for rid in args.runs:
            print(f"{rid}: halt requested")
        return 0
    deadline = time.monotonic() + 30
    pending = list(args.runs)
    while pending and time.monotonic() < deadline:
        pending = [rid for rid in pending if not engine.get_run(rid).state.terminal]
        if pending:
            time.sleep(0.2)
    for rid in args.runs:
        print(f"{rid}: {engine.get_run(rid).state.value}")
    return 0 if not pending else 1


def cmd_resume(args, ctx) -> int:
    from backend.facade import attempt_of

    from .output import print_json

    engine = ctx.backend.engine  # every engine resumes (the Engine protocol)
    runs = [engine.resume(rid) for rid in args.runs]
    if args.json:
        print_json([r.to_json() for r in runs])
        return 0
    for r in runs:
        print(f"{r.id}: {r.state.value}, attempt {attempt_of(engine.events(r.id))}")
    return 0


def cmd_delete(args, ctx) -> int:
    engine = ctx.backend.engine
    for rid in args.runs:
        engine.delete(rid)
        print(f"{rid}: deleted (results kept)")
    return 0


def cmd_rerun(args, ctx) -> int:
    from backend.facade import EngineError, Reruns

    from .output import print_json

    engine = ctx.backend.engine
    if not isinstance(engine, Reruns):
        raise EngineError(f"the {engine.name} engine cannot rerun runs")
    runs = engine.rerun(args.run)
    if args.json:
        print_json([r.to_json() for r in runs])
    else:
        for r in runs:
            print(r.id)
    return 0


def _results_folder(dest: Path) -> None:
    """DEST must be a folder (made if missing); anything else is refused before a byte is copied."""
    from backend.facade import BadInput

    if dest.exists() and not dest.is_dir():
        raise BadInput(f"{dest}: exists and is not a folder; give a folder to download into")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a parent is a file
        raise BadInput(f"{dest}: a part of this path is a file, not a folder") from None
    except NotADirectoryError:
        raise BadInput(f"{dest}: a part of this path is a file, not a folder") from None
    except PermissionError:
        raise BadInput(f"{dest}: cannot create this folder (permission denied)") from None


def cmd_results(args, ctx) -> int:
    from backend.facade import NotFound, ResultsDownload

    engine = ctx.backend.engine
    run = engine.get_run(args.run)
    if not run.results_bucket:
        raise NotFound(f"{run.id}: no results bucket recorded")
    _results_folder(args.dest)
    if isinstance(engine, ResultsDownload):
        n = engine.download_results(run.id, args.dest)
    else:
        n = ctx.backend.store.get_prefix(run.results_bucket, f"{run.id}/", args.dest)
    print(f"{n} file(s) from {run.results_bucket}/{run.id}/ to {args.dest}")
    return 0


def cmd_wait(args, ctx) -> int:
    from backend.facade import BadInput

    if args.timeout is not None and not args.timeout >= 0:
        raise BadInput(f"--timeout {args.timeout}: give 0 or more seconds")
    engine = ctx.backend.engine
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    for rid in args.runs:
        engine.get_run(rid)  # unknown ids fail now, not after the wait
    while True:
        runs = [engine.get_run(rid) for rid in args.runs]
        if all(r.state.terminal for r in runs):
            for r in runs:
                print(f"{r.id}: {r.state.value}" + (f" {r.error_code}" if r.error_code else ""))
            return 0 if all(r.state.value == "COMPLETED" for r in runs) else 1
        if deadline is not None and time.monotonic() >= deadline:
            for r in runs:
                print(f"{r.id}: {r.state.value}")
            return 124
        time.sleep(0.25)
