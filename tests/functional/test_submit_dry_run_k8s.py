"""`submit --dry-run -o yaml` on a kubernetes profile prints the cluster objects, needing no cluster."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

# Each test runs the CLI in a subprocess: a second or more each (make test-fast leaves them out).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "pytorch-digits" / "manifest.yml"
CONFIG = """
[profiles.lab]
scheduler = "kubernetes"
store = "s3"
kubernetes = { namespace = "team-a", queue = "team-a" }
[profiles.lab.s3]
endpoint_url = "http://127.0.0.1:9"
access_key_id = "AKIDEXAMPLE"
secret_access_key = "not-to-be-printed"

[frameworks.pytorch]
"2.13" = { image = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime" }
"""


def test_kubernetes_dry_run_prints_the_objects_and_no_secret(cli, dlaas_home):
    (dlaas_home / "config.toml").write_text(CONFIG)
    res = cli("--profile", "lab", "submit", str(SAMPLE), "--dry-run", "-o", "yaml",
              env={"DLAAS_AGENT_AUTOSTART": "0"})
    assert res.returncode == 0, res.stderr
    docs = [d for d in yaml.safe_load_all(res.stdout) if d]
    kinds = [d["kind"] for d in docs]
    assert "Job" in kinds
    job = next(d for d in docs if d["kind"] == "Job")
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert "not-to-be-printed" not in res.stdout and "not-to-be-printed" not in res.stderr


def test_local_dry_run_prints_the_expanded_manifests(cli):
    sweep = REPO / "samples" / "pytorch-sweep" / "manifest.yml"
    res = cli("submit", str(sweep), "--dry-run", "-o", "yaml")
    assert res.returncode == 0, res.stderr
    docs = [d for d in yaml.safe_load_all(res.stdout) if d]
    assert len(docs) == 12 and all("sweep" not in d for d in docs)


def test_kubernetes_refuses_what_only_the_local_agent_schedules(cli, dlaas_home, tmp_path):
    (dlaas_home / "config.toml").write_text(CONFIG)
    doc = yaml.safe_load(SAMPLE.read_text())
    doc.update(depends_on=["training-ab12cd34"], max_retries=2, gpus=1, gpu_memory="20GiB", share=True)
    manifest = tmp_path / "manifest.yml"
    manifest.write_text(yaml.safe_dump(doc))
    env = {"DLAAS_AGENT_AUTOSTART": "0"}
    res = cli("--profile", "lab", "submit", str(manifest), "--dry-run", env=env)
    assert res.returncode == 2
    assert "depends_on, max_retries, gpu_memory, share work on local profiles only" in res.stderr
    res = cli("--profile", "lab", "submit", str(SAMPLE), "--dry-run", "--hold", env=env)
    assert res.returncode == 2 and "--after, --hold and --begin work on local profiles only" in res.stderr
