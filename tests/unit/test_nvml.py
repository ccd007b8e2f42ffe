"""NVML inventory against a fake NVML: several GPUs, NOT_SUPPORTED fields, MIG, no GPU at all."""
from __future__ import annotations

import json
import subprocess
import sys

from backend.engines.local.fake_nvml import GiB, FakeNVML, example_box
from backend.engines.local.nvml import read_inventory


def test_several_gpus_with_mig_and_unsupported_fields():
    nvml = FakeNVML(example_box())
    inv = read_inventory(nvml=nvml, our_pids={5151})
    assert inv.nvml_available and inv.message == ""
    assert [d.uuid[:5] for d in inv.devices] == ["GPU-1", "GPU-2", "MIG-a", "MIG-b", "GPU-4"]
    h0, h1, mig_big, mig_small, t4 = inv.devices
    assert (h0.index, h0.name, h0.gpu_type) == (0, "NVIDIA H100 80GB HBM3", "H100")
    assert h0.memory_total == 80 * GiB and h0.memory_used == 512 * 1024**2
    assert (h0.utilization, h0.temperature, h0.power_watts) == (0, 31, 70.5)
    assert h0.processes == () and not h0.busy_foreign and not h0.is_mig
    assert h1.processes == (4242,) and h1.busy_foreign  # someone else's process
    # the A100 is in MIG mode: its slices are the devices, the empty slot is skipped
    assert mig_big.is_mig and mig_big.parent_uuid == "GPU-33333333-3333-3333-3333-333333333333"
    assert mig_big.gpu_type == "A100" and mig_big.index == 2 and mig_big.memory_total == 20 * GiB
    assert mig_big.utilization is None and mig_big.temperature is None  # NOT_SUPPORTED -> None
    assert mig_small.processes == (5151,) and not mig_small.busy_foreign  # our own run's pid
    assert t4.gpu_type == "T4" and t4.utilization is None and t4.power_watts is None
    assert t4.processes == () and not t4.busy_foreign and t4.temperature == 35
    assert nvml.initialized == 0  # every init is shut down again


def test_holders_are_named():
    uuid = example_box()["gpus"][0]["uuid"]
    inv = read_inventory(nvml=FakeNVML(example_box()), holders={uuid: "training-abcd1234"}, tier_gpus=1)
    assert inv.devices[0].held_by == "training-abcd1234" and inv.in_use == 1 and inv.tier_gpus == 1


def test_missing_library_gives_cpu_slots():
    inv = read_inventory(nvml=FakeNVML({"error": "library_not_found"}), cpu_slots=2)
    assert not inv.nvml_available
    assert [d.uuid for d in inv.devices] == ["cpu:0", "cpu:1"]
    assert all(d.gpu_type == "cpu" and d.is_cpu_slot for d in inv.devices)
    assert "no NVIDIA driver library" in inv.message and "2 cpu slot(s)" in inv.message


def test_driver_not_loaded_and_no_gpu():
    inv = read_inventory(nvml=FakeNVML({"error": "driver_not_loaded"}))
    assert not inv.nvml_available and "driver is not loaded" in inv.message
    inv = read_inventory(nvml=FakeNVML({"gpus": []}), cpu_slots=3, holders={"cpu:1": "training-x"})
    assert not inv.nvml_available and "found no GPU" in inv.message and inv.gpu_count == 3
    assert inv.devices[1].held_by == "training-x"


def test_real_pynvml_on_this_machine_never_raises():
    inv = read_inventory(cpu_slots=1)
    assert inv.gpu_count >= 1
    if not inv.nvml_available:
        assert inv.devices[0].uuid == "cpu:0" and inv.message


def test_fake_nvml_from_env_in_a_subprocess(tmp_path):
    spec = tmp_path / "box.json"
    spec.write_text(json.dumps(example_box()))
    code = (
        "from backend.engines.local.nvml import read_inventory\n"
        "inv = read_inventory()\n"
        "print(inv.nvml_available, len(inv.devices), inv.devices[0].gpu_type)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env={**__import__("os").environ, "DLAAS_FAKE_NVML": str(spec)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "5", "H100"]


def test_a_gpu_less_box_lists_its_cpu_slots_and_a_gpu_box_its_gpus():
    from backend.engines.local.nvml import read_inventory

    inv = read_inventory(cpu_slots=4, nvml=FakeNVML({"gpus": []}))
    assert [d.uuid for d in inv.devices] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]
    plain = read_inventory(nvml=FakeNVML([{"uuid": "GPU-x", "name": "NVIDIA L4", "memory_total": 24 * GiB}]))
    assert plain.devices[0].gpu_type == "L4" and plain.devices[0].utilization is None
