"""Figures for the Kubernetes engine's pure parts: rendering a 100-run sweep and mapping cluster
objects onto run states for 10,000 runs (what one sync of a big namespace does without the HTTP).

Each figure is printed next to its target and an anchor measured in the same run on this machine:
  - rendering 100 runs (Job + ConfigMap + Secret) vs `yaml.safe_dump_all` of the same objects (what --dry-run prints);
  - observing 10,000 (Job, Workload, Pod) triples vs `json.loads` of the same objects (reading the lists).
Run: `.venv/bin/python bench/bench_k8s.py`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402

from backend.config import parse_config  # noqa: E402
from backend.engines.kubernetes import render, states  # noqa: E402
from _common import row, timed  # noqa: E402  (bench/ is on sys.path when run as a script)
from backend.manifest.model import Manifest  # noqa: E402

CONFIG = """
[profiles.lab]
scheduler = "kubernetes"
store = "s3"
kubernetes = { namespace = "team-a", queue = "team-a" }
s3 = { endpoint_url = "http://s3.example", access_key_id = "AK", secret_access_key = "SK" }
[frameworks.pytorch]
"2.5" = { image = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime" }
"""


def main() -> int:
    config = parse_config(CONFIG, "bench.toml")
    profile = config.profile("lab")
    manifest = Manifest.model_validate({
        "name": "bench", "gpus": 1, "gpu_type": "H100", "memory": "8GiB", "max_duration": "2h",
        "data_stores": [{"type": "s3_datastore", "training_data": {"container": "d"}, "training_results": {"container": "r"}}],
        "framework": {"name": "pytorch", "version": "2.5", "command": "python train.py"},
    })
    ids = [f"training-{i:08d}" for i in range(100)]
    objs: list = []

    def render_all() -> None:
        objs.clear()
        for run_id in ids:
            objs.extend(render.render_submission(manifest, run_id, profile, config, user="bench", params={"lr": 0.1}))

    t_render = timed(render_all)
    t_dump = timed(lambda: yaml.safe_dump_all(objs))
    row("render 100 runs (Job + ConfigMap + Secret)", t_render, "s", "< 0.5 s", f"yaml dump of them {t_dump:.3f} s")

    job = objs[0]
    job["spec"]["suspend"] = False
    wl = {"status": {"conditions": [{"type": "QuotaReserved", "status": "True"}, {"type": "Admitted", "status": "True"}]}}
    pod = {"metadata": {"name": "p", "creationTimestamp": "2026-11-27T10:00:00Z"}, "spec": {"nodeName": "n1"},
           "status": {"conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-27T10:00:01Z"}],
                      "initContainerStatuses": [{"name": "loader", "state": {"terminated": {"exitCode": 0}}}],
                      "containerStatuses": [{"name": "learner", "state": {"running": {"startedAt": "2026-11-27T10:00:09Z"}}}]}}
    triples = [(job, wl, [pod])] * 10_000
    t_obs = timed(lambda: [states.observe(j, w, p) for j, w, p in triples])
    blob = json.dumps({"items": [job] * 10_000})
    t_json = timed(lambda: json.loads(blob))
    row("observe 10,000 runs (Job + Workload + Pod)", t_obs, "s", "< 1 s", f"json.loads of 10,000 Jobs {t_json:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
