"""The one door the UI and CLI use into the backend.

`open_backend()` reads the config, picks the profile, and builds the engine (scheduler) and the object
store it names, lazily: asking for `--help`, validating a manifest or listing local buckets never
imports boto3, kubernetes or pynvml. Everything the presentation layer needs is re-exported here, so
`dlaas_tui` imports `backend.facade` and nothing else from the backend.
"""
from __future__ import annotations

import importlib
from datetime import datetime
from collections.abc import Sequence

# Light (standard library only) and needed by nearly every caller, the TUI's first frame included.
from .errors import (  # noqa: F401
    BadInput,
    ConfigError,
    DlaasError,
    EngineError,
    NotFound,
    ReadOnly,
    StoreError,
)
from .paths import Paths, get_paths, private_dir, resource_dir, write_private  # noqa: F401
from .records import Record
# Re-exported too, but loaded on first use: config and manifests pull in pydantic (0.1-0.25 s), which
# the TUI's first frame and `--help` never need; the others are small, and not needed there either
# (the run types and the engine protocols, ~12 ms, are not needed by a `submit` handed to the agent).
# `from backend.facade import Config` works as before (module `__getattr__`, PEP 562); each module is
# imported once, and the name then cached here.
_LAZY = {
    ".runs": (
        "ACTIVE_STATES",
        "RESUMABLE_STATES",
        "TERMINAL_STATES",
        "ChangeSet",
        "ErrorCode",
        "MetricPoint",
        "Run",
        "RunEvent",
        "RunLine",
        "RunState",
        "SubmitRequest",
        "attempt_of",
        "iso",
        "parse_begin",
        "utcnow",
    ),
    ".engine_protocol": (
        "Clock",
        "CostBreakdowns",
        "EncodedListing",
        "Engine",
        "LineListing",
        "FitCheck",
        "Holds",
        "LogFiles",
        "OwnClock",
        "Priorities",
        "QueueHead",
        "Reruns",
        "ResultsDownload",
    ),
    ".devices": ("Device", "Inventory"),
    ".config": ("Config", "Profile", "Secret", "load_config"),
    ".cost": ("CostBreakdown", "PriceTable", "canonical_gpu_type", "format_usd"),
    ".metrics": ("ParsedMetrics", "parse_metrics_line", "primary_metric"),
    ".experiments": ("Leaderboard", "experiment_summaries", "halt_candidates", "leaderboard"),
    ".budget": ("BudgetStatus", "CostEstimate", "spend"),
    ".eta": ("format_eta",),
    ".text": ("NEEDS_VISIBLE", "controls_to_spaces", "visible"),
    ".samples_seed": ("ensure_sample_data",),
    ".preflight": ("check_for_profile", "never_fits"),
    ".store.base": (
        "BucketInfo",
        "ListPage",
        "ObjectInfo",
        "ObjectStore",
        "Transfer",
        "TransferCancelled",
        "split_location",
        "validate_bucket_name",
        "validate_key",
    ),
    ".manifest": (
        "Manifest",
        "ManifestError",
        "ManifestResult",
        "Problem",
        "check_manifest",
        "load_manifest",
        "parse_manifest",
    ),
}
_LAZY_NAMES = {name: module for module, names in _LAZY.items() for name in names}

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~2.5 ms) on the CLI's path
if TYPE_CHECKING:
    from typing import Any
    from .config import Config, Profile, Secret, load_config  # noqa: F401
    from .engine_protocol import (  # noqa: F401
        Clock,
        CostBreakdowns,
        EncodedListing,
        Engine,
        LineListing,
        FitCheck,
        Holds,
        LogFiles,
        OwnClock,
        Priorities,
        QueueHead,
        Reruns,
        ResultsDownload,
    )
    from .runs import (  # noqa: F401
        ACTIVE_STATES,
        RESUMABLE_STATES,
        TERMINAL_STATES,
        ChangeSet,
        ErrorCode,
        MetricPoint,
        Run,
        RunEvent,
        RunLine,
        RunState,
        SubmitRequest,
        attempt_of,
        iso,
        parse_begin,
        utcnow,
    )
    from .cost import CostBreakdown, PriceTable, canonical_gpu_type, format_usd  # noqa: F401
    from .devices import Device, Inventory  # noqa: F401
    from .eta import format_eta  # noqa: F401
    from .text import NEEDS_VISIBLE, controls_to_spaces, visible  # noqa: F401
    from .budget import BudgetStatus, CostEstimate, spend  # noqa: F401
    from .experiments import Leaderboard, experiment_summaries, halt_candidates, leaderboard  # noqa: F401
    from .manifest import (  # noqa: F401
        Manifest,
        ManifestError,
        ManifestResult,
        Problem,
        check_manifest,
        load_manifest,
        parse_manifest,
    )
    from .metrics import ParsedMetrics, parse_metrics_line, primary_metric  # noqa: F401
    from .preflight import check_for_profile, never_fits  # noqa: F401
    from .samples_seed import ensure_sample_data  # noqa: F401
    from .store.base import (  # noqa: F401
        BucketInfo,
        ListPage,
        ObjectInfo,
        ObjectStore,
        Transfer,
        TransferCancelled,
        split_location,
        validate_bucket_name,
        validate_key,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __package__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))


