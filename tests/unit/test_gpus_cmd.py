"""`dlaas-tui gpus`: devices, utilization, memory and holders, in text that fits 80 columns and JSON."""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

import pytest

from backend.engines.fake import FakeClock, FakeEngine
from backend.engines.local.fake_nvml import FakeNVML, example_box
from backend.engines.local.nvml import read_inventory
from dlaas_tui.cli.gpus_cmd import cmd_gpus

MANIFEST = {
    "name": "digits",
    "gpus": 1,
    "data_stores": [{"id": "s", "type": "local", "training_data": {"container": "d"},
                     "training_results": {"container": "r"}}],
    "framework": {"name": "pytorch", "command": "python train.py"},
}


@dataclass
class _Backend:
    engine: Any


@dataclass
class _Ctx:
    backend: Any


class _NvmlEngine:
    """An engine whose inventory is a real NVML read of a fake box (what the local engine does)."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def inventory(self):
        return read_inventory(**self.kwargs)


def run_gpus(engine: Any, capsys, *, as_json: bool = False) -> str:
    rc = cmd_gpus(argparse.Namespace(json=as_json), _Ctx(_Backend(engine)))
    assert rc == 0
    return capsys.readouterr().out


def test_text_shows_holder_foreign_use_and_fits_80_columns(capsys):
    engine = FakeEngine(FakeClock(), devices=3, gpu_type="H100", tier_gpus=2)
    engine.set_foreign(0, [777])
    run = engine.submit_manifest(MANIFEST)
    out = run_gpus(engine, capsys)
    lines = out.splitlines()
    assert lines.pop(0) == "fake engine: 3 simulated H100"
    assert lines[0].split() == ["#", "DEVICE", "TYPE", "UTIL", "MEMORY", "TEMP", "RUN"]
    assert "in use (pid 777)" in lines[1]
    assert run.id in lines[2] and "87%" in lines[2]
    assert lines[3].rstrip().endswith("free")
    assert lines[-1] == "1 of 3 device(s) held by runs, tier allows 2 at a time"
    assert all(len(line) <= 80 for line in lines)


def test_unsupported_fields_show_na_and_mig_slices(capsys):
    engine = _NvmlEngine(nvml=FakeNVML(example_box()), our_pids=set())
    out = run_gpus(engine, capsys)
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines)
    t4 = next(line for line in lines if "T4" in line)
    assert t4.split()[4:] == ["N/A", "0B/16.0GiB", "35C", "free"]
    mig = next(line for line in lines if "MIG 1g" in line)
    assert mig.startswith("2.1  A100 MIG 1g.5gb")
    assert any(line.startswith("2.0  A100 MIG 3g.20gb") for line in lines)
    assert any(line.startswith("0    H100 80GB HBM3") for line in lines)
    assert "N/A" in mig and "in use (pid 5151)" in mig


def test_no_nvml_says_so_plainly(capsys):
    engine = _NvmlEngine(nvml=FakeNVML({"error": "library_not_found"}), cpu_slots=2)
    out = run_gpus(engine, capsys)
    assert out.splitlines()[0].startswith("NVML unavailable (no NVIDIA driver library)")
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "cpu:0" not in out.splitlines()[0] and "cpu slot 1" in out
    data = json.loads(run_gpus(engine, capsys, as_json=True))
    assert data["nvml_available"] is False and "cpu slot" in data["message"]
    assert [d["uuid"] for d in data["devices"]] == ["cpu:0", "cpu:1"]
    assert data["devices"][0]["is_cpu_slot"] is True


def test_json_fields(capsys):
    engine = _NvmlEngine(nvml=FakeNVML(example_box()), holders={"GPU-11111111-1111-1111-1111-111111111111": "training-aaaa1111"})
    data = json.loads(run_gpus(engine, capsys, as_json=True))
    assert data["nvml_available"] is True and data["in_use"] == 1
    first = data["devices"][0]
    assert first["held_by"] == "training-aaaa1111" and first["gpu_type"] == "H100"
    assert first["memory_total"] == 80 * 1024**3 and first["power_watts"] == 70.5
    t4 = data["devices"][-1]
    assert t4["utilization"] is None and t4["power_watts"] is None


@pytest.mark.slow  # runs the CLI in a subprocess
def test_cli_with_the_fake_profile(cli, dlaas_home):
    (dlaas_home / "config.toml").write_text('[profiles.fake]\nscheduler = "fake"\ntier = "free"\n')
    env = {"DLAAS_FAKE_DEVICES": "2xA100"}
    out = cli("--profile", "fake", "gpus", env=env)
    assert out.returncode == 0, out.stderr
    assert "A100-SXM4-80GB" in out.stdout and "tier allows 1 at a time" in out.stdout
    as_json = cli("--profile", "fake", "gpus", "--json", env=env)
    data = json.loads(as_json.stdout)
    assert [d["gpu_type"] for d in data["devices"]] == ["A100", "A100"] and data["tier_gpus"] == 1
    none = cli("--profile", "fake", "gpus", env={"DLAAS_FAKE_DEVICES": "0"})
    assert none.returncode == 0 and "cpu slot" in none.stdout.splitlines()[0]


def test_device_locked_by_another_agent(capsys):
    from backend.facade import Device, Inventory

    class Locked:
        def inventory(self):
            return Inventory((Device(0, "GPU-x", "NVIDIA L4", "L4", busy_foreign=True),), True)

    out = run_gpus(Locked(), capsys)
    assert "in use (another agent)" in out and "N/A" in out
