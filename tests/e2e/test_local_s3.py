"""Local scheduler with data and results in S3 (a real server on 127.0.0.1)."""
from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tests.fixtures.s3server import make_store, s3_server  # noqa: F401

from .local_helpers import WAIT_S, manifest, stop_everything

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.s3]


def test_local_runs_read_data_from_s3_and_store_results_there(dlaas_home: Path, tmp_path, cli,
                                                               s3_server):  # noqa: F811
    store = make_store(s3_server)
    tag = secrets.token_hex(3)
    data, results = f"data-{tag}", f"results-{tag}"
    store.make_bucket(data)
    store.make_bucket(results)
    store.put_bytes(data, "digits/numbers.txt", b"4 5 6\n")
    (dlaas_home / "config.toml").write_text(
        'default_profile = "cos"\n[profiles.cos]\nscheduler = "local"\nstore = "s3"\n'
        f'[profiles.cos.s3]\nendpoint_url = "{s3_server.endpoint}"\nregion = "{s3_server.region}"\n'
        f'access_key_id = "{s3_server.access_key}"\nsecret_access_key = "{s3_server.secret_key}"\n'
    )
    try:
        m = manifest(tmp_path, "s3run", data_stores=[{
            "id": "cos", "type": "s3_datastore",
            "training_data": {"container": data, "prefix": "digits/"},
            "training_results": {"container": results}}])
        res = cli("submit", str(m), "--json")
        assert res.returncode == 0, res.stderr
        rid = json.loads(res.stdout)[0]["id"]
        res = cli("wait", rid, "--timeout", str(WAIT_S), timeout=WAIT_S + 60)
        assert res.returncode == 0, res.stdout + cli("show", rid).stdout
        assert store.read_range(results, f"{rid}/model.txt").startswith(b"sum=15.0")
        log = store.read_range(results, f"{rid}/learner-1/training-log.txt")
        assert b"epoch=3 loss=0.125" in log
        assert store.stat(results, f"{rid}/_submitted_code/model.zip").size > 0
        assert json.loads(store.read_range(results, f"{rid}/run.json"))["state"] == "COMPLETED"
    finally:
        stop_everything(dlaas_home)


def test_a_manifest_connection_overrides_the_local_store(dlaas_home: Path, tmp_path, cli,
                                                         s3_server):  # noqa: F811
    store = make_store(s3_server)
    tag = secrets.token_hex(3)
    data, results = f"cdata-{tag}", f"cresults-{tag}"
    store.make_bucket(data)
    store.make_bucket(results)
    store.put_bytes(data, "numbers.txt", b"10 20\n")
    try:
        m = manifest(tmp_path, "conn", data_stores=[{
            "id": "cos", "type": "s3_datastore",
            "training_data": {"container": data}, "training_results": {"container": results},
            "connection": {"auth_url": s3_server.endpoint, "user_name": s3_server.access_key,
                           "password": s3_server.secret_key, "region": s3_server.region}}])
        res = cli("submit", str(m), "--json")  # the profile is the plain local one
        assert res.returncode == 0, res.stderr
        rid = json.loads(res.stdout)[0]["id"]
        assert cli("wait", rid, "--timeout", str(WAIT_S), timeout=WAIT_S + 60).returncode == 0, cli("show", rid).stdout
        assert store.read_range(results, f"{rid}/model.txt").startswith(b"sum=30.0")
        assert not (dlaas_home / "store" / results).exists()
        shown = cli("show", rid, "--json").stdout
        assert s3_server.secret_key not in shown
        res = cli("results", rid, str(tmp_path / "dl"))
        assert res.returncode == 0, res.stderr
        assert (tmp_path / "dl" / "model.txt").read_text().startswith("sum=30.0")
    finally:
        stop_everything(dlaas_home)
