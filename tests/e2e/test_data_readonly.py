"""A run can never change its training data: a hostile train.py against the real local agent.

The command opens data files for writing, truncates, deletes, renames, chmods and creates files
and folders under $DATA_DIR. However it goes, the bucket behind DATA_DIR (a folder of the local
store, or objects on a real S3 server and the machine's data cache) is byte-identical afterwards.
Tests here run as root, so file modes alone would not stop it: the read-only mount does, or the
run gets a private copy. Both mechanisms are driven (DLAAS_DATA_PROTECT=copy forces the fallback).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path

import pytest

from backend.engines.local import rodata
from tests.fixtures.s3server import make_store, s3_server  # noqa: F401

from .local_helpers import TINY, manifest, stop_everything

pytestmark = [pytest.mark.e2e]

HOSTILE = r'''
import errno, json, os, sys
data = os.environ["DATA_DIR"]
tried = {}
def attempt(name, fn):
    try:
        fn()
        tried[name] = "ok"
    except OSError as exc:
        tried[name] = errno.errorcode.get(exc.errno, str(exc.errno))
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(data) for f in fs)
first, second = files[0], files[-1]
def overwrite():
    with open(first, "r+b") as fh:
        fh.write(b"CLOBBERED")
attempt("overwrite", overwrite)
attempt("truncate", lambda: os.truncate(second, 0))
attempt("delete", lambda: os.remove(second))
attempt("rename", lambda: os.rename(first, first + ".moved"))
attempt("chmod", lambda: os.chmod(first, 0o777))
attempt("create", lambda: open(os.path.join(data, "planted.txt"), "w").write("mine"))
attempt("mkdir", lambda: os.mkdir(os.path.join(data, "planted-dir")))
attempt("replace-folder", lambda: os.rmdir(os.path.dirname(second)) if os.path.dirname(second) != data else None)
also = os.environ.get("ALSO_TRY")  # the same files by another path (the bucket's, the data cache's)
if also:
    for d, _, fs in os.walk(also):
        for f in fs:
            if not f.endswith(".json"):
                attempt("by-path-" + os.path.relpath(os.path.join(d, f), also), lambda p=os.path.join(d, f): open(p, "r+b").write(b"CLOBBERED"))
with open(os.path.join(os.environ["RESULT_DIR"], "tried.json"), "w") as fh:
    json.dump(tried, fh)
print("tried", json.dumps(tried, sort_keys=True))
'''


def tree_digest(root: Path) -> dict[str, str]:
    """Every file and folder under root: relative path -> kind, mode and sha256 of the bytes."""
    out: dict[str, str] = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(d, name)
            st = p.lstat()
            rel = p.relative_to(root).as_posix()
            body = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            out[rel] = f"{st.st_mode:o}:{body}"
    return out


def hostile_manifest(tmp: Path, name: str, env: dict | None = None, **fields) -> Path:
    path = manifest(tmp, name, command="python hostile.py", env=env, **fields)
    model = path.parent / "model"
    model.unlink()
    shutil.copytree(TINY / "model", model)
    (model / "hostile.py").write_text(HOSTILE)
    return path


def seed_data(folder: Path) -> None:
    (folder / "sub").mkdir(parents=True)
    (folder / "numbers.txt").write_text("1 2 3\n")
    (folder / "sub" / "weights.bin").write_bytes(os.urandom(4096))
    os.chmod(folder / "numbers.txt", 0o644)


def finished(cli, rid: str) -> dict:
    res = cli("wait", rid, "--timeout", "120")
    shown = json.loads(cli("show", rid, "--json").stdout)
    assert res.returncode == 0, shown
    return shown


@pytest.mark.parametrize("protect", ["auto", "copy"])
def test_a_hostile_run_leaves_the_folder_bucket_byte_identical(dlaas_home: Path, tmp_path, cli,
                                                               monkeypatch, protect):
    if protect == "copy":
        monkeypatch.setenv("DLAAS_DATA_PROTECT", "copy")
    else:
        monkeypatch.delenv("DLAAS_DATA_PROTECT", raising=False)
    bucket = dlaas_home / "store" / "tiny-data"
    seed_data(bucket)
    before = tree_digest(bucket)
    try:
        env = {"ALSO_TRY": str(bucket)} if protect == "auto" else None  # the bucket by its own path
        res = cli("submit", str(hostile_manifest(tmp_path, f"hostile-{protect}", env=env)), "--json")
        assert res.returncode == 0, res.stderr
        rid = json.loads(res.stdout)[0]["id"]
        shown = finished(cli, rid)
        assert shown["state"] == "COMPLETED", shown
        assert tree_digest(bucket) == before
        tried = json.loads((dlaas_home / "store" / "tiny-results" / rid / "tried.json").read_text())
        events = " ".join(e["message"] for e in shown["events"])
        mounted, why = rodata.probe()
        if protect == "auto" and mounted:
            # Root or not, every change is refused inside the run.
            assert set(tried.values()) <= {"EROFS", "EACCES", "EPERM"}, tried
            assert set(tried) >= {"overwrite", "truncate", "delete", "rename", "chmod", "create", "mkdir"}
            assert len([k for k in tried if k.startswith("by-path-")]) == 2, tried  # by absolute path
            assert "mounted read-only" in events
        else:
            # The fallback: the run changed its private copy, the bucket saw nothing of it.
            assert tried["overwrite"] == tried["delete"] == tried["create"] == "ok", tried
            assert "private copy" in events and "read-only mount is not possible" in events
    finally:
        stop_everything(dlaas_home)


@pytest.mark.slow
@pytest.mark.s3
@pytest.mark.parametrize("protect", ["auto", "copy"])
def test_a_hostile_run_on_s3_data_changes_neither_the_bucket_nor_the_cache(
        dlaas_home: Path, tmp_path, cli, s3_server, monkeypatch, protect):  # noqa: F811
    if protect == "copy":
        monkeypatch.setenv("DLAAS_DATA_PROTECT", "copy")
    else:
        monkeypatch.delenv("DLAAS_DATA_PROTECT", raising=False)
    store = make_store(s3_server)
    tag = secrets.token_hex(3)
    data, results = f"rodata-{tag}", f"roresults-{tag}"
    store.make_bucket(data)
    store.make_bucket(results)
    blob = os.urandom(4096)
    store.put_bytes(data, "d/numbers.txt", b"4 5 6\n")
    store.put_bytes(data, "d/sub/weights.bin", blob)
    (dlaas_home / "config.toml").write_text(
        'default_profile = "cos"\n[profiles.cos]\nscheduler = "local"\nstore = "s3"\n'
        f'[profiles.cos.s3]\nendpoint_url = "{s3_server.endpoint}"\nregion = "{s3_server.region}"\n'
        f'access_key_id = "{s3_server.access_key}"\nsecret_access_key = "{s3_server.secret_key}"\n'
    )
    try:
        objects = dlaas_home / "cache" / "data" / "objects"
        # With the mount, even a path straight into the cache is read-only to the run. (A private
        # copy protects the bucket only: without namespaces, root can write anywhere it names.)
        env = {"ALSO_TRY": str(objects)} if protect == "auto" else None
        m = hostile_manifest(tmp_path, f"s3hostile-{protect}", env=env, data_stores=[{
            "id": "cos", "type": "s3_datastore", "training_data": {"container": data, "prefix": "d/"},
            "training_results": {"container": results}}])
        res = cli("submit", str(m), "--json")
        assert res.returncode == 0, res.stderr
        rid = json.loads(res.stdout)[0]["id"]
        shown = finished(cli, rid)
        assert shown["state"] == "COMPLETED", shown
        assert store.read_range(data, "d/numbers.txt") == b"4 5 6\n"
        assert store.read_range(data, "d/sub/weights.bin") == blob
        assert sorted(o.key for o in store.iter_objects(data, "d/")) == ["d/numbers.txt", "d/sub/weights.bin"]
        # The cache's copies (hard-linked into DATA_DIR when mounted) are intact too.
        cached = sorted(p.read_bytes() for p in (dlaas_home / "cache" / "data" / "objects").rglob("*")
                        if p.is_file() and not p.name.endswith(".json"))
        assert cached == sorted([b"4 5 6\n", blob])
        tried = json.loads(store.read_range(results, f"{rid}/tried.json"))
        if protect == "auto" and rodata.probe()[0]:
            assert set(tried.values()) <= {"EROFS", "EACCES", "EPERM"}, tried
            assert len([k for k in tried if k.startswith("by-path-")]) == 2, tried
        else:
            assert tried["overwrite"] == tried["delete"] == "ok", tried
    finally:
        stop_everything(dlaas_home)
