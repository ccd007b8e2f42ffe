"""The manifest as typed data (FfDL's dialect plus our extensions), modelled with pydantic v2.

Resources are per learner: a run holds `gpus * learners` devices.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..config import Secret


class _Model(BaseModel):
    # Unknown keys are reported as warnings by the parser (with a close match), then dropped.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Connection(_Model):
    auth_url: str | None = None
    user_name: Secret | None = None
    password: Secret | None = None
    region: str | None = None


class BucketRef(_Model):
    container: str
    prefix: str | None = None


class DataStore(_Model):
    id: str = "data_store"
    type: Literal["s3_datastore", "mount_cos", "local"] = "local"
    training_data: BucketRef
    training_results: BucketRef
    connection: Connection | None = None


class Framework(_Model):
    name: str
    version: str | None = None
    command: str


class SweepParameter(_Model):
    values: list[Any] | None = None
    min: float | None = None
    max: float | None = None
    distribution: Literal["uniform", "log_uniform", "int_uniform"] | None = None


class SweepMetric(_Model):
    name: str
    goal: Literal["minimize", "maximize"] = "minimize"


class EarlyStop(_Model):
    type: Literal["median"] = "median"
    min_runs: int = Field(default=3, ge=1)
    start_step: float = Field(default=0, ge=0)


class Sweep(_Model):
    method: Literal["grid", "random"] = "grid"
    parameters: dict[str, SweepParameter]
    metric: SweepMetric | None = None
    max_runs: int | None = Field(default=None, ge=1)
    parallel: int | None = Field(default=None, ge=1)
    max_failed: int | None = Field(default=None, ge=1)
    early_stop: EarlyStop | None = None
    seed: int | None = None


class Manifest(_Model):
    name: str
    description: str | None = None
    version: str | None = None
    gpus: int = Field(default=0, ge=0)
    gpu_type: str | None = None
    cpus: float = Field(default=1, gt=0)
    memory: str = "4GiB"
    memory_bytes: int = 4 * 1024**3  # derived from `memory` by the parser
    learners: int = Field(default=1, ge=1)
    data_stores: list[DataStore]
    framework: Framework
    env: dict[str, str | dict[str, str]] = {}
    evaluation_metrics: dict[str, Any] | None = None
    max_duration: str | None = None
    max_duration_seconds: int | None = None  # derived from `max_duration` by the parser
    priority: str = "normal"
    sweep: Sweep | None = None

    @property
    def data_store(self) -> DataStore:
        return self.data_stores[0]

    @property
    def total_gpus(self) -> int:
        return self.gpus * self.learners
