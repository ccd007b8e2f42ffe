"""The local engine's narrow view of its neighbours: manifests, sweeps, metrics, cost, devices, stores.

Each function here calls the project's module for that concern (backend.manifest, backend.metrics,
backend.cost, backend.engines.local.nvml / gpulock, backend.store.local) and adapts its result to
the few shapes the engine uses. Where such a module is not importable in this build, a small local
rule of the same behaviour is used instead, so the engine keeps one code path either way.
"""
from __future__ import annotations

import fcntl
import itertools
import json
import math
import os
import re
import shutil
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ...errors import BadInput, NotFound, StoreError
from ...runs import Device, ErrorCode, RunState

# --------------------------------------------------------------------------------------------
# Manifests and sweeps


def load_manifest(path: Path):
    """Parse and validate a manifest; problems raise BadInput (C101) with FILE:LINE:COL."""
    try:
        from ...manifest import load_manifest as real_load  # type: ignore[attr-defined]
    except ImportError:
        return _fallback_load(path)
    try:
        return real_load(path)
    except BadInput:
        raise
    except Exception as exc:  # ManifestError (a DlaasError subclass there); keep its text
        if exc.__class__.__name__ == "ManifestError":
            raise BadInput(str(exc), code=ErrorCode.BAD_MANIFEST.value) from None
        raise


_UNITS = {"MB": 10**6, "GB": 10**9, "TB": 10**12, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
          "Mb": 10**6, "Gb": 10**9}


def _fallback_load(path: Path):
    import yaml
    from pydantic import ValidationError

    from ...manifest.model import Manifest

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise BadInput(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise BadInput(f"{where}: {getattr(exc, 'problem', exc)}", code="C101") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}:1:1: a manifest is a mapping", code="C101")
    try:
        m = Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise BadInput(f"{path}:1:1: {loc}: {first['msg']}", code="C101") from None
    mem = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]+)\s*", m.memory)
    if not mem or mem.group(2) not in _UNITS:
        raise BadInput(f"{path}:1:1: memory {m.memory!r}: unknown unit", code="C101")
    updates: dict[str, Any] = {"memory_bytes": int(float(mem.group(1)) * _UNITS[mem.group(2)])}
    if m.max_duration:
        dur = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", m.max_duration)
        if not dur:
            raise BadInput(f"{path}:1:1: max_duration {m.max_duration!r}: use e.g. 90m or 2h", code="C101")
        mult = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[dur.group(2)]
        updates["max_duration_seconds"] = int(dur.group(1)) * mult
    return m.model_copy(update=updates)


def expand_sweep(manifest) -> list[dict[str, Any]]:
    """The parameters of each trial of a manifest's sweep; [{}] for a manifest without one."""
    if manifest.sweep is None:
        return [{}]
    try:
        from ...manifest.sweep import expand  # type: ignore[import-not-found]
    except ImportError:
        return _fallback_grid(manifest)
    out = []
    for trial in expand(manifest):
        if isinstance(trial, dict):
            out.append(dict(trial.get("params", trial)))
        else:
            out.append(dict(getattr(trial, "params", {}) or {}))
    return out


def _fallback_grid(manifest) -> list[dict[str, Any]]:
    import random

    sweep = manifest.sweep
    names = list(sweep.parameters)
    rng = random.Random(sweep.seed)
    if sweep.method == "grid" and all(p.values for p in sweep.parameters.values()):
        combos = [dict(zip(names, vals)) for vals in
                  itertools.product(*(sweep.parameters[n].values for n in names))]
    else:
        combos = []
        for _ in range(sweep.max_runs or 10):
            trial = {}
            for n, p in sweep.parameters.items():
                if p.values:
                    trial[n] = rng.choice(p.values)
                elif p.distribution == "log_uniform":
                    trial[n] = math.exp(rng.uniform(math.log(p.min), math.log(p.max)))
                elif p.distribution == "int_uniform":
                    trial[n] = rng.randint(int(p.min), int(p.max))
                else:
                    trial[n] = rng.uniform(p.min, p.max)
            combos.append(trial)
    return combos[: sweep.max_runs] if sweep.max_runs else combos


# --------------------------------------------------------------------------------------------
# Metrics

_TOKEN = re.compile(
    r"([A-Za-z_][\w./-]*)\s*=\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?nan|[+-]?inf)(?![\w.])"
)
_TS = re.compile(r"^\s*\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\]?")
X_AXIS = ("step", "epoch", "iteration")


@dataclass
class Parsed:
    values: dict[str, float]
    step: float | None
    at: float | None


