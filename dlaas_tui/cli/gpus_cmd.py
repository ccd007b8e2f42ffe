"""CLI commands: gpus — the devices the profile's engine schedules onto, and who holds each."""
from __future__ import annotations

import argparse
import textwrap
from typing import TYPE_CHECKING, Any

from ..formatting import human_bytes
from .output import print_json, print_table, safe_text

if TYPE_CHECKING:
    from backend.facade import Device, Inventory

NA = "N/A"


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the parser."""
    p = sub.add_parser(
        "gpus",
        help="devices, utilization, memory and the run holding each",
        description="List the devices the profile's engine schedules onto: utilization, memory and "
        "the run holding each. Fields a device cannot report show N/A.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_gpus)


def device_json(d: Device) -> dict[str, Any]:
    return {
        "index": d.index,
        "uuid": d.uuid,
        "name": d.name,
        "gpu_type": d.gpu_type,
        "is_cpu_slot": d.is_cpu_slot,
        "is_mig": d.is_mig,
        "parent_uuid": d.parent_uuid,
        "memory_total": d.memory_total,
        "memory_used": d.memory_used,
        "utilization": d.utilization,
        "temperature": d.temperature,
        "power_watts": d.power_watts,
        "processes": list(d.processes),
        "held_by": d.held_by,
        "busy_foreign": d.busy_foreign,
    }


def inventory_json(inv: Inventory) -> dict[str, Any]:
    return {
        "nvml_available": inv.nvml_available,
        "message": inv.message,
        "node": inv.node,
        "tier_gpus": inv.tier_gpus,
        "in_use": inv.in_use,
        "devices": [device_json(d) for d in inv.devices],
    }


def _memory(d: Device) -> str:
    if d.memory_total is None:
        return NA
    used = NA if d.memory_used is None else human_bytes(d.memory_used).replace(" ", "")
    return f"{used}/{human_bytes(d.memory_total).replace(' ', '')}"


def _holder(d: Device) -> str:
    if d.held_by:
        return d.held_by
    if d.busy_foreign:
        if not d.processes:
            return "in use (another agent)"
        pids = ",".join(str(p) for p in d.processes[:2]) + ("…" if len(d.processes) > 2 else "")
        return f"in use (pid {pids})"
    return "free"


def _label(d: Device) -> str:
    """The name without the vendor word; a MIG slice as its GPU type and profile (A100 MIG 1g.5gb)."""
    name = d.name.removeprefix("NVIDIA ")
    if d.is_mig and " MIG " in f" {name} ":
        profile = name.split("MIG", 1)[1].strip()
        return f"{d.gpu_type or 'GPU'} MIG {profile}".strip()
    return name


def inventory_rows(inv: Inventory) -> list[list[str]]:
    rows = []
    slice_no: dict[str | None, int] = {}
    for d in inv.devices:
        index = str(d.index)
        if d.is_mig:
            # nvidia-smi's way of naming a slice: GPU index, then the slice within it
            n = slice_no[d.parent_uuid] = slice_no.get(d.parent_uuid, -1) + 1
            index = f"{d.index}.{n}"
        rows.append(
            [
                index,
                _label(d),
                d.gpu_type or "?",
                NA if d.utilization is None else f"{d.utilization}%",
                _memory(d),
                NA if d.temperature is None else f"{d.temperature}C",
                _holder(d),
            ]
        )
    return rows


def cmd_gpus(args: argparse.Namespace, ctx: Any) -> int:
    inv = ctx.backend.engine.inventory()
    if args.json:
        print_json(inventory_json(inv))
        return 0
    if inv.message:
        print(textwrap.fill(safe_text(inv.message), width=80))
    headers = ["#", "DEVICE", "TYPE", "UTIL", "MEMORY", "TEMP", "RUN"]
    print_table(headers, inventory_rows(inv))
    limit = f", tier allows {inv.tier_gpus} at a time" if inv.tier_gpus else ""
    print(f"{inv.in_use} of {inv.gpu_count} device(s) held by runs{limit}")
    return 0
