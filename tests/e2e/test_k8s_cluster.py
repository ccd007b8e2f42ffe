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


def _write_config(dlaas_home: Path, extra_kubernetes: str = "", extra: str = "") -> None:
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
{extra_kubernetes}
[profiles.e2e.s3]
endpoint_url = "{_need('DLAAS_E2E_S3_ENDPOINT')}"
access_key_id = "{_need('DLAAS_E2E_S3_KEY')}"
secret_access_key = "{_need('DLAAS_E2E_S3_SECRET')}"
addressing_style = "path"
[frameworks.python]
"3" = {{ image = "{os.environ.get('DLAAS_E2E_IMAGE', 'python:3.12-slim')}" }}
{extra}
""")


def _open(dlaas_home: Path, extra_kubernetes: str = "", extra: str = ""):
    from backend.facade import open_backend

    _write_config(dlaas_home, extra_kubernetes, extra)
    b = open_backend()
    if not b.store.bucket_exists(BUCKET):
        b.store.make_bucket(BUCKET)
    return b


@pytest.fixture
def backend(dlaas_home: Path):
    from backend.facade import open_backend

    _write_config(dlaas_home)
    b = open_backend()
    if not b.store.bucket_exists(BUCKET):
        b.store.make_bucket(BUCKET)
    yield b
    b.close()


def _manifest(tmp: Path, command: str, *, version: str | None = None, max_duration: str = "10m") -> Path:
    (tmp / "model").mkdir(exist_ok=True)
    (tmp / "model" / "train.py").write_text(
        "import time\nfor e in range(1, 4):\n    print(f'epoch={e} loss={1/e:.3f}', flush=True)\n    time.sleep(1)\n")
    path = tmp / "manifest.yml"
    path.write_text(f"""name: e2e
cpus: 0.5
memory: 256MiB
max_duration: {max_duration}
data_stores:
  - id: s3
    type: s3_datastore
    training_data: {{container: {BUCKET}}}
    training_results: {{container: {BUCKET}}}
framework: {{name: python, {f'version: "{version}", ' if version else ''}command: "{command}"}}
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


# -- what a real cluster does that a mock cannot show (issue 24: 1, 4, 5, 6, 10; issue 13) --------

def _job_exists(engine, run_id: str) -> bool:
    from backend.engines.kubernetes.client import KubeNotFound, jobs_path

    try:
        engine.api.request("GET", jobs_path(NS, run_id))
        return True
    except KubeNotFound:
        return False


def test_the_agents_watcher_lists_once_and_keeps_three_watches_whatever_the_visibility_api_does(backend):
    import threading

    from backend.engines.kubernetes import keeper

    engine = backend.engine
    applied = []  # one entry per re-application of the caches (a change, or the positions timer)
    apply = engine.apply

    def counting_apply(*args, **kwargs):
        applied.append(time.monotonic())
        return apply(*args, **kwargs)

    engine.apply = counting_apply
    before = {t.name for t in threading.enumerate()}
    w = keeper._Watcher(engine)
    w.start()
    try:
        deadline = time.monotonic() + 120
        while not engine.ledger.has_mark("", keeper.SYNCED) and time.monotonic() < deadline:
            time.sleep(1)
        assert engine.ledger.has_mark("", keeper.SYNCED)
        # A few position refreshes, whatever the visibility API answers (200, 403, 503, 429).
        seen = len(applied)
        deadline = time.monotonic() + 120
        while len(applied) < seen + 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(applied) >= seen + 3, f"{len(applied) - seen} refreshes in 120 s"
        extra = [t for t in threading.enumerate() if t.name.startswith("watch-") and t.name not in before]
        assert len(extra) <= 3
    finally:
        w.stop.set()
        w.kick.set()


def test_max_duration_on_the_cluster_is_c203_after_the_pods_have_stored(dlaas_home, tmp_path):
    from backend.runs import RunState, SubmitRequest

    b = _open(dlaas_home, "startup_allowance_seconds = 0")
    try:
        engine = b.engine
        [run] = engine.submit(SubmitRequest([_manifest(tmp_path, "python -c 'import time; print(1, flush=True); "
                                                                 "time.sleep(600)'", max_duration="20s")]))
        done = _until(engine, run.id, lambda r: r.state.terminal)
        assert done.state == RunState.FAILED and done.error_code == "C203", done.message
        assert b.store.read_range(BUCKET, f"{run.id}/learner-0/training-log.txt")  # stored before the end
    finally:
        b.close()


