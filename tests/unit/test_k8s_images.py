"""Framework images on a cluster: the built-in table, CUDA or CPU by `gpus`, [frameworks] overrides,
unknown versions refused with the known ones, and a first run from a profile of three keys + s3."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from backend.config import parse_config
from backend.engines.kubernetes import images, render
from backend.errors import BadInput
from tests.fixtures import k8s_objects as fx

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"

# What a new user writes: nothing but where the cluster and the bucket are.
MINIMAL = """
default_profile = "cluster"
[profiles.cluster]
kubernetes = { context = "kind-dlaas", namespace = "team-a", queue = "team-a" }
s3 = { endpoint_url = "http://192.0.2.10:9000", access_key_id = "AKIDEXAMPLE", secret_access_key = "never-printed" }
"""


def _manifest(name="pytorch", version=None, gpus=1):
    fw = {"name": name, "command": "python3 train.py"}
    if version is not None:
        fw["version"] = version
    return fx.manifest(framework=fw, gpus=gpus, gpu_type=None if not gpus else "H100")


def _config(extra=""):
    return parse_config(MINIMAL + extra, "c.toml")


def test_the_minimal_profile_is_a_kubernetes_profile_storing_in_s3():
    prof = _config().profile()
    assert (prof.scheduler, prof.store) == ("kubernetes", "s3")
    assert (prof.kubernetes.context, prof.kubernetes.namespace, prof.kubernetes.queue) == ("kind-dlaas", "team-a", "team-a")
    local = parse_config('[profiles.l]\nscheduler = "local"\n[profiles.l.kubernetes]\nnamespace = "x"\n', "c.toml")
    assert (local.profile("l").scheduler, local.profile("l").store) == ("local", "local")  # an explicit word wins


@pytest.mark.parametrize("name", sorted(images.DEFAULT_IMAGES))
def test_every_framework_has_cuda_and_cpu_images_and_defaults_to_its_newest(name):
    config = _config()
    versions = images.DEFAULT_IMAGES[name]
    newest = max(versions, key=lambda v: tuple(int(p) for p in v.split(".")))
    assert images.framework_image(_manifest(name, gpus=1), config) == versions[newest].cuda
    assert images.framework_image(_manifest(name, gpus=0), config) == versions[newest].cpu
    for version, img in versions.items():
        assert images.framework_image(_manifest(name, version, gpus=2), config) == img.cuda
        assert images.framework_image(_manifest(name, version, gpus=0), config) == img.cpu
        assert ":" in img.cuda and ":" in img.cpu and version.split(".")[0] in img.cuda


def test_tensorflow_picks_the_gpu_variant_only_with_gpus():
    config = _config()
    assert images.framework_image(_manifest("tensorflow", "2.19", gpus=1), config) == "tensorflow/tensorflow:2.19.0-gpu"
    assert images.framework_image(_manifest("tensorflow", "2.19", gpus=0), config) == "tensorflow/tensorflow:2.19.0"


def test_versions_match_by_patch_and_prefix():
    config = _config()
    assert images.framework_image(_manifest("pytorch", "2.6.0"), config) == images.DEFAULT_IMAGES["pytorch"]["2.6"].cuda
    assert images.framework_image(_manifest("python", "3", gpus=0), config) == "python:3.13-slim"


def test_config_overrides_one_version_and_adds_others():
    config = _config("""
[frameworks.pytorch]
"2.6" = { image = "registry.example/pt:2.6-cuda", cpu_image = "registry.example/pt:2.6-cpu" }
"2.9" = { image = "registry.example/pt:2.9" }
[frameworks.jax]
"0.4" = { image = "registry.example/jax:0.4" }
""")
    assert images.framework_image(_manifest("pytorch", "2.6", gpus=1), config) == "registry.example/pt:2.6-cuda"
    assert images.framework_image(_manifest("pytorch", "2.6", gpus=0), config) == "registry.example/pt:2.6-cpu"
    assert images.framework_image(_manifest("pytorch", "2.9", gpus=0), config) == "registry.example/pt:2.9"
    # the versions not overridden keep the built-in images
    assert images.framework_image(_manifest("pytorch", "2.5"), config) == images.DEFAULT_IMAGES["pytorch"]["2.5"].cuda
    assert images.framework_image(_manifest("jax", gpus=0), config) == "registry.example/jax:0.4"


def test_an_unknown_version_is_refused_listing_the_known_ones():
    with pytest.raises(BadInput) as err:
        images.framework_image(_manifest("pytorch", "1.13"), _config())
    text = str(err.value)
    assert "pytorch 1.13" in text and "known versions: 2.5, 2.6, 2.7, 2.8" in text and "[frameworks.pytorch]" in text
    assert err.value.code == "C104"
    with pytest.raises(BadInput, match=r"'caffe' has no image: known frameworks python, pytorch, tensorflow"):
        images.framework_image(_manifest("caffe", "1.0"), _config())


def test_the_docs_print_the_same_table():
    assert images.table_markdown() in (REPO / "docs" / "kubernetes.md").read_text()


@pytest.mark.slow  # runs the CLI in a subprocess
@pytest.mark.parametrize("sample", ["pytorch-digits", "pytorch-ddp", "pytorch-sweep"])
def test_a_local_sample_renders_for_the_cluster_without_edits(cli, dlaas_home, sample):
    """`submit --dry-run -o yaml` on the minimal profile: every object valid for 1.29 and 1.37, the
    data read from the profile's S3 store where the local store keeps it, the CPU image."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    (dlaas_home / "config.toml").write_text(MINIMAL)
    manifest = SAMPLES / sample / "manifest.yml"
    res = cli("submit", str(manifest), "--dry-run", "-o", "yaml", env={"DLAAS_AGENT_AUTOSTART": "0"})
    assert res.returncode == 0, res.stderr
    docs = [d for d in yaml.safe_load_all(res.stdout) if d]
    for doc in docs:
        for version in ("1.29.0", "1.37.0"):
            kubernetes_validate.validate(doc, version, strict=True)
    jobs = [d for d in docs if d["kind"] == "Job"]
    assert jobs
    local = yaml.safe_load(manifest.read_text())
    for job in jobs:
        pod = job["spec"]["template"]["spec"]
        learner, = pod["containers"]
        assert learner["image"] == images.DEFAULT_IMAGES["pytorch"]["2.8"].cpu  # gpus: 0, no version given
        env = {e["name"]: e.get("value") for e in learner["env"]}
        assert env["RCLONE_CONFIG_DLAAS_ENDPOINT"] == "http://192.0.2.10:9000"
        assert env["DLAAS_COMMAND"].startswith(local["framework"]["command"].split("${")[0].strip()[:10])
        loader = pod["initContainers"][0]["command"][2]
        assert "dlaas:dlaas-samples/pytorch-digits" in loader  # the bucket the local store seeds
        assert job["metadata"]["labels"][render.QUEUE_LABEL] == "team-a"
    assert "never-printed" not in res.stdout + res.stderr
