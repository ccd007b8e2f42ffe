"""`dlaas-tui cluster setup` and the dry-run rendering the submit command prints for kubernetes profiles."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.fixtures import k8s_objects as fx


def _write_config(home, text):
    (home / "config.toml").write_text(text)


@pytest.mark.slow  # runs the CLI in a subprocess
def test_cluster_setup_prints_yaml_for_kubectl(cli, dlaas_home):
    _write_config(dlaas_home, fx.CONFIG_TOML + "\n[priorities]\nurgent = 5000\n")
    out = cli("--profile", "lab", "cluster", "setup", "--tier", "standard", "--gpu-product", "NVIDIA-H100-80GB-HBM3")
    assert out.returncode == 0, out.stderr
    docs = list(yaml.safe_load_all(out.stdout))
    kinds = [d["kind"] for d in docs]
    assert kinds[:5] == ["Namespace", "ResourceFlavor", "ResourceFlavor", "ClusterQueue", "LocalQueue"]
    cq = docs[3]
    gpu = next(r for g in cq["spec"]["resourceGroups"] for r in g["flavors"][0]["resources"] if r["name"] == "nvidia.com/gpu")
    assert gpu["nominalQuota"] == 8  # the standard tier
    assert docs[4]["metadata"] == {"name": "team-a-queue", "namespace": "team-a"}
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "WorkloadPriorityClass"} == {"urgent", "high", "normal", "low"}
    assert docs[1]["spec"]["nodeLabels"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


@pytest.mark.slow  # runs the CLI in a subprocess
def test_cluster_setup_gpus_flag_and_bad_tier(cli, dlaas_home):
    _write_config(dlaas_home, fx.CONFIG_TOML)
    out = cli("cluster", "setup", "--gpus", "3")
    assert out.returncode == 0
    assert "nominalQuota: 3" in out.stdout
    bad = cli("cluster", "setup", "--tier", "platinum")
    assert bad.returncode == 2 and "platinum" in bad.stderr and "Traceback" not in bad.stderr


def test_cluster_setup_does_not_import_the_kubernetes_client(dlaas_home):
    _write_config(dlaas_home, fx.CONFIG_TOML)
    code = ("import sys; from dlaas_tui.cli import main; rc = main(['cluster', 'setup', '--gpus', '1']); "
            "assert 'kubernetes' not in sys.modules, 'kubernetes imported'; sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_dry_run_yaml_for_the_submit_command():
    from backend.engines.kubernetes.render import dry_run_yaml

    text = dry_run_yaml(fx.manifest(learners=2), "training-dryrun01", fx.profile(), fx.config(), user="ada",
                        experiment="exp 1", params={"lr": 0.1})
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs] == ["Job", "ConfigMap", "Secret", "Service"]
    assert "s3cr3t" not in text
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for d in docs:
        kubernetes_validate.validate(d, "1.33.0", strict=True)


def test_facade_dry_run_yaml_expands_a_sweep(dlaas_home, tmp_path):
    from backend.facade import kubernetes_dry_run_yaml, open_backend

    _write_config(dlaas_home, fx.CONFIG_TOML)
    manifest = tmp_path / "m.yml"
    manifest.write_text("""name: sweep
gpus: 1
data_stores:
  - {id: s, type: s3_datastore, training_data: {container: d}, training_results: {container: r}}
framework: {name: pytorch, version: "2.5", command: "python train.py --lr ${lr}"}
sweep: {method: grid, parameters: {lr: {values: [0.1, 0.01]}}}
""")
    text = kubernetes_dry_run_yaml(open_backend("lab"), [manifest], experiment="e1")
    jobs = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "Job"]
    assert len(jobs) == 2
    commands = sorted(next(e["value"] for e in j["spec"]["template"]["spec"]["containers"][0]["env"]
                           if e["name"] == "DLAAS_COMMAND") for j in jobs)
    assert commands == ["python train.py --lr 0.01", "python train.py --lr 0.1"]
    assert len({j["metadata"]["name"] for j in jobs}) == 2


@pytest.mark.slow  # runs the CLI in a subprocess
def test_cluster_setup_kueue_api_flag(cli, dlaas_home):
    _write_config(dlaas_home, fx.CONFIG_TOML)
    out = cli("cluster", "setup", "--gpus", "1", "--kueue-api", "v1beta1")
    assert out.returncode == 0, out.stderr
    versions = {d["apiVersion"] for d in yaml.safe_load_all(out.stdout) if d["apiVersion"].startswith("kueue")}
    assert versions == {"kueue.x-k8s.io/v1beta1"}


@pytest.mark.slow  # runs the CLI in a subprocess
def test_cluster_setup_can_leave_the_shared_priority_classes_alone(cli, dlaas_home):
    _write_config(dlaas_home, fx.CONFIG_TOML)
    out = cli("cluster", "setup", "--gpus", "1", "--no-priority-classes")
    assert out.returncode == 0, out.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(out.stdout)]
    assert "WorkloadPriorityClass" not in kinds and "ClusterQueue" in kinds
