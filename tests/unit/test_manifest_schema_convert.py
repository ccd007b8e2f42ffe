"""The JSON Schema agrees with the parser; WML and FfDL conversions keep meaning and mask secrets."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from backend.manifest import load_manifest, parse_manifest
from backend.manifest.convert import compute_configuration_name, gpu_family, to_ffdl, to_wml
from backend.manifest.schema import manifest_schema

DATA = Path(__file__).resolve().parents[1] / "data" / "manifests"
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
GOOD = sorted((DATA / "good").glob("*.yml")) + sorted(SAMPLES.glob("*/manifest.yml"))
SECRETS = ("notarealsecret", "AKIAEXAMPLE", "s3cr3t-value", "AKIDEXAMPLE")

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def validator():
    schema = manifest_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_is_valid_draft_2020_12_with_descriptions() -> None:
    schema = manifest_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["required"] == ["name", "data_stores", "framework"]
    assert "per learner" in schema["properties"]["gpus"]["description"]
    assert schema["$defs"]["Framework"]["required"] == ["name", "command"]


@pytest.mark.parametrize("path", GOOD, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_good_manifests_pass_the_schema(validator, path: Path) -> None:
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


@pytest.mark.parametrize("change", [
    {"memory": "4Gi"}, {"memory": 4096}, {"gpus": -1}, {"gpus": "two"}, {"learners": 0},
    {"max_duration": "soon"}, {"framework": {"name": "pytorch"}}, {"data_stores": []},
    {"sweep": {"method": "gird", "parameters": {"a": {"values": [1]}}}},
    {"sweep": {"parameters": {"a": {"distribution": "uniform"}}}},
    {"env": {"1BAD": "x"}},
])
def test_schema_rejects_what_the_parser_rejects(validator, change: dict) -> None:
    data = yaml.safe_load((SAMPLES / "pytorch-digits" / "manifest.yml").read_text())
    data.update(change)
    assert list(validator.iter_errors(data)), change
    assert not parse_manifest(yaml.safe_dump(data), "m.yml").ok


@pytest.mark.parametrize("gpu_type, gpus, name", [
    ("nvidia-TeslaK80", 2, "k80x2"), ("V100", 1, "v100"), ("NVIDIA A100-SXM4-80GB", 4, "a100x4"),
    (None, 1, "k80"), ("L40S", 1, "l40s"), (None, 0, "cpu"),
])
def test_compute_configuration_names(gpu_type, gpus, name) -> None:
    text = (SAMPLES / "pytorch-digits" / "manifest.yml").read_text().replace("gpus: 0", f"gpus: {gpus}")
    if gpu_type:
        text += f"gpu_type: {gpu_type}\n"
    m = parse_manifest(text, "m.yml").manifest
    assert m is not None
    assert compute_configuration_name(m) == name


def test_gpu_family_reads_aliases() -> None:
    assert gpu_family("nvidia-TeslaV100") == "V100"
    assert gpu_family("NVIDIA H100 80GB HBM3") == "H100"
    assert gpu_family("mystery") is None


def test_wml_dialect() -> None:
    m = load_manifest(DATA / "good" / "ffdl-tf-gpu-learners.yml")
    converted = to_wml(m)
    data = yaml.safe_load(converted.to_yaml())
    definition = data["model_definition"]
    assert definition["name"] == "tf_mnist_distributed"
    assert definition["framework"] == {"name": "tensorflow", "version": "1.5.0-gpu-py3"}
    assert definition["execution"]["command"] == m.framework.command
    assert definition["execution"]["compute_configuration"] == {"name": "k80x2", "nodes": 2}
    assert data["training_data_reference"]["source"] == {"bucket": "mnist_training_data"}
    assert data["training_data_reference"]["type"] == "s3"
    assert data["training_results_reference"]["target"] == {"bucket": "mnist_trained_model"}
    conn = data["training_data_reference"]["connection"]
    assert conn == {"endpoint_url": "https://s3-api.us-geo.objectstorage.softlayer.net",
                    "access_key_id": "****", "secret_access_key": "****"}


@pytest.mark.parametrize("path", GOOD, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("convert", [to_wml, to_ffdl], ids=["wml", "ffdl"])
def test_conversions_never_carry_secrets(path: Path, convert) -> None:
    text = convert(load_manifest(path)).to_yaml()
    for secret in SECRETS:
        assert secret not in text


def test_ffdl_dialect_drops_extensions_with_notes_and_reparses() -> None:
    m = load_manifest(DATA / "good" / "full.yml")
    converted = to_ffdl(m)
    assert set(converted.data) == {"name", "description", "version", "gpus", "gpu_type", "cpus", "memory",
                                   "learners", "data_stores", "framework", "evaluation_metrics"}
    notes = " ".join(converted.notes)
    for dropped in ("env", "max_duration", "sweep", "priority", "${NAME}"):
        assert dropped in notes
    again = parse_manifest(converted.to_yaml(), "ffdl.yml")
    assert again.ok and again.manifest is not None
    assert again.manifest.memory_bytes == m.memory_bytes
    assert again.manifest.data_store.connection.password == "****"


def test_ffdl_example_round_trips_unchanged_apart_from_secrets() -> None:
    path = DATA / "good" / "ffdl-caffe-mnist.yml"
    original = yaml.safe_load(path.read_text())
    converted = to_ffdl(load_manifest(path))
    assert converted.notes == []
    original["version"] = "1.0"  # kept as the text it was written as
    original["data_stores"][0]["connection"].update(user_name="****", password="****")
    assert yaml.safe_load(converted.to_yaml()) == original