def manifest_schema() -> dict[str, Any]:
    """JSON Schema of the manifest (for yaml-language-server)."""
    from .manifest.schema import manifest_schema as build

    return build()


def convert_manifest(manifest: Manifest, to: str) -> Any:
    """`to` is `wml` or `ffdl`; returns a Converted (`.data`, `.to_yaml()`, `.notes`), secrets masked."""
    from .manifest.convert import CONVERTERS

    if to not in CONVERTERS:
        raise BadInput(f"unknown manifest dialect {to!r}; known: {', '.join(CONVERTERS)}")
    return CONVERTERS[to](manifest)


def estimate_submission(backend: Backend, paths: list[Any]) -> tuple[list[tuple[str, CostEstimate]], BudgetStatus | None]:
    """Each manifest's cost estimate and the profile's budget status (None: no budget set)."""
    from .budget import estimate_paths

    return estimate_paths(backend, paths)


def estimate_manifest(backend: Backend, manifest: Manifest) -> CostEstimate:
    """What submitting this (parsed) manifest is expected to cost, on this backend's engine."""
    from .budget import estimate_manifest as estimate

    return estimate(backend, manifest, engine=backend.engine)


def budget_status(backend: Backend, runs: list[Run] | None = None) -> BudgetStatus | None:
    """Spent and committed against the profile's budget (from `runs` when given, else the engine's);
    None when no budget is set."""
    if runs is None:
        from .budget import budget_status as status

        return status(backend)
    from .budget import status_from_runs

    from .runs import utcnow

    return status_from_runs(backend, runs, utcnow())


def spending(backend: Backend, runs: list[Run], now: datetime | None = None) -> BudgetStatus:
    """Spent today and this month and committed by `runs`, against the profile's budgets (a limit
    None where none is set; `now`: the app's clock); by the rule of `budget_status`."""
    from .budget import spending as figures

    return figures(backend, runs, now)


def committed_usd(backend: Backend, runs: list[Run]) -> float:
    """What the queued and running runs among `runs` are estimated to cost still (USD): `spending`'s
    committed figure."""
    return spending(backend, runs).committed


def budget_lines(status: BudgetStatus | None) -> list[str]:
    from .budget import budget_lines as lines

    return lines(status)


def describe_budget(status: BudgetStatus | None, estimate_usd: float | None = None) -> str:
    from .budget import describe_budget as describe

    return describe(status, estimate_usd)


def kubernetes_dry_run_yaml(backend: Backend, manifests: list[Any], *, name: str | None = None,
                            experiment: str | None = None) -> str:
    """What `submit --dry-run -o yaml` prints for a kubernetes profile: every object of every run."""
    from .engines.kubernetes.render import submission_yaml

    return submission_yaml(list(manifests), backend.profile, backend.config, name=name, experiment=experiment)


def kubernetes_cluster_yaml(**settings: Any) -> str:
    """What `cluster setup` prints: the namespace's queue, quota and RBAC objects (see setup.py)."""
    from .engines.kubernetes.setup import cluster_objects, cluster_yaml

    return cluster_yaml(cluster_objects(**settings))


