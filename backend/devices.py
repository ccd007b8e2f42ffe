"""Devices as engines report them: a GPU (or MIG slice) from NVML, a cpu slot, and a machine's inventory.

Dataclasses (tests and engines `dataclasses.replace` them); in their own module, so a runs listing,
which never shows a device, does not build them (`backend.runs` hands them out on first use).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Device:
    """One schedulable device: a GPU (or MIG slice) from NVML, or a `cpu:N` stand-in slot."""

    index: int
    uuid: str
    name: str
    gpu_type: str | None  # canonical type (H100, A100, ...), "cpu" for a stand-in slot
    memory_total: int | None = None  # bytes; None = not supported
    memory_used: int | None = None
    utilization: int | None = None  # percent; None = not supported
    temperature: int | None = None
    power_watts: float | None = None
    processes: tuple[int, ...] = ()  # pids using the device
    held_by: str | None = None  # run id of the run holding it
    busy_foreign: bool = False  # used by a process this agent did not start
    is_mig: bool = False
    parent_uuid: str | None = None

    @property
    def is_cpu_slot(self) -> bool:
        return self.gpu_type == "cpu"

    @property
    def label(self) -> str:
        return self.uuid if self.is_cpu_slot else f"{self.uuid} {self.name}"


@dataclass(frozen=True)
class Inventory:
    devices: tuple[Device, ...]
    nvml_available: bool
    message: str = ""  # said plainly in the TUI and JSON when NVML is absent or found no GPU
    node: str | None = None
    tier_gpus: int = 0  # what the profile's tier allows at once; 0 = everything

    @property
    def gpu_count(self) -> int:
        return len(self.devices)

    @property
    def in_use(self) -> int:
        return sum(1 for d in self.devices if d.held_by)