def test_an_evicted_pod_is_replaced_and_the_run_completes(backend, tmp_path):
    """The Eviction API marks the pod DisruptionTarget; podFailurePolicy ignores it."""
    from backend.engines.kubernetes import logs
    from backend.runs import RunState, SubmitRequest

    engine = backend.engine
    [run] = engine.submit(SubmitRequest([_manifest(tmp_path, "python -c 'import time; print(1, flush=True); "
                                                             "time.sleep(40)'")]))
    _until(engine, run.id, lambda r: r.state == RunState.PROCESSING)
    pod = logs.learner_pods(engine.api, NS, run.id)[-1]["metadata"]["name"]
    engine.api.request("POST", f"/api/v1/namespaces/{NS}/pods/{pod}/eviction", body={
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": NS}})
    done = _until(engine, run.id, lambda r: r.state.terminal, timeout=900)
    assert done.state == RunState.COMPLETED, done.message
    assert len(logs.learner_pods(engine.api, NS, run.id)) >= 1


def test_an_image_that_does_not_exist_fails_the_run_with_the_clusters_reason(dlaas_home, tmp_path):
    from backend.runs import RunState, SubmitRequest

    b = _open(dlaas_home, "start_failure_seconds = 30",
              extra='"0.0" = { image = "registry.invalid/dlaas-e2e/none:0" }')
    try:
        engine = b.engine
        [run] = engine.submit(SubmitRequest([_manifest(tmp_path, "python train.py", version="0.0")]))
        done = _until(engine, run.id, lambda r: r.state.terminal)
        assert done.state == RunState.FAILED and done.error_code == "S302", done.message
        assert "registry.invalid" in done.message or "Err" in done.message
        deadline = time.monotonic() + 60
        while _job_exists(engine, run.id) and time.monotonic() < deadline:
            time.sleep(2)
        assert not _job_exists(engine, run.id)  # deleted: Kueue has its quota back
    finally:
        b.close()


def test_a_run_whose_job_the_ttl_removed_while_no_agent_ran_is_completed(dlaas_home, tmp_path, monkeypatch):
    from backend.runs import RunState, SubmitRequest

    monkeypatch.setenv("DLAAS_AGENT_AUTOSTART", "0")
    b = _open(dlaas_home, "ttl_seconds_after_finished = 5")
    try:
        engine = b.engine
        [run] = engine.submit(SubmitRequest([_manifest(tmp_path, "python train.py")]))
        deadline = time.monotonic() + 600
        while _job_exists(engine, run.id) and time.monotonic() < deadline:
            time.sleep(3)  # nobody syncs: the Job runs, finishes and its TTL deletes it
        assert not _job_exists(engine, run.id)
        engine.sync_once()
        done = engine.get_run(run.id)
        assert done.state == RunState.COMPLETED and done.error_code is None, done.message
    finally:
        b.close()


def test_the_bundled_sample_runs_unedited_from_a_minimal_profile(dlaas_home):
    """Issue 13: a profile of `kubernetes = {context, namespace, queue}` and `s3` only; the sample's
    data comes from the profile's S3 store; the image from the built-in table (pytorch, CPU)."""
    from backend.facade import open_backend
    from backend.runs import RunState, SubmitRequest

    context = os.environ.get("DLAAS_E2E_CONTEXT")
    kubeconfig = os.environ["DLAAS_E2E_KUBECONFIG"]
    (dlaas_home / "config.toml").write_text(f"""
default_profile = "e2e"
[profiles.e2e]
kubernetes = {{ {f'context = "{context}", ' if context else ''}kubeconfig = "{kubeconfig}", namespace = "{NS}", queue = "{QUEUE}" }}
s3 = {{ endpoint_url = "{_need('DLAAS_E2E_S3_ENDPOINT')}", access_key_id = "{_need('DLAAS_E2E_S3_KEY')}", secret_access_key = "{_need('DLAAS_E2E_S3_SECRET')}" }}
""")
    b = open_backend()
    try:
        sample = Path(__file__).resolve().parents[2] / "samples" / "pytorch-digits" / "manifest.yml"
        [run] = b.engine.submit(SubmitRequest([sample]))
        done = _until(b.engine, run.id, lambda r: r.state.terminal, timeout=1800)  # a large image to pull
        assert done.state == RunState.COMPLETED, done.message
        assert b.store.read_range("dlaas-results", f"{run.id}/metrics.jsonl")
    finally:
        b.close()
