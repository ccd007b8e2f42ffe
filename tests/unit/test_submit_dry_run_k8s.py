"""`submit --dry-run -o yaml` on a kubernetes profile prints the cluster objects, needing no cluster."""
from __future__ import annotations

from pathlib import Path

import yaml

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
