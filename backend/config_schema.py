"""The config's rules as pydantic models: the one place its error messages come from.

backend/config.py reads a valid config without pydantic (every command and the agent read it; pydantic
costs ~0.15 s and ~12 MB to import). When that fast reader meets anything it does not accept at once,
it hands the data to these models, so a bad config is reported exactly as pydantic words it, and an
input pydantic would coerce (e.g. "3" for an int) is coerced exactly as pydantic does. The field lists
here and there are kept in step by tests/unit/test_config_lean.py.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .config_types import Secret, did_you_mean, implied_by_tables


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Strict):
    daily_usd: float | None = Field(default=None, ge=0)
    monthly_usd: float | None = Field(default=None, ge=0)


class S3Settings(_Strict):
    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: Literal["path", "virtual", "auto"] | None = None
    aws_profile: str | None = None
    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    verify_tls: bool = True
    max_attempts: int = Field(default=5, ge=1, le=20)
    connect_timeout: float = Field(default=10, gt=0)
    read_timeout: float = Field(default=60, gt=0)
    multipart_threshold_mb: int = Field(default=16, ge=5)
    multipart_chunksize_mb: int = Field(default=8, ge=5)
    max_concurrency: int = Field(default=32, ge=1, le=256)  # measured: 32 beat 16 on uploads

    @field_validator("access_key_id", "secret_access_key", mode="before")
    @classmethod
    def _wrap_secret(cls, v: Any) -> Any:
        return Secret(v) if isinstance(v, str) else v


class KubernetesSettings(_Strict):
    context: str | None = None
    kubeconfig: str | None = None
    namespace: str = "default"
    queue: str = "default"
    s3_secret: str | None = None
    uploader_image: str = "rclone/rclone:1.68"
    gpu_product_label: str = "nvidia.com/gpu.product"
    ttl_seconds_after_finished: int = Field(default=3600, ge=0)
    termination_grace_seconds: int = Field(default=120, ge=1)
    startup_allowance_seconds: int = Field(default=900, ge=0)
    # how long a start-up error (ErrImagePull, CreateContainerConfigError, pods refused) may last
    # before the run fails with S302 and its Job is deleted, giving its quota back
    start_failure_seconds: int = Field(default=300, ge=0)
    # /work (data, model, results) is sized as the data + model + this; requested as ephemeral-storage
    work_headroom_gib: int = Field(default=20, ge=1)
    # false: no ephemeral-storage request (for a ClusterQueue that does not cover it); the sizeLimit stays
    request_work_storage: bool = True
    service_account: str | None = None


class Profile(_Strict):
    name: str = "local"
    scheduler: Literal["local", "kubernetes", "fake"] = "local"
    store: Literal["local", "s3"] = "local"
    tier: str = "unlimited"
    cpu_slots: int = Field(default=1, ge=1, le=256)
    cpus: int | None = Field(default=None, ge=1, le=4096)  # cores runs may hold (default: all the agent may use)
    memory: str | None = None  # memory runs may hold, e.g. "16GiB" (default: the machine's MemTotal)
    read_only: bool = False
    queue_policy: Literal["fifo", "best-effort"] = "fifo"
    max_model_mb: int = Field(default=500, ge=1)
    max_model_unpacked_mb: int | None = Field(default=None, ge=1)  # None: max_model_mb
    budget: Budget = Budget()
    s3: S3Settings = S3Settings()
    kubernetes: KubernetesSettings = KubernetesSettings()

    @model_validator(mode="before")
    @classmethod
    def _implied_by_tables(cls, data: Any) -> Any:
        return implied_by_tables(data) if isinstance(data, dict) else data

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None:
            from .units import parse_memory

            parse_memory(value)
        return value


class FrameworkVersion(_Strict):
    python: str | None = None
    image: str | None = None  # on a cluster: overrides the built-in image (kubernetes/images.py)
    cpu_image: str | None = None  # for runs with `gpus: 0`; without it `image` serves both


class Billing(_Strict):
    minimum_seconds: int = Field(default=60, ge=0)


class Cache(_Strict):
    max_gb: float = Field(default=20, gt=0)


class NotifySettings(_Strict):
    """Word when a run or a whole sweep (experiment) ends: sent by the agent, so it works with the
    TUI closed. `command` runs without a shell, the run's details in DLAAS_* environment variables;
    `webhook` receives a JSON POST. Both are bounded by `timeout_seconds`; failures are logged."""

    command: str | list[str] | None = None
    webhook: str | None = None
    timeout_seconds: float = Field(default=10, gt=0, le=120)
    runs: bool = True  # every run that ends
    sweeps: bool = True  # every experiment whose last active run ends
    terminal: Literal["auto", "osc9", "osc777", "bell", "off"] = "auto"  # the TUI's signal beside its toast

    @field_validator("webhook")
    @classmethod
    def _http_only(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @field_validator("command")
    @classmethod
    def _non_empty(cls, v: str | list[str] | None) -> str | list[str] | None:
        if v is not None and not (v.strip() if isinstance(v, str) else v):
            raise ValueError("must name a program")
        if isinstance(v, str):
            import shlex

            try:
                shlex.split(v)
            except ValueError as exc:
                raise ValueError(f"cannot be split into arguments: {exc}") from None
        return v


class Config(_Strict):
    default_profile: str = "local"
    profiles: dict[str, Profile] = {}
    tiers: dict[str, int] = {}
    prices: dict[str, float] = {}
    priorities: dict[str, int] = {}
    frameworks: dict[str, dict[str, FrameworkVersion]] = {}
    secrets: dict[str, Secret] = {}
    keys: dict[str, str] = {}
    billing: Billing = Billing()
    cache: Cache = Cache()
    notify: NotifySettings = NotifySettings()
    source: str | None = Field(default=None, exclude=True)

    @field_validator("secrets", mode="before")
    @classmethod
    def _wrap_secrets(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: Secret(s) if isinstance(s, str) else s for k, s in v.items()}
        return v

    @field_validator("tiers")
    @classmethod
    def _tiers_nonnegative(cls, v: dict[str, int]) -> dict[str, int]:
        for name, gpus in v.items():
            if gpus < 0:
                raise ValueError(f"tier {name!r} must allow 0 (= whole inventory) or more GPUs")
        return v


def _table_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    return "[" + ".".join(parts) + "]" if parts else "the top level"


def _model_for(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the table at `loc`, to list its known keys."""
    model: Any = Config
    i = 0
    while i < len(loc):
        field = model.model_fields.get(str(loc[i]))
        if field is None:
            return None
        ann = field.annotation
        if ann in (Profile, Budget, S3Settings, KubernetesSettings, Billing, Cache, NotifySettings):
            model = ann
            i += 1
        elif str(loc[i]) == "profiles":
            model = Profile
            i += 2
        elif str(loc[i]) == "frameworks":
            model = FrameworkVersion
            i += 3
        else:
            return None
    return model


def format_errors(source: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        if e["type"] == "extra_forbidden":
            key, table = loc[-1], loc[:-1]
            owner = _model_for(table)
            known = list(owner.model_fields) if owner else []
            known = [k for k in known if k != "source"]
            lines.append(
                f"{source}: unknown key {key!r} in {_table_name(table)}{did_you_mean(str(key), known)}"
            )
        else:
            key, table = (loc[-1], loc[:-1]) if loc else ("", ())
            msg = e["msg"]
            got = e.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{source}: {_table_name(table)} {key}: {msg}{got_s}")
    return "\n".join(lines)