def parse_metrics_line(line: str) -> Parsed | None:
    try:
        from ...metrics import parse_metrics_line as real  # type: ignore[import-not-found]
    except ImportError:
        real = None
    if real is not None:
        got = real(line)
        if got is None:
            return None
        at = getattr(got, "at", None)
        if isinstance(at, datetime):
            at = at.timestamp()
        return Parsed(dict(got.values), getattr(got, "step", None), at)
    values = {m.group(1): float(m.group(2)) for m in _TOKEN.finditer(line)}
    if not values:
        return None
    step = next((values.pop(k) for k in X_AXIS if k in values), None)
    for k in X_AXIS:
        values.pop(k, None)
    if not values:
        return None
    at = None
    ts = _TS.match(line)
    if ts:
        try:
            at = datetime.fromisoformat(ts.group(1).replace("Z", "+00:00")).timestamp()
        except ValueError:
            at = None
    return Parsed(values, step, at)


def parse_metrics_json(line: str) -> Parsed | None:
    """One line of $RESULT_DIR/metrics.jsonl: {"step": 3, "loss": 0.2, ...}."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    values: dict[str, float] = {}
    step = None
    at = None
    for k, v in obj.items():
        if k in X_AXIS and isinstance(v, int | float):
            step = step if step is not None else float(v)
        elif k in ("at", "time", "timestamp") and isinstance(v, int | float):
            at = float(v)
        elif isinstance(v, int | float) and not isinstance(v, bool):
            values[str(k)] = float(v)
    return Parsed(values, step, at) if values else None


def primary_metric(seen: list[str], sweep_metric: str | None) -> str | None:
    if sweep_metric and sweep_metric in seen:
        return sweep_metric
    if "loss" in seen:
        return "loss"
    return seen[0] if seen else sweep_metric


# --------------------------------------------------------------------------------------------
# Cost

_ALIASES = {"TESLAK80": "K80", "TESLAV100": "V100", "TESLAT4": "T4"}
_CANON = ("K40", "K80", "P100", "V100", "T4", "A10", "A100", "L4", "L40S", "H100", "H200", "B200")
DEFAULT_PRICES = {"K80": 0.90, "T4": 0.53, "V100": 3.06, "A100": 4.10, "H100": 6.88, "cpu": 0.05}


def canonical_gpu_type(name: str | None) -> str | None:
    if not name:
        return None
    try:
        from ...cost import canonical_gpu_type as real  # type: ignore[import-not-found]
    except ImportError:
        real = None
    if real is not None:
        return real(name)
    if name.lower().startswith("cpu"):
        return "cpu"
    flat = re.sub(r"[^A-Z0-9]", "", name.upper())
    for alias, canon in _ALIASES.items():
        if alias in flat:
            return canon
    for canon in sorted(_CANON, key=len, reverse=True):
        if re.search(rf"(?<![A-Z0-9]){canon}(?![0-9])", re.sub(r"[^A-Z0-9]", " ", name.upper())):
            return canon
    return None


def run_cost_micro(events: list[tuple[float, str | None]], units: int, gpu_type: str | None,
                   config, now: float) -> int | None:
    """Integer micro-dollars for `units` devices of `gpu_type` over the billed intervals; None = unpriced.

    `events` are (epoch seconds, state) in ledger order.
    """
    try:
        from ... import cost as real  # type: ignore[attr-defined]
    except ImportError:
        real = None
    if real is not None and hasattr(real, "run_cost"):
        return _real_cost(real, events, units, gpu_type, config, now)
    prices = {**DEFAULT_PRICES, **config.prices}
    price = prices.get(gpu_type or "", prices.get("default"))
    seconds = 0.0
    since = None
    for at, state in events:
        if state is None:
            continue
        billed = RunState(state).billed
        if billed and since is None:
            since = at
        elif not billed and since is not None:
            seconds += at - since
            since = None
    if since is not None:
        seconds += now - since
    if seconds <= 0 and since is None and not any(s and RunState(s).billed for _, s in events):
        return 0
    if price is None:
        return None
    seconds = max(seconds, config.billing.minimum_seconds)
    return round(seconds * units * price * 1_000_000 / 3600)


def _real_cost(real, events, units, gpu_type, config, now) -> int | None:
    from datetime import timezone

    from ...runs import RunEvent

    ev = [RunEvent("run", datetime.fromtimestamp(at, timezone.utc), RunState(s) if s else None)
          for at, s in events]
    table = real.PriceTable.from_config(config)
    breakdown = real.run_cost(
        events=ev, gpus=units, gpu_type=gpu_type, prices=table,
        now=datetime.fromtimestamp(now, timezone.utc),
    )
    for attr in ("micro_usd", "total_micro_usd", "total_micro", "micro_dollars"):
        if hasattr(breakdown, attr):
            return getattr(breakdown, attr)
    return breakdown if isinstance(breakdown, int | None) else None


# --------------------------------------------------------------------------------------------
# Devices and host-wide GPU locks

FAKE_ENV = "DLAAS_FAKE_GPUS"  # JSON file listing devices, for tests of a shared box


def discover_devices(cpu_slots: int) -> tuple[list[Device], bool, str]:
    """(devices, nvml_available, message): NVML GPUs, or cpu:N stand-ins when there are none."""
    fake = os.environ.get(FAKE_ENV)
    if fake:
        entries = json.loads(Path(fake).read_text())
        devs = [Device(index=i, uuid=e["uuid"], name=e.get("name", "Fake GPU"),
                       gpu_type=canonical_gpu_type(e.get("name")) or e.get("gpu_type"),
                       memory_total=e.get("memory_total"))
                for i, e in enumerate(entries)]
        return devs, True, ""
    try:
        from . import nvml  # type: ignore[attr-defined]
    except ImportError:
        nvml = None
    if nvml is not None and hasattr(nvml, "inventory"):
        try:
            got = nvml.inventory(cpu_slots=cpu_slots)
        except TypeError:
            got = nvml.inventory(cpu_slots)
        devices = list(getattr(got, "devices", got))
        return devices, bool(getattr(got, "nvml_available", True)), getattr(got, "message", "")
    return _cpu_slots(cpu_slots), False, f"no GPU found (NVML unavailable): {cpu_slots} cpu slot(s) stand in"


def _cpu_slots(n: int) -> list[Device]:
    return [Device(index=i, uuid=f"cpu:{i}", name=f"cpu:{i}", gpu_type="cpu") for i in range(n)]


def lock_dir() -> Path:
    d = Path(os.environ.get("DLAAS_GPU_LOCK_DIR") or "/tmp/dlaas-gpu-locks")
    if not d.exists():
        d.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(d, 0o1777)  # shared by every user's agent on the box, sticky like /tmp
        except OSError:
            pass
    return d


def try_lock_device(uuid: str, state_dir: Path) -> int | None:
    """An fd holding a host-wide exclusive flock on the device, or None when someone holds it.

    cpu slots are per user (they stand for this agent's CPU share), so their lock is in the state
    dir; GPUs lock in the shared lock dir. The fd is inherited by the run's processes, so the lock
    outlives an agent that is killed while the run goes on.
    """
    base = state_dir / "slot-locks" if uuid.startswith("cpu:") else lock_dir()
    base.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", uuid)
    fd = os.open(base / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        os.fchmod(fd, 0o666)
    except OSError:
        pass
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.set_inheritable(fd, True)
    return fd


# --------------------------------------------------------------------------------------------
# Object store


def open_store(backend):
    """The profile's store; a folder store over `paths.store_dir` when the module is absent."""
    try:
        return backend.store
    except ImportError:
        if backend.profile.store != "local":
            raise
        return FolderStore(backend.paths.store_dir)


def local_path(store, bucket: str, prefix: str = "") -> Path | None:
    """The folder behind bucket/prefix on a folder store (None on a remote store)."""
    fn = getattr(store, "local_path", None)
    if fn is None:
        return None
    return Path(fn(bucket, prefix))


class FolderStore:
    """The few object-store calls the engine needs, on a folder per bucket."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def bucket_exists(self, bucket: str) -> bool:
        return (self.root / bucket).is_dir()

    def make_bucket(self, bucket: str) -> None:
        (self.root / bucket).mkdir(parents=True, exist_ok=True)

    def local_path(self, bucket: str, prefix: str = "") -> Path:
        from ...store.base import validate_key

        if prefix:
            validate_key(prefix)
        if not self.bucket_exists(bucket):
            raise NotFound(f"no bucket {bucket!r}")
        return self.root / bucket / prefix

    def put_file(self, src: Path, bucket: str, key: str, *, transfer=None):
        dest = self.local_path(bucket, key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)

    def put_folder(self, src: Path, bucket: str, prefix: str, *, transfer=None) -> int:
        n = 0
        for p in sorted(Path(src).rglob("*")):
            if p.is_file() and not p.is_symlink():
                self.put_file(p, bucket, f"{prefix.rstrip('/')}/{p.relative_to(src).as_posix()}")
                n += 1
        return n

    def get_file(self, bucket: str, key: str, dest: Path, *, transfer=None) -> Path:
        src = self.local_path(bucket, key)
        if not src.is_file():
            raise StoreError(f"no object {bucket}/{key}")
        shutil.copyfile(src, dest)
        return dest

    def get_prefix(self, bucket: str, prefix: str, dest: Path, *, transfer=None) -> int:
        src = self.local_path(bucket, prefix)
        shutil.copytree(src, dest, dirs_exist_ok=True)
        return sum(1 for p in Path(dest).rglob("*") if p.is_file())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
