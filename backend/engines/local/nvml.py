"""The machine's devices through NVML (nvidia-ml-py's `pynvml`, imported only when asked).

`read_inventory()` lists every GPU (or, on a GPU in MIG mode, its MIG slices, which are what CUDA
can be given) with its canonical type, memory, utilization, temperature, power and the pids using
it. A field the driver does not support is None, never a made-up 0. When NVML is missing or finds
no GPU, `cpu_slots` stand-in devices `cpu:0..` are returned with `nvml_available=False` and a
plain message, so GPU runs still queue and execute (on the CPU).

A device used by a process this agent did not start (`our_pids` does not hold its pid) is marked
`busy_foreign`: on a shared box the agent does not hand it out.

The NVML module is a parameter: tests pass `FakeNVML` (fake_nvml.py); `DLAAS_FAKE_NVML=FILE.json`
makes `load_nvml()` return one in any process (the agent's end-to-end tests use that).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~2.5 ms) on the CLI's path
if TYPE_CHECKING:  # imported where they are built: `runs` counts devices (device_count) without them
    from typing import Any
    from ...devices import Device, Inventory



def _gpu_type(name: str, parent_name: str | None) -> str | None:
    from ...cost import canonical_gpu_type  # here: `runs` counts devices without the price rules

    return canonical_gpu_type(name) or canonical_gpu_type(parent_name)


class NvmlUnavailable(Exception):
    """NVML cannot be used here; the message says why in plain words."""


def load_nvml() -> Any:
    """The NVML module: a FakeNVML when `DLAAS_FAKE_NVML` names a spec file, else `pynvml`."""
    spec = os.environ.get("DLAAS_FAKE_NVML")
    if spec:
        from .fake_nvml import FakeNVML

        return FakeNVML.from_file(spec)
    try:
        import pynvml
    except ImportError:
        raise NvmlUnavailable("nvidia-ml-py is not installed") from None
    return pynvml


def _error_text(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return {
        "NVML Shared Library Not Found": "no NVIDIA driver library",
        "Driver Not Loaded": "the NVIDIA driver is not loaded",
    }.get(text, text)


def _decode(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _reader(nvml: Any) -> Callable[..., Any]:
    """Call an NVML getter; a field the device cannot report (NOT_SUPPORTED, no permission) is None."""

    def read(fn_name: str, *args: Any) -> Any:
        fn = getattr(nvml, fn_name, None)
        if fn is None:
            return None
        try:
            return fn(*args)
        except nvml.NVMLError:
            return None

    return read


def _pids(read: Callable[..., Any], handle: Any) -> tuple[int, ...] | None:
    compute = read("nvmlDeviceGetComputeRunningProcesses", handle)
    graphics = read("nvmlDeviceGetGraphicsRunningProcesses", handle)
    if compute is None and graphics is None:
        return None
    return tuple(sorted({int(p.pid) for p in (compute or []) + (graphics or [])}))


def _device(
    read: Callable[..., Any],
    nvml: Any,
    handle: Any,
    index: int,
    *,
    our_pids: Collection[int],
    holders: Mapping[str, str],
    parent_uuid: str | None = None,
    parent_name: str | None = None,
) -> Device:
    from ...devices import Device

    uuid = _decode(read("nvmlDeviceGetUUID", handle) or f"GPU-unknown-{index}")
    name = _decode(read("nvmlDeviceGetName", handle) or parent_name or "NVIDIA GPU")
    memory = read("nvmlDeviceGetMemoryInfo", handle)
    util = read("nvmlDeviceGetUtilizationRates", handle)
    temp = read("nvmlDeviceGetTemperature", handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0))
    power = read("nvmlDeviceGetPowerUsage", handle)
    pids = _pids(read, handle)
    return Device(
        index=index,
        uuid=uuid,
        name=name,
        gpu_type=_gpu_type(name, parent_name),
        memory_total=int(memory.total) if memory is not None else None,
        memory_used=int(memory.used) if memory is not None else None,
        utilization=int(util.gpu) if util is not None else None,
        temperature=int(temp) if temp is not None else None,
        power_watts=power / 1000.0 if power is not None else None,
        processes=pids or (),
        held_by=holders.get(uuid),
        busy_foreign=any(p not in our_pids for p in (pids or ())),
        is_mig=parent_uuid is not None,
        parent_uuid=parent_uuid,
    )


def _mig_slices(read: Callable[..., Any], nvml: Any, handle: Any) -> list[Any] | None:
    """The MIG device handles of a GPU in MIG mode, or None when MIG is off or unsupported."""
    mode = read("nvmlDeviceGetMigMode", handle)
    if not mode or mode[0] != getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1):
        return None
    slots = read("nvmlDeviceGetMaxMigDeviceCount", handle) or 0
    found = []
    for i in range(slots):
        mig = read("nvmlDeviceGetMigDeviceHandleByIndex", handle, i)  # NOT_FOUND: an empty slot
        if mig is not None:
            found.append(mig)
    return found


def cpu_slot_devices(cpu_slots: int, holders: Mapping[str, str] | None = None) -> tuple[Device, ...]:
    from ...devices import Device

    holders = holders or {}
    return tuple(
        Device(i, f"cpu:{i}", f"cpu slot {i}", "cpu", held_by=holders.get(f"cpu:{i}"))
        for i in range(cpu_slots)
    )


def read_inventory(
    *,
    nvml: Any = None,
    cpu_slots: int = 1,
    our_pids: Collection[int] = frozenset(),
    holders: Mapping[str, str] | None = None,
    node: str | None = None,
    tier_gpus: int = 0,
) -> Inventory:
    """Every device on this machine; `holders` maps device UUIDs (or `cpu:N`) to run ids."""
    holders = holders or {}
    try:
        module = nvml if nvml is not None else load_nvml()
    except NvmlUnavailable as exc:
        return _cpu_inventory(cpu_slots, holders, f"NVML unavailable ({exc})", node, tier_gpus)
    try:
        module.nvmlInit()
    except module.NVMLError as exc:
        return _cpu_inventory(cpu_slots, holders, f"NVML unavailable ({_error_text(exc)})", node, tier_gpus)
    try:
        read = _reader(module)
        count = read("nvmlDeviceGetCount") or 0
        devices: list[Device] = []
        for index in range(count):
            handle = read("nvmlDeviceGetHandleByIndex", index)
            if handle is None:
                continue
            kw = {"our_pids": our_pids, "holders": holders}
            slices = _mig_slices(read, module, handle)
            if slices is None:
                devices.append(_device(read, module, handle, index, **kw))
                continue
            parent = _device(read, module, handle, index, **kw)
            for mig in slices:
                devices.append(
                    _device(read, module, mig, index, parent_uuid=parent.uuid, parent_name=parent.name, **kw)
                )
    finally:
        try:
            module.nvmlShutdown()
        except module.NVMLError:
            pass
    if not devices:
        return _cpu_inventory(cpu_slots, holders, "NVML found no GPU", node, tier_gpus)
    from ...devices import Inventory

    return Inventory(tuple(devices), True, "", node, tier_gpus)


# NVML talks to the driver through /dev/nvidiactl (WSL 2: /dev/dxg); without either it finds no GPU.
NVIDIA_DEVICE_NODES = ("/dev/nvidiactl", "/dev/dxg")


def device_count(cpu_slots: int) -> int:
    """How many devices runs may use here (GPUs, else the cpu slots), for queue estimates. On a box
    with no NVIDIA device node (and no fake NVML) that is the cpu slots, known without loading
    pynvml (~20-30 ms of every `runs`)."""
    return estimate_devices(cpu_slots)[0]


def estimate_devices(cpu_slots: int) -> tuple[int, dict[str, int | None]]:
    """(how many devices runs may use here, as `device_count`; the GPUs among them -> their memory in
    bytes, None: unknown), for queue estimates that place sharing runs. No GPU: (cpu slots, {})."""
    if not os.environ.get("DLAAS_FAKE_NVML") and not any(map(os.path.exists, NVIDIA_DEVICE_NODES)):
        return cpu_slots, {}
    devices = read_inventory(cpu_slots=cpu_slots).devices
    return len(devices), {d.uuid: d.memory_total for d in devices if not d.is_cpu_slot}


def process_memory(nvml: Any = None) -> dict[str, dict[int, int]]:
    """The GPU memory each compute process uses, per device: uuid -> {pid: bytes}, from
    nvmlDeviceGetComputeRunningProcesses' usedGpuMemory (MIG slices by their own uuid). A process
    the driver gives no figure for is left out; without NVML the answer is {}."""
    if nvml is None and not os.environ.get("DLAAS_FAKE_NVML") and not any(map(os.path.exists, NVIDIA_DEVICE_NODES)):
        return {}
    try:
        module = nvml if nvml is not None else load_nvml()
    except NvmlUnavailable:
        return {}
    try:
        module.nvmlInit()
    except module.NVMLError:
        return {}
    out: dict[str, dict[int, int]] = {}
    try:
        read = _reader(module)
        handles = []
        for index in range(read("nvmlDeviceGetCount") or 0):
            handle = read("nvmlDeviceGetHandleByIndex", index)
            if handle is None:
                continue
            handles.append(handle)
            handles += _mig_slices(read, module, handle) or []
        for handle in handles:
            uuid = read("nvmlDeviceGetUUID", handle)
            procs = read("nvmlDeviceGetComputeRunningProcesses", handle)
            if uuid is None or not procs:
                continue
            used: dict[int, int] = {}
            for p in procs:
                figure = getattr(p, "usedGpuMemory", None)
                if figure is not None:
                    used[int(p.pid)] = used.get(int(p.pid), 0) + int(figure)
            if used:
                out[_decode(uuid)] = used
    finally:
        try:
            module.nvmlShutdown()
        except module.NVMLError:
            pass
    return out


def _cpu_inventory(
    cpu_slots: int, holders: Mapping[str, str], why: str, node: str | None, tier_gpus: int
) -> Inventory:
    from ...devices import Inventory

    message = f"{why}: {cpu_slots} cpu slot(s) stand in for GPUs, runs execute on the CPU"
    return Inventory(cpu_slot_devices(cpu_slots, holders), False, message, node, tier_gpus)
