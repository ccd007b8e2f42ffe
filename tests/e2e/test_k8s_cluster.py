"""The Kubernetes engine against a REAL cluster with Kueue: runs only when DLAAS_E2E_KUBECONFIG is set.

Nothing here has run yet (no cluster is reachable where this was written); docs/kubernetes.md says
how to bring up kind + Kueue and what these tests need:

  DLAAS_E2E_KUBECONFIG   kubeconfig of the cluster (context: DLAAS_E2E_CONTEXT, optional)
  DLAAS_E2E_NAMESPACE    a namespace prepared with `dlaas-tui cluster setup` (default dlaas-e2e)
  DLAAS_E2E_QUEUE        its LocalQueue (default dlaas-e2e)
  DLAAS_E2E_S3_ENDPOINT  an S3 endpoint reachable from BOTH this machine and the pods
  DLAAS_E2E_S3_KEY / DLAAS_E2E_S3_SECRET   its keys;  DLAAS_E2E_BUCKET  a bucket for data and results
  DLAAS_E2E_IMAGE        the learner image (default python:3.12-slim)
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.k8s_cluster, pytest.mark.slow]

if not os.environ.get("DLAAS_E2E_KUBECONFIG"):
    pytest.skip("DLAAS_E2E_KUBECONFIG is not set: no real cluster to test against", allow_module_level=True)

NS = os.environ.get("DLAAS_E2E_NAMESPACE", "dlaas-e2e")
QUEUE = os.environ.get("DLAAS_E2E_QUEUE", "dlaas-e2e")
BUCKET = os.environ.get("DLAAS_E2E_BUCKET", "dlaas-e2e")


def _need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set")
    return value


@pytest.fixture
def backend(dlaas_home: Path):
    from backend.facade import open_backend

    context = os.environ.get("DLAAS_E2E_CONTEXT")
    (dlaas_home / "config.toml").write_text(f"""
default_profile = "e2e"
[profiles.e2e]
scheduler = "kubernetes"
store = "s3"
[profiles.e2e.kubernetes]
kubeconfig = "{os.environ['DLAAS_E2E_KUBECONFIG']}"
namespace = "{NS}"
queue = "{QUEUE}"
{f'context = "{context}"' if context else ''}
ttl_seconds_after_finished = 600
startup_allowance_seconds = 600
termination_grace_seconds = 30
[profiles.e2e.s3]
endpoint_url = "{_need('DLAAS_E2E_S3_ENDPOINT')}"
access_key_id = "{_need('DLAAS_E2E_S3_KEY')}"
secret_access_key = "{_need('DLAAS_E2E_S3_SECRET')}"
addressing_style = "path"
[frameworks.python]
"3" = {{ image = "{os.environ.get('DLAAS_E2E_IMAGE', 'python:3.12-slim')}" }}
""")
    b = open_backend()
    if not b.store.bucket_exists(BUCKET):
        b.store.make_bucket(BUCKET)
    yield b
    b.close()


def _manifest(tmp: Path, command: str) -> Path:
    (tmp / "model").mkdir(exist_ok=True)
    (tmp / "model" / "train.py").write_text(
        "import time\nfor e in range(1, 4):\n    print(f'epoch={e} loss={1/e:.3f}', flush=True)\n    time.sleep(1)\n")
    path = tmp / "manifest.yml"
    path.write_text(f"""name: e2e
cpus: 0.5
memory: 256MiB
max_duration: 10m
data_stores:
  - id: s3
    type: s3_datastore
    training_data: {{container: {BUCKET}}}
    training_results: {{container: {BUCKET}}}
framework: {{name: python, command: "{command}"}}
""")
    return path


def _until(engine, run_id, pred, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engine.sync_once()
        run = engine.get_run(run_id)
        if pred(run):
            return run
        time.sleep(2)
    pytest.fail(f"{run_id} still {engine.get_run(run_id).state} after {timeout} s: {engine.events(run_id)}")


def test_a_run_goes_through_kueue_to_completed_with_logs_and_results(backend, tmp_path):
    from backend.runs import RunState, SubmitRequest

    engine = backend.engine
    [run] = engine.submit(SubmitRequest([_manifest(tmp_path, "python train.py")]))
    done = _until(engine, run.id, lambda r: r.state.terminal)
    assert done.state == RunState.COMPLETED, done.message
    states = [e.state for e in engine.events(run.id) if e.state]
    assert states[0] == RunState.QUEUED and states[-1] == RunState.COMPLETED and RunState.PROCESSING in states
    lines = list(engine.logs(run.id))
    assert lines[0].startswith("dlaas: gpus:") and any("loss=" in ln for ln in lines)
    assert backend.store.read_range(BUCKET, f"{run.id}/learner-0/training-log.txt")
    assert backend.store.read_range(BUCKET, f"{run.id}/run.json")


def test_halt_stores_the_log_within_the_grace_period(backend, tmp_path):
    from backend.runs import RunState, SubmitRequest

    engine = backend.engine
    [run] = engine.submit(SubmitRequest([_manifest(tmp_path, "python -c 'import time; print(1, flush=True); time.sleep(600)'")]))
    _until(engine, run.id, lambda r: r.state == RunState.PROCESSING)
    assert engine.halt(run.id).state == RunState.HALTED
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            backend.store.read_range(BUCKET, f"{run.id}/learner-0/training-log.txt")
            return
        except Exception:
            time.sleep(3)
    pytest.fail("the halted run's log never reached the results bucket")


def test_queue_positions_answer(backend):
    from backend.engines.kubernetes import kueue

    engine = backend.engine
    positions = kueue.queue_positions(engine.api, NS, QUEUE)
    assert positions.source  # visibility/v1beta2, visibility/v1beta1 or workloads/...: whichever the cluster serves