def kubernetes_served_kueue_api(profile: Profile) -> str:
    """The newest kueue.x-k8s.io version the profile's cluster serves (discovery), for
    `cluster setup --kueue-api auto`; BadInput when it serves none this speaks."""
    from .engines.kubernetes.client import KubeApi
    from .engines.kubernetes.kueue import served_versions

    k8s = profile.kubernetes
    api = KubeApi.from_kubeconfig(k8s.kubeconfig, k8s.context)
    try:
        served = served_versions(api)
    finally:
        api.close()
    if not served:
        raise BadInput(f"the cluster of profile {profile.name!r} serves no kueue.x-k8s.io version this "
                       "speaks (v1beta2, v1beta1): install Kueue first")
    return served[0]


def expand_sweep(manifest: Manifest) -> list[Any]:
    """One Trial per run of the manifest's sweep (one Trial when there is no sweep)."""
    from .manifest.sweep import expand

    return expand(manifest)


ENGINES = {
    "local": "backend.engines.local.engine:LocalEngine",
    "kubernetes": "backend.engines.kubernetes.engine:KubernetesEngine",
    "fake": "backend.engines.fake.engine:FakeEngine",
}
STORES = {
    "local": "backend.store.local:LocalStore",
    "s3": "backend.store.s3:S3Store",
}


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


class Backend(Record):
    config: Config
    profile: Profile
    paths: Paths
    _engine: Engine | None
    _store: ObjectStore | None
    _fields = ("config", "profile", "paths", "_engine", "_store")
    _repr_fields = ("config", "profile", "paths")

    def __init__(self, config: Config, profile: Profile, paths: Paths, _engine: Engine | None = None,
                 _store: ObjectStore | None = None) -> None:
        self.config = config
        self.profile = profile
        self.paths = paths
        self._engine = _engine
        self._store = _store

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            store = _load(STORES[self.profile.store]).from_backend(self)
            if store.kind == "local" and not self.profile.read_only:
                # First use of a local store: the samples' data is there at once (cheap once done).
                from .samples_seed import ensure_sample_data

                try:
                    ensure_sample_data(store)
                except DlaasError:
                    pass  # a store that cannot take the samples still serves everything else
            self._store = store
        return self._store

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = _load(ENGINES[self.profile.scheduler]).from_backend(self)
        return self._engine

    @property
    def read_only(self) -> bool:
        return self.profile.read_only

    def require_writable(self, what: str) -> None:
        if self.profile.read_only:
            raise ReadOnly(f"profile {self.profile.name!r} is read-only: {what} is not allowed")

    def cost_breakdown(self, run_id: str) -> CostBreakdown:
        """A run's billed intervals x devices x price, for the Cost tab (any engine)."""
        from .engine_protocol import CostBreakdowns
        from .runs import utcnow

        if isinstance(self.engine, CostBreakdowns):
            return self.engine.cost(run_id)
        from .cost import Meter

        run = self.engine.get_run(run_id)
        return Meter.from_config(self.config).bill_run(run, self.engine.events(run_id), utcnow())

    def now(self) -> datetime:
        """Now, as the engine sees it: a fake engine's driven clock keeps ages and costs in step;
        the wall clock otherwise, and before the engine is opened (this never opens it)."""
        from .engine_protocol import Clock, OwnClock
        from .runs import utcnow

        if isinstance(self._engine, OwnClock) and isinstance(self._engine.clock, Clock):
            return self._engine.clock.now()
        return utcnow()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


def open_backend(profile: str | None = None, *, read_only: bool | None = None) -> Backend:
    """The backend for a profile (`--profile`, else `DLAAS_PROFILE`, else the config's default)."""
    from .config import load_config

    paths = get_paths()
    config = load_config(paths)
    prof = config.profile(profile)
    if read_only:
        prof = prof.model_copy(update={"read_only": True})
    return Backend(config=config, profile=prof, paths=paths)


# -- a queued run's priority (`priority RUN NAME|N`, `p` in the TUI) ---------------------------------
def offers_priority(backend: Backend) -> bool:
    """Whether the profile's engine, once open, can change a queued run's priority (the local, fake and
    Kubernetes engines can). Never opens the engine: False until it is open."""
    from .engine_protocol import Priorities

    return isinstance(backend._engine, Priorities)


def priority_numbers(backend: Backend) -> bool:
    """Whether a priority may be a bare number as well as a name: not on Kubernetes, where a priority
    is a WorkloadPriorityClass and only the names from `[priorities]` exist on the cluster."""
    return backend.profile.scheduler != "kubernetes"


