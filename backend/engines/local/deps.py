"""The local engine's narrow view of its neighbours: manifests, sweeps, metrics, cost, devices, stores.

Each function calls the project's module for that concern (backend.manifest, backend.metrics,
backend.cost, backend.engines.local.nvml / gpulock, the profile's store) and adapts its result to
the few plain shapes the agent keeps in SQLite (epoch seconds, micro-dollar ints).
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ...errors import BadInput
from ...runs import Device, ErrorCode

# --------------------------------------------------------------------------------------------
# Manifests and sweeps


def load_manifest(path: Path):
    """Parse and validate a manifest; problems raise BadInput (C101) with FILE:LINE:COL."""
    from ...manifest import ManifestError
    from ...manifest import load_manifest as real_load

    try:
        return real_load(path)
    except ManifestError as exc:
        if isinstance(exc, BadInput):
            raise
        raise BadInput(str(exc), code=ErrorCode.BAD_MANIFEST.value) from None


def expand_sweep(manifest) -> list:
    """One Trial per run (params, the manifest with `${NAME}` substituted and HP_ env, config.json)."""
    from ...manifest.sweep import expand

    return expand(manifest)


# --------------------------------------------------------------------------------------------
# Metrics


@dataclass
class Parsed:
    values: dict[str, float]
    step: float | None
    at: float | None


def _epoch(at) -> float | None:
    return at.timestamp() if isinstance(at, datetime) else at


def parse_metrics_line(line: str) -> Parsed | None:
    from ...metrics import parse_metrics_line as real

    got = real(line)
    return None if got is None else Parsed(dict(got.values), got.step, _epoch(got.at))


def parse_metrics_json(line: str) -> Parsed | None:
    """One line of $RESULT_DIR/metrics.jsonl."""
    from ...metrics import read_metrics_jsonl

    got = read_metrics_jsonl([line])
    if not got:
        return None
    return Parsed(dict(got[0].values), got[0].step, _epoch(got[0].at))


def primary_metric(seen: list[str], sweep_metric: str | None) -> str | None:
    from ...metrics import primary_metric as real

    return real(seen, sweep_metric)


# --------------------------------------------------------------------------------------------
# Cost


def canonical_gpu_type(name: str | None) -> str | None:
    from ...cost import canonical_gpu_type as real

    return real(name) if name else None


# --------------------------------------------------------------------------------------------
# Devices and host-wide GPU locks


def read_inventory(cpu_slots: int, *, holders: dict[str, str] | None = None, our_pids=frozenset(),
                   tier_gpus: int = 0):
    """NVML's devices (or cpu:N stand-ins), marking GPUs used by processes we did not start."""
    from .nvml import read_inventory as real

    return real(cpu_slots=cpu_slots, our_pids=our_pids, holders=holders or {},
                node=socket.gethostname(), tier_gpus=tier_gpus)


def discover_devices(cpu_slots: int) -> tuple[list[Device], bool, str]:
    inv = read_inventory(cpu_slots)
    return list(inv.devices), inv.nvml_available, inv.message


def try_lock_device(uuid: str, state_dir: Path, owner: str = ""):
    """A held GpuLock on the device (its fd inheritable, so the run's processes keep it if the
    agent dies), or None when anyone holds it. GPUs lock host-wide; cpu slots stand for this
    user's own CPU share, so they lock in the state dir and two users never block each other."""
    from .gpulock import try_acquire

    folder = state_dir / "slot-locks" if uuid.startswith("cpu:") else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    lock = try_acquire(uuid, owner=owner, folder=folder)
    if lock is not None and lock.fd is not None:
        os.set_inheritable(lock.fd, True)
    return lock


def lock_holder(uuid: str) -> dict | None:
    """Who holds a device's host-wide lock (pid, user, run), or None."""
    from .gpulock import held_by

    return held_by(uuid)


def pids_in_groups(pgids: set[int]) -> set[int]:
    """Every live pid whose process group is one of `pgids` (our runs' processes and children)."""
    out: set[int] = set()
    if not pgids:
        return out
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if int(fields[2]) in pgids:
            out.add(int(entry.name))
    return out


# --------------------------------------------------------------------------------------------
# Object store


def open_store(backend, connection: dict | None = None):
    """The profile's store, or (FfDL's way) the S3 endpoint and keys a manifest's `connection` names."""
    if not connection:
        return backend.store
    from ...config import S3Settings
    from ...store.s3 import S3Store

    settings = S3Settings(
        endpoint_url=connection.get("auth_url") or backend.profile.s3.endpoint_url,
        region=connection.get("region") or backend.profile.s3.region,
        access_key_id=connection.get("user_name"), secret_access_key=connection.get("password"),
    )
    return S3Store(settings, profile_name=f"{backend.profile.name} (manifest connection)")


def connection_of(manifest) -> dict | None:
    """A manifest's `connection` as plain data for the run's spec (kept in the 0600 state db)."""
    conn = manifest.data_store.connection
    if conn is None:
        return None
    reveal = lambda v: v.reveal() if hasattr(v, "reveal") else v  # noqa: E731
    return {"auth_url": conn.auth_url, "user_name": reveal(conn.user_name),
            "password": reveal(conn.password), "region": conn.region}


def local_path(store, bucket: str, prefix: str = "") -> Path | None:
    """The folder behind bucket/prefix on a folder store (None on a remote store)."""
    fn = getattr(store, "local_path", None)
    if fn is None:
        return None
    return Path(fn(bucket, prefix))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
