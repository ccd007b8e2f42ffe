"""The manifest as typed data (FfDL's dialect plus our extensions), modelled with pydantic v2.

Resources are per learner: a run holds `gpus * learners` devices. Models are strict (no `"2"` for
2, no `true` for 1) because FfDL's silent coercions hid mistakes until a run had already failed.
Cross-field rules raise `Located` so the parser can point at the exact key that is wrong.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ..config import MASK, Secret
from .units import memory_to_kubernetes, parse_duration, parse_memory

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_CONTAINER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_SECRET_NAME_RE = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL", re.I)


def looks_secret(name: str) -> bool:
    return bool(_SECRET_NAME_RE.search(name))


# Set for every run by the engine; a manifest `env` entry of the same name would be overwritten.
SYSTEM_ENV = frozenset(
    "DATA_DIR RESULT_DIR MODEL_DIR LOG_DIR JOB_STATE_DIR CHECKPOINT_DIR TRAINING_ID LEARNER_ID "
    "NUM_LEARNERS GPU_COUNT CUDA_VISIBLE_DEVICES MASTER_ADDR MASTER_PORT WORLD_SIZE RANK".split()
)


class Located(ValueError):
    """Errors found by a cross-field rule, each relative to the model that raised them."""

    def __init__(self, *items: tuple[tuple[str | int, ...], str]) -> None:
        super().__init__("; ".join(message for _, message in items))
        self.items = list(items)


def _as_text(value: Any) -> Any:
    # YAML reads `version: 1.0` as a float; the parser restores the source text where it can.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_as_text)]

_RUN_REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


def _run_ref(value: str) -> str:
    if not _RUN_REF_RE.match(value):
        raise ValueError(f"{value!r} is not a run id (letters, digits, '.', '_', '-')")
    return value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


RunRef = Annotated[str, AfterValidator(_run_ref)]


def _env_name(name: str) -> str:
    if not ENV_NAME_RE.match(name):
        raise ValueError(f"{name!r} is not an environment variable name (letters, digits, '_')")
    return name


def _param_name(name: str) -> str:
    if not PARAM_NAME_RE.match(name):
        raise ValueError(f"parameter name {name!r} must start with a letter or '_' and hold only "
                         "letters, digits, '_', '.' or '-'")
    return name


# Checked as dict keys so that every bad name is reported next to every bad value.
EnvName = Annotated[str, AfterValidator(_env_name)]
ParamName = Annotated[str, AfterValidator(_param_name)]
Scalar = str | bool | int | float


def _non_empty(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    return value


class _Model(BaseModel):
    # Unknown keys are reported as warnings by the parser (with a close match), then dropped.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)


class Connection(_Model):
    auth_url: str | None = None
    user_name: Secret | None = None
    password: Secret | None = None
    region: str | None = None


class BucketRef(_Model):
    container: str
    prefix: str | None = None

    @field_validator("container")
    @classmethod
    def _container(cls, value: str) -> str:
        # Legacy names (FfDL's `tf_training_data`) are fine here; only new buckets follow S3's rules.
        if not _CONTAINER_RE.match(value):
            raise ValueError(
                f"{value!r} is not a bucket name (letters, digits, '.', '_' and '-', at most 255)"
            )
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("/") or "\x00" in value or ".." in value.split("/"):
            raise ValueError(f"prefix {value!r} must be relative, without '..' segments")
        return value


class DataStore(_Model):
    id: Text = "data_store"
    type: Literal["s3_datastore", "mount_cos", "local"] = "local"
    training_data: BucketRef
    training_results: BucketRef
    connection: Connection | None = None

    @property
    def is_s3(self) -> bool:
        return self.type in ("s3_datastore", "mount_cos")


class Framework(_Model):
    name: str
    version: Text | None = None
    command: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _non_empty(value, "framework name")

    @field_validator("command")
    @classmethod
    def _command(cls, value: str) -> str:
        return _non_empty(value, "command")


class SecretRef(_Model):
    secret: str


class SweepParameter(_Model):
    values: list[Scalar] | None = None
    min: int | float | None = None
    max: int | float | None = None
    distribution: Literal["uniform", "log_uniform", "int_uniform"] | None = None

    @model_validator(mode="after")
    def _shape(self) -> SweepParameter:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        ranged = self.min is not None or self.max is not None
        if self.values is not None:
            if ranged or self.distribution is not None:
                key = "min" if self.min is not None else "max" if self.max is not None else "distribution"
                problems.append(((key,), "give either `values` or `min`/`max`/`distribution`, not both"))
            if not self.values:
                problems.append((("values",), "values must list at least one value"))
        elif not ranged:
            problems.append(((), "needs `values: [...]` or `min` and `max`"))
        elif self.min is None or self.max is None:
            problems.append(((), "needs both `min` and `max`"))
        else:
            if self.min > self.max:
                problems.append((("min",), f"min ({self.min}) is greater than max ({self.max})"))
            if self.distribution == "log_uniform" and self.min <= 0:
                problems.append((("min",), f"log_uniform needs min > 0, got {self.min}"))
            if self.distribution == "int_uniform":
                for key in ("min", "max"):
                    v = getattr(self, key)
                    if isinstance(v, float) and not v.is_integer():
                        problems.append(((key,), f"int_uniform needs whole numbers, got {v}"))
        if problems:
            raise Located(*problems)
        return self

    @property
    def effective_distribution(self) -> str:
        return self.distribution or "uniform"


class SweepMetric(_Model):
    name: str
    goal: Literal["minimize", "maximize"] = "minimize"


class EarlyStop(_Model):
    type: Literal["median"] = "median"
    min_runs: int = Field(default=3, ge=1)
    start_step: int | float = Field(default=0, ge=0)


class Sweep(_Model):
    method: Literal["grid", "random"] = "grid"
    parameters: dict[ParamName, SweepParameter]
    metric: SweepMetric | None = None
    max_runs: int | None = Field(default=None, ge=1)
    parallel: int | None = Field(default=None, ge=1)
    max_failed: int | None = Field(default=None, ge=1)
    early_stop: EarlyStop | None = None
    seed: int | None = None

    @field_validator("parameters")
    @classmethod
    def _some(cls, value: dict[str, SweepParameter]) -> dict[str, SweepParameter]:
        if not value:
            raise ValueError("a sweep needs at least one parameter")
        return value

    @model_validator(mode="after")
    def _rules(self) -> Sweep:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.method == "random" and self.max_runs is None:
            problems.append((("method",), "a random sweep needs max_runs (how many draws)"))
        if self.method == "grid":
            for name, param in self.parameters.items():
                if param.values is None and param.effective_distribution != "int_uniform":
                    problems.append(
                        (("parameters", name), "a grid sweep needs `values` (or int_uniform min/max)")
                    )
        if self.early_stop is not None and self.metric is None:
            problems.append((("early_stop",), "early_stop needs sweep.metric (what to compare)"))
        if problems:
            raise Located(*problems)
        return self

    def grid_size(self) -> int:
        size = 1
        for param in self.parameters.values():
            if param.values is not None:
                size *= len(param.values)
            else:
                size *= int(param.max) - int(param.min) + 1  # type: ignore[arg-type]
        return size

    def run_count(self) -> int:
        if self.method == "random":
            return self.max_runs or 0
        size = self.grid_size()
        return min(size, self.max_runs) if self.max_runs else size


class Manifest(_Model):
    name: str
    description: str | None = None
    version: Text | None = None
    gpus: int = Field(default=0, ge=0)
    gpu_type: str | None = None
    cpus: int | float = Field(default=1, gt=0)
    memory: Text = "4GiB"
    learners: int = Field(default=1, ge=1)
    data_stores: list[DataStore]
    framework: Framework
    env: dict[EnvName, Text | SecretRef] = {}
    evaluation_metrics: dict[str, Any] | None = None
    max_duration: Text | None = None
    priority: str = "normal"
    sweep: Sweep | None = None
    # Runs that must complete before this one starts (run ids); if one fails or is halted, this one
    # ends FAILED (C206) without starting.
    depends_on: Annotated[list[RunRef], BeforeValidator(_one_or_many)] = []
    max_retries: int = Field(default=0, ge=0, le=100)  # a failed run is started again up to N times
    # GPU sharing (local engine): the most GPU memory each learner may use on its GPU, and whether
    # runs may share a GPU while their caps fit. A run over its cap is stopped (C207).
    gpu_memory: Text | None = None
    share: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _non_empty(value, "name")

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        parse_memory(value)
        return value

    @field_validator("gpu_memory")
    @classmethod
    def _gpu_memory(cls, value: str | None) -> str | None:
        if value is not None:
            parse_memory(value)
        return value

    @model_validator(mode="after")
    def _sharing(self) -> Manifest:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.gpu_memory is not None and self.gpus < 1:
            problems.append((("gpu_memory",), "needs gpus: 1 or more (it caps the memory a learner may use on its GPU)"))
        if self.share and self.gpu_memory is None:
            problems.append((("share",), "sharing a GPU needs gpu_memory (the cap that says how much of "
                                         "the GPU the run may use)"))
        if problems:
            raise Located(*problems)
        return self

    @field_validator("max_duration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("data_stores")
    @classmethod
    def _one_store(cls, value: list[DataStore]) -> list[DataStore]:
        if len(value) != 1:
            raise ValueError(f"exactly one data store is required, found {len(value)}")
        return value

    @field_validator("priority")
    @classmethod
    def _priority(cls, value: str) -> str:
        return _non_empty(value, "priority")

    # Derived values; properties (not fields) so a copy with a new `memory` can never go stale.
    @property
    def memory_bytes(self) -> int:
        return parse_memory(self.memory)

    @property
    def gpu_memory_bytes(self) -> int | None:
        return parse_memory(self.gpu_memory) if self.gpu_memory is not None else None

    @property
    def memory_kubernetes(self) -> str:
        return memory_to_kubernetes(self.memory)

    @property
    def max_duration_seconds(self) -> int | None:
        return parse_duration(self.max_duration) if self.max_duration is not None else None

    @property
    def data_store(self) -> DataStore:
        return self.data_stores[0]

    @property
    def total_gpus(self) -> int:
        return self.gpus * self.learners

    def env_values(self, secrets: dict[str, str] | None = None) -> dict[str, str]:
        """`env` with secret references resolved from the config's [secrets]."""
        from ..errors import BadInput

        out: dict[str, str] = {}
        for name, value in self.env.items():
            if isinstance(value, SecretRef):
                if not secrets or value.secret not in secrets:
                    raise BadInput(f"env {name}: no secret {value.secret!r} in the config's [secrets]")
                secret = secrets[value.secret]
                out[name] = secret.reveal() if isinstance(secret, Secret) else str(secret)
            else:
                out[name] = value
        return out

    def masked_dict(self) -> dict[str, Any]:
        """The manifest as plain data with every secret shown as `****` (what any output shows):
        connection keys, and plain env values whose names say they are secrets."""
        data = self.model_dump(mode="json", exclude_none=True)
        for name, value in data.get("env", {}).items():
            if isinstance(value, str) and looks_secret(name):
                data["env"][name] = MASK
        return data