def priority_choices(backend: Backend) -> dict[str, int]:
    """The priorities a run may be given by name (`[priorities]` and the defaults), name -> value."""
    return backend.config.all_priorities()


def set_priority(backend: Backend, run_id: str, priority: str) -> Run:
    """Give queued run `run_id` a priority (a name from `priority_choices` or a whole number); the run
    as it is now, its new queue position included. BadInput (with the run id) where the engine cannot,
    or the run is no longer queued; ReadOnly on a read-only profile."""
    from .engine_protocol import Priorities

    backend.require_writable("priority")
    engine = backend.engine
    if not isinstance(engine, Priorities):
        raise BadInput(f"{run_id}: the {backend.profile.scheduler} engine cannot change a run's priority")
    return engine.set_priority(run_id, priority)


def submit_through_agent(backend: Backend, *, manifests: Sequence[Any], model: Any = None, name: str | None = None,
                         experiment: str | None = None, after: Sequence[str] = (), hold: bool = False,
                         begin_at: float | None = None, read_only: bool = False,
                         request_id: str | None = None) -> list[dict] | None:
    """Submit (not a dry run: that is the engine's) through the agent's submission worker
    (backend/agentlink/handoff.py), with SubmitRequest's fields: the runs' JSON documents, or the error
    the worker met, raised as the CLI would print it. None when it was not handed over (not a local
    profile, no agent or worker to take it, a test's own clock) or the worker ended before recording
    it: then submit with `backend.engine.submit(SubmitRequest(...))`, which nothing else has done.
    `request_id` (random, and the same in that SubmitRequest) is how a worker that ended without an
    answer is found to have recorded the submit or not; without one, such an end is an error.

    Imports neither pydantic nor YAML nor SQLite, nor the run types: that is what makes a submit on a
    running agent fast."""
    import os
    import sys
    from pathlib import Path

    from . import clock

    current = clock.current()
    if backend.profile.scheduler != "local" or type(current) is not clock.SystemClock:
        return None
    try:
        cwd = os.getcwd()
    except OSError:
        return None
    umask = os.umask(0o077)  # read it (there is no other way), and put it back at once
    os.umask(umask)
    from .agentlink.handoff import hand_off

    return hand_off(backend.paths.state_dir, {
        "home": str(backend.paths.state_dir), "code": str(Path(__file__).resolve().parent),
        "python": sys.executable, "env": dict(os.environ), "cwd": cwd, "umask": umask, "clock_shift": current.shift_s,
        "profile": backend.profile.name, "read_only": read_only, "manifests": [str(p) for p in manifests],
        "model": str(model) if model is not None else None, "name": name, "experiment": experiment,
        "after": list(after), "hold": hold, "begin_at": begin_at, "request_id": request_id,
    }, recorded=lambda rid: [r.to_json() for r in backend.engine.recorded_submit(rid)])


# -- the agent (one per DLAAS_HOME; imported lazily so `--help` stays light) ----------------------
def agent_start(paths: Paths | None = None) -> int:
    """Start the agent unless one runs; returns its pid."""
    from .agentlink.control import ensure_agent

    return ensure_agent(paths or get_paths())


def agent_stop(paths: Paths | None = None) -> int | None:
    """Stop the agent (its runs go on and are adopted by the next one); returns the pid stopped."""
    from .agentlink.control import stop_agent

    return stop_agent(paths or get_paths())


def agent_status(paths: Paths | None = None) -> int | None:
    """The running agent's pid, or None."""
    from .agentlink.control import agent_pid

    pid = agent_pid((paths or get_paths()).state_dir)
    return pid if pid and pid > 0 else None


def explain_failure(exc: BaseException) -> DlaasError | None:
    """An unexpected exception that still means something a user can act on, as a DlaasError
    (a state database found damaged, or locked past the busy timeout); None for a real bug."""
    import sys

    if "sqlite3" not in sys.modules:  # nothing has opened a database: not that
        return None
    from .ledger import db

    if db.damaged(exc):
        return db.damaged_error(get_paths().db_file, exc)
    if db.busy(exc):
        return db.busy_error(get_paths().db_file, exc)
    return None
