"""A stand-in for the `pynvml` module, built from a spec, for tests and for boxes without GPUs.

It answers the calls nvml.py makes the way the real library does: a field the spec leaves out or
sets to null raises NVMLError(NOT_SUPPORTED), an empty MIG slot raises NOT_FOUND, a missing library
fails `nvmlInit`. Specs are plain data (JSON in a file for `DLAAS_FAKE_NVML`):

    {"gpus": [{"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-…", "memory_total": 85899345920,
               "memory_used": 0, "utilization": 3, "temperature": 31, "power_mw": 70000,
               "processes": [1234, {"pid": 1235, "used_memory": 21474836480}],
               "mig": [{"name": "NVIDIA A100-SXM4-40GB MIG 3g.20gb", "uuid": "MIG-…", …}]}],
     "error": null}     # or "library_not_found" / "driver_not_loaded"
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
_MESSAGES = {
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
}
_INIT_ERRORS = {"library_not_found": NVML_ERROR_LIBRARY_NOT_FOUND, "driver_not_loaded": NVML_ERROR_DRIVER_NOT_LOADED}
GiB = 1024**3


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(_MESSAGES.get(value, f"NVML error {value}"))
        self.value = value


@dataclass(frozen=True)
class _Memory:
    total: int
    used: int
    free: int


@dataclass(frozen=True)
class _Utilization:
    gpu: int
    memory: int


@dataclass(frozen=True)
class _Process:
    pid: int
    usedGpuMemory: int | None = None  # noqa: N815 - pynvml's spelling


def _unsupported() -> NVMLError:
    return NVMLError(NVML_ERROR_NOT_SUPPORTED)


class FakeNVML:
    """Module-shaped: `FakeNVML(spec).nvmlInit()` and friends, plus `NVMLError` and the constants."""

    NVMLError = NVMLError
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NOT_FOUND = NVML_ERROR_NOT_FOUND
    NVML_TEMPERATURE_GPU = 0
    NVML_DEVICE_MIG_DISABLE = 0
    NVML_DEVICE_MIG_ENABLE = 1

    def __init__(self, spec: dict[str, Any] | list[dict[str, Any]]) -> None:
        if isinstance(spec, list):
            spec = {"gpus": spec}
        self.gpus: list[dict[str, Any]] = list(spec.get("gpus", []))
        self.error: str | None = spec.get("error")
        self.initialized = 0
        self.calls: list[str] = []

    @classmethod
    def from_file(cls, path: str | Path) -> FakeNVML:
        return cls(json.loads(Path(path).read_text()))

    # -- lifecycle ---------------------------------------------------------------------------
    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        if self.error:
            raise NVMLError(_INIT_ERRORS.get(self.error, NVML_ERROR_LIBRARY_NOT_FOUND))
        self.initialized += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.initialized -= 1

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        return "555.42.06"

    # -- devices ---------------------------------------------------------------------------------
    def _check(self) -> None:
        if self.initialized <= 0:
            raise NVMLError(1)  # NVML_ERROR_UNINITIALIZED

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self._check()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:  # noqa: N802
        self._check()
        if not 0 <= index < len(self.gpus):
            raise NVMLError(2)  # INVALID_ARGUMENT
        return self.gpus[index]

    def _field(self, handle: dict[str, Any], key: str) -> Any:
        self._check()
        self.calls.append(key)
        value = handle.get(key)
        if value is None:
            raise _unsupported()
        return value

    def nvmlDeviceGetUUID(self, handle: dict[str, Any]) -> str:  # noqa: N802
        return self._field(handle, "uuid")

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> str:  # noqa: N802
        return self._field(handle, "name")

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> _Memory:  # noqa: N802
        total = self._field(handle, "memory_total")
        used = handle.get("memory_used") or 0
        return _Memory(total, used, total - used)

    def nvmlDeviceGetUtilizationRates(self, handle: dict[str, Any]) -> _Utilization:  # noqa: N802
        return _Utilization(self._field(handle, "utilization"), handle.get("memory_utilization") or 0)

    def nvmlDeviceGetTemperature(self, handle: dict[str, Any], sensor: int) -> int:  # noqa: N802
        return self._field(handle, "temperature")

    def nvmlDeviceGetPowerUsage(self, handle: dict[str, Any]) -> int:  # noqa: N802
        return self._field(handle, "power_mw")

    def nvmlDeviceGetComputeRunningProcesses(self, handle: dict[str, Any]) -> list[_Process]:  # noqa: N802
        # An entry is a pid, or {"pid": N, "used_memory": bytes} for its usedGpuMemory.
        return [_Process(p["pid"], p.get("used_memory")) if isinstance(p, dict) else _Process(p)
                for p in self._field(handle, "processes")]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: dict[str, Any]) -> list[_Process]:  # noqa: N802
        self._check()
        return [_Process(pid) for pid in handle.get("graphics_processes", [])]

    # -- MIG -----------------------------------------------------------------------------------
    def nvmlDeviceGetMigMode(self, handle: dict[str, Any]) -> tuple[int, int]:  # noqa: N802
        self._check()
        if "mig" not in handle:
            raise _unsupported()  # a GPU without MIG support answers NOT_SUPPORTED
        mode = self.NVML_DEVICE_MIG_ENABLE if handle["mig"] is not None else self.NVML_DEVICE_MIG_DISABLE
        return mode, mode

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: dict[str, Any]) -> int:  # noqa: N802
        self._check()
        return int(handle.get("mig_slots", 7))

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: dict[str, Any], index: int) -> dict[str, Any]:  # noqa: N802
        self._check()
        slices = handle.get("mig") or []
        if index >= len(slices) or slices[index] is None:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return slices[index]


def example_box() -> dict[str, Any]:
    """A mixed box: two H100s (one busy with pid 4242), an A100 in MIG mode with two slices and an
    empty slot, and an old T4 that supports neither utilization nor power readings."""
    return {
        "gpus": [
            {
                "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-11111111-1111-1111-1111-111111111111",
                "memory_total": 80 * GiB, "memory_used": 512 * 1024**2, "utilization": 0,
                "temperature": 31, "power_mw": 70_500, "processes": [], "mig": None,
            },
            {
                "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-22222222-2222-2222-2222-222222222222",
                "memory_total": 80 * GiB, "memory_used": 40 * GiB, "utilization": 97,
                "temperature": 71, "power_mw": 650_000, "processes": [4242], "mig": None,
            },
            {
                "name": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-33333333-3333-3333-3333-333333333333",
                "memory_total": 40 * GiB, "memory_used": 0, "utilization": None,
                "temperature": 40, "power_mw": 90_000, "processes": [], "mig_slots": 3,
                "mig": [
                    {"name": "NVIDIA A100-SXM4-40GB MIG 3g.20gb",
                     "uuid": "MIG-aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
                     "memory_total": 20 * GiB, "memory_used": 0, "processes": []},
                    None,
                    {"name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb",
                     "uuid": "MIG-bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb",
                     "memory_total": 5 * GiB, "memory_used": GiB, "processes": [5151]},
                ],
            },
            {
                "name": "Tesla T4", "uuid": "GPU-44444444-4444-4444-4444-444444444444",
                "memory_total": 16 * GiB, "memory_used": 0, "utilization": None,
                "temperature": 35, "power_mw": None, "processes": None,
            },
        ]
    }
