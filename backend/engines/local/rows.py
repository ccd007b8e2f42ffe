"""The runs table's rows as Runs: the listing's columns, `row_to_run`, the final JSON a finished run
is sealed with, and a row's cost over its ledger. The engine, the agent, submits, sweeps and ETAs
all read rows through here (backend/ledger/db.py holds the table itself)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from backend import clock
from ...ledger import db
from ...runs import STATES, Run, RunLine, RunState
from ...waits import behind

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~2.5 ms) on the CLI's path
if TYPE_CHECKING:
    from typing import Any

LIST_COLUMNS = (
    "id, name, experiment, profile, state, priority, submitted_at, admitted_at, started_at, "
    "finished_at, gpus, learners, gpu_type, labels, error_code, message, metrics, primary_metric, "
    "params, results_bucket, cost_micro, priced, seq, metric_goal, "
    "json_extract(spec, '$.depends_on') AS depends_on, "
    "json_extract(spec, '$.manifest_name') AS manifest_name, "
    "json_extract(spec, '$.max_duration_s') AS max_duration_s"
)

# The queue's order (queue positions read it through the covering index `runs_queue`, db.SCHEMA,
# so SQLite never sorts); admission (scheduler.py) reads the same order.
QUEUE_SQL = (
    "SELECT id, gpus * learners, profile, gpu_type, learners FROM runs WHERE state = 'QUEUED' "
    "ORDER BY prio DESC, submitted_at, id"
)

_UTC = timezone.utc


def utc_from_epoch(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, _UTC)


def _js(v, empty):
    if isinstance(v, str):
        return json.loads(v) if len(v) > 2 else empty
    return v if v is not None else empty


def row_to_run(row, *, cost: int | None = 0, position: int | None = None,
               approximate: bool = False) -> Run:
    """A Run from a row of any shape, its columns read by name: a full row (decoded or not), a
    submit's dict, a listing's row (those are read faster by `listing_row_to_run`)."""
    keys = row.keys()
    goal = row["metric_goal"] if "metric_goal" in keys else "minimize"
    depends_on = _depends_on(row, keys)
    spec = _spec_fields(row, keys)
    manifest_name, max_duration_s = spec.get("manifest_name"), spec.get("max_duration_s")
    state = row["state"]
    return Run(
        row["id"], row["name"], STATES.get(state) or RunState(state), utc_from_epoch(row["submitted_at"]),
        experiment=row["experiment"], queue_position=position,
        queue_position_approximate=approximate and position is not None,
        gpus=row["gpus"] * row["learners"], gpu_type=row["gpu_type"], assigned=_js(row["labels"], []),
        admitted_at=utc_from_epoch(row["admitted_at"]), started_at=utc_from_epoch(row["started_at"]),
        finished_at=utc_from_epoch(row["finished_at"]), cost_micro_usd=cost, error_code=row["error_code"],
        message=row["message"] or _waiting(state, position), metrics=_js(row["metrics"], {}),
        primary_metric=row["primary_metric"], learners=row["learners"], priority=row["priority"],
        params=_js(row["params"], {}), results_bucket=row["results_bucket"], metric_goal=goal,
        depends_on=depends_on, manifest_name=manifest_name, max_duration_s=max_duration_s,
    )


# LIST_COLUMNS' names in order (tests/unit/test_listing_rows.py holds the two together).
LIST_NAMES = (
    "id", "name", "experiment", "profile", "state", "priority", "submitted_at", "admitted_at", "started_at",
    "finished_at", "gpus", "learners", "gpu_type", "labels", "error_code", "message", "metrics", "primary_metric",
    "params", "results_bucket", "cost_micro", "priced", "seq", "metric_goal", "depends_on", "manifest_name",
    "max_duration_s",
)
I_ID, I_STATE, I_ADMITTED, I_COST, I_PRICED = (LIST_NAMES.index(n) for n in (
    "id", "state", "admitted_at", "cost_micro", "priced"))


def listing_row_to_run(row, cost: int | None, position: int | None, approximate: bool) -> Run:
    """`row_to_run` for a row of LIST_COLUMNS, its columns read by position: sqlite3.Row finds a
    column by name by comparing it with each column's name in turn, and the ~30 such reads per row
    were most of what a 600-run listing spent building its runs."""
    (rid, name, experiment, _profile, state, priority, submitted_at, admitted_at, started_at, finished_at,
     gpus, learners, gpu_type, labels, error_code, message, metrics, primary_metric, params, results_bucket,
     _cost_micro, _priced, _seq, goal, raw_depends_on, manifest_name, max_duration_s) = row
    return Run(
        rid, name, STATES.get(state) or RunState(state), utc_from_epoch(submitted_at),
        experiment=experiment, queue_position=position,
        queue_position_approximate=approximate and position is not None,
        gpus=gpus * learners, gpu_type=gpu_type, assigned=_js(labels, []),
        admitted_at=utc_from_epoch(admitted_at), started_at=utc_from_epoch(started_at),
        finished_at=utc_from_epoch(finished_at), cost_micro_usd=cost, error_code=error_code,
        message=message or _waiting(state, position), metrics=_js(metrics, {}),
        primary_metric=primary_metric, learners=learners, priority=priority,
        params=_js(params, {}), results_bucket=results_bucket, metric_goal=goal,
        depends_on=(json.loads(raw_depends_on) if isinstance(raw_depends_on, str) and raw_depends_on
                    else list(raw_depends_on or [])),
        manifest_name=manifest_name, max_duration_s=max_duration_s,
    )


# What one line of the runs listing shows (RunLine; engine.list_lines), read as plain tuples: no
# json_extract of the spec, none of the columns only a whole Run carries.
LINE_COLUMNS = (
    "id, name, state, submitted_at, admitted_at, finished_at, gpus * learners, "
    "CASE WHEN priced THEN cost_micro END, message, metrics, primary_metric"
)


L_ID, L_STATE, L_ADMITTED = 0, 2, 4  # LINE_COLUMNS' positions that list_lines reads before the lines are built


def line_rows_to_lines(rows, costs: dict[str, int | None], positions: dict[str, int]) -> list[RunLine]:
    """RunLines from rows of LINE_COLUMNS: each run's cost as `runs_from_rows` gives it (live where
    `costs` has it, nothing for a never-admitted queued run, else the stored one) and its message as
    `listing_row_to_run` words it."""
    out = []
    append = out.append
    get_state = STATES.get
    for (rid, name, state, submitted_at, admitted_at, finished_at, gpus, priced_cost, message, metrics,
         primary_metric) in rows:
        position = positions.get(rid)
        append(RunLine(
            rid, name, get_state(state) or RunState(state), datetime.fromtimestamp(submitted_at, _UTC), position,
            gpus, None if admitted_at is None else datetime.fromtimestamp(admitted_at, _UTC),
            None if finished_at is None else datetime.fromtimestamp(finished_at, _UTC),
            listed_cost(costs, rid, state, priced_cost), message or _waiting(state, position), _js(metrics, {}),
            primary_metric))
    return out


def listed_cost(costs: dict[str, int | None], run_id: str, state: str, stored: int | None) -> int | None:
    """A listed run's cost: live where `costs` has it (billed now, or queued again after an
    admission), nothing for a queued run never admitted, else the stored one (`stored`: None when
    unpriced)."""
    if run_id in costs:
        return costs[run_id]
    return 0 if state == _QUEUED else stored


def _spec_fields(row, keys) -> dict[str, Any]:
    """The manifest's name and max_duration, from the listing's columns or a decoded spec."""
    if "max_duration_s" in keys:
        return {"manifest_name": row["manifest_name"], "max_duration_s": row["max_duration_s"]}
    spec = row["spec"] if "spec" in keys else None
    if isinstance(spec, str):
        spec = json.loads(spec)
    if isinstance(spec, dict):
        return {"manifest_name": spec.get("manifest_name"), "max_duration_s": spec.get("max_duration_s")}
    return {}


def _depends_on(row, keys) -> list[str]:
    if "depends_on" in keys:
        raw = row["depends_on"]
        return json.loads(raw) if isinstance(raw, str) and raw else list(raw or [])
    if "spec" in keys and isinstance(row["spec"], dict):  # a decoded full row (db.get_row)
        return list(row["spec"].get("depends_on") or [])
    return []


def _waiting(state: str, position: int | None) -> str:
    """A queued run the agent gave no reason of its own waits for the runs ahead of it."""
    return behind(position) if state == _QUEUED else ""


_QUEUED = RunState.QUEUED.value  # an enum member's .value is a property: read once, not per row


# A finished run never changes, so its JSON is written once when it ends and `runs --json` copies
# it out instead of rebuilding 10,000 Run objects. The shape (Run's fields) guards against a cached
# document from an older program version.
JSON_SHAPE = ",".join(Run._fields)


def seal_run(conn, run_id: str) -> None:
    """Store a terminal run's final JSON document (called by whoever made it terminal)."""
    row = conn.execute(f"SELECT {LIST_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None or not RunState(row["state"]).terminal:
        return
    run = listing_row_to_run(row, row[I_COST] if row[I_PRICED] else None, None, False)
    with db.write(conn):
        conn.execute("UPDATE runs SET final_json = ?, json_shape = ? WHERE id = ?",
                     (json.dumps(run.to_json()), JSON_SHAPE, run_id))


def queued_end_cost(config, conn, run_id: str) -> dict[str, int | None]:
    """The cost columns of a run that ends while QUEUED: what its ledger billed (a run put back in
    the queue keeps what it ran up), and $0.00, never "unpriced", when it never held a device."""
    row = db.get_row(conn, run_id)
    events = [(e["at"], e["state"]) for e in db.events(conn, run_id)]
    cost = row_cost(config, row, events, clock.time())  # backend/cost.py: never billed = $0
    return {"cost_micro": cost, "priced": 0 if cost is None else 1}


def row_cost(config, row, events, now: float, meter=None) -> int | None:
    """Micro-dollars of a run row over its ledger (epoch, state) up to `now`: the live cost in the
    table and, with the final event appended, the cost the agent stores. backend/cost.py bills."""
    from ...cost import Meter

    meter = meter or Meter.from_config(config)
    return meter.bill_epochs(events, gpus=row["gpus"] * row["learners"], learners=row["learners"],
                             gpu_type=row["gpu_type"], now=now)
