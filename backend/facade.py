"""The one door the UI and CLI use into the backend.

`open_backend()` reads the config, picks the profile, and builds the engine (scheduler) and the object
store it names, lazily: asking for `--help`, validating a manifest or listing local buckets never
imports boto3, kubernetes or pynvml. Everything the presentation layer needs is re-exported here, so
`dlaas_tui` imports `backend.facade` and nothing else from the backend.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import Config, Profile, Secret, load_config  # noqa: F401
from .errors import (  # noqa: F401
    BadInput,
    ConfigError,
    DlaasError,
    EngineError,
    NotFound,
    ReadOnly,
    StoreError,
)
from .paths import Paths, get_paths, resource_dir  # noqa: F401
from .runs import (  # noqa: F401
    ACTIVE_STATES,
    TERMINAL_STATES,
    ChangeSet,
    Device,
    Engine,
    ErrorCode,
    Inventory,
    MetricPoint,
    Run,
    RunEvent,
    RunState,
    SubmitRequest,
    iso,
    utcnow,
)
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
    import importlib

    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass
class Backend:
    config: Config
    profile: Profile
    paths: Paths
    _engine: Engine | None = field(default=None, repr=False)
    _store: ObjectStore | None = field(default=None, repr=False)

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = _load(STORES[self.profile.store]).from_backend(self)
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

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


def open_backend(profile: str | None = None, *, read_only: bool | None = None) -> Backend:
    """The backend for a profile (`--profile`, else `DLAAS_PROFILE`, else the config's default)."""
    paths = get_paths()
    config = load_config(paths)
    prof = config.profile(profile)
    if read_only:
        prof = prof.model_copy(update={"read_only": True})
    return Backend(config=config, profile=prof, paths=paths)


# -- Manifest validation, sweep expansion and prices for the UI, imported on first use ---------------
def parse_manifest(text: str, source: str = "<manifest>") -> Any:
    """Parse and validate manifest text: a result with `errors`, `warnings` (line, col, message)."""
    from .manifest import parse_manifest as parse

    return parse(text, source)


def expand_sweep(manifest: Any) -> list[Any]:
    """The runs a manifest's sweep expands to (one entry per run)."""
    from .manifest.sweep import expand

    return list(expand(manifest))


def price_per_gpu_hour(config: Config, gpu_type: str | None) -> float | None:
    """USD per GPU-hour for a GPU type under this config; None = unpriced."""
    from .cost import PriceTable

    return PriceTable.from_config(config).per_hour(gpu_type)


def estimate_cost(
    runs: int, devices_per_run: int, rate_usd_per_hour: float | None, max_duration_s: float | None
) -> Any:
    """runs × devices × price × duration as a CostEstimate (backend.experiments' rule)."""
    from .experiments import estimate_cost as estimate

    return estimate(runs, devices_per_run, rate_usd_per_hour, max_duration_s)
