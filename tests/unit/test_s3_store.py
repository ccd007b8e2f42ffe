"""S3Store against a real S3 server (weed mini, else rclone serve s3) on 127.0.0.1.

These run on the session-scoped `s3_server`; each test gets its own bucket.
"""
from __future__ import annotations

import datetime as dt
import os
import threading
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backend.errors import BadInput, ConfigError, NotFound, StoreError
from backend.store.base import ObjectInfo, Transfer, TransferCancelled
from tests.fixtures.s3server import S3Server, make_store, s3_server  # noqa: F401

pytestmark = pytest.mark.s3
MiB = 1024 * 1024


@pytest.fixture
def store(s3_server: S3Server):
    st = make_store(s3_server)
    yield st
    st.close()


@pytest.fixture
def bucket(store) -> str:
    name = "t-" + uuid.uuid4().hex[:12]
    store.make_bucket(name)
    return name


def _fill(store, bucket: str, keys: list[str], body: bytes = b"x") -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.put_bytes(bucket, k, body), keys))


# -- buckets and single objects --------------------------------------------------------------------
def test_buckets_roundtrip(store, bucket):
    assert bucket in [b.name for b in store.list_buckets()]
    assert store.bucket_exists(bucket)
    assert not store.bucket_exists("no-such-" + bucket)
    store.put_bytes(bucket, "k", b"v")
    with pytest.raises(BadInput, match="not empty"):
        store.remove_bucket(bucket)
    assert store.delete(bucket, ["k"]) == 1
    store.remove_bucket(bucket)
    assert not store.bucket_exists(bucket)
    with pytest.raises(BadInput, match="invalid bucket name"):
        store.make_bucket("Bad_Name")


def test_put_stat_read_range(store, bucket):
    info = store.put_bytes(bucket, "dir/hello.txt", b"hello world")
    assert info.size == 11 and info.etag
    st = store.stat(bucket, "dir/hello.txt")
    assert (st.size, st.etag) == (11, info.etag)
    assert store.read_range(bucket, "dir/hello.txt") == b"hello world"
    assert store.read_range(bucket, "dir/hello.txt", 6) == b"world"
    assert store.read_range(bucket, "dir/hello.txt", 0, 5) == b"hello"
    assert store.read_range(bucket, "dir/hello.txt", 50, 5) == b""
    assert store.uri(bucket, "dir/hello.txt") == f"s3://{bucket}/dir/hello.txt"


def test_missing_object_bucket_and_folder_keys(store, bucket, s3_server):
    store.put_bytes(bucket, "data/part-0", b"1")
    with pytest.raises(NotFound, match=f"s3://{bucket}/nope not found"):
        store.stat(bucket, "nope")
    with pytest.raises(NotFound, match="bucket 'no-such-bkt' does not exist at " + s3_server.endpoint):
        store.list("no-such-bkt")
    with pytest.raises(NotFound, match="no-such-bkt"):
        store.stat("no-such-bkt", "k")
    with pytest.raises(BadInput, match="is a folder"):
        store.stat(bucket, "data")
    with pytest.raises(BadInput, match="is a folder"):
        store.get_file(bucket, "data/", Path("/tmp/never-written"))
    with pytest.raises(BadInput, match="'/' names a folder"):
        store.put_bytes(bucket, "data/", b"")
    with pytest.raises(BadInput, match=r"'\.\.'"):
        store.put_bytes(bucket, "a/../b", b"")


# -- clear errors ----------------------------------------------------------------------------------
def test_wrong_secret_is_rejected_by_the_server(s3_server, bucket):
    bad = make_store(s3_server, secret_access_key="not-the-secret")
    msg = f"access denied by {s3_server.endpoint}: check the access key and secret"
    for call in (bad.list_buckets, lambda: bad.list(bucket), lambda: bad.put_bytes(bucket, "k", b"v"),
                 lambda: bad.stat(bucket, "k"), lambda: bad.bucket_exists(bucket)):
        with pytest.raises(StoreError) as err:
            call()
        assert str(err.value) == msg
        assert "not-the-secret" not in str(err.value)


def test_unknown_access_key(s3_server):
    with pytest.raises(StoreError, match="check the access key and secret"):
        make_store(s3_server, access_key_id="AKNOBODY").list_buckets()


def test_unreachable_endpoint_is_named(s3_server):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    st = make_store(s3_server, endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1, connect_timeout=1)
    with pytest.raises(StoreError, match=f"cannot reach the S3 endpoint http://127.0.0.1:{port}"):
        st.list("anything")


def test_clock_skew_says_check_the_clock(store, bucket, monkeypatch, s3_server):
    if s3_server.kind != "weed":
        pytest.skip("rclone answers a skewed clock with a plain AccessDenied")
    import botocore.auth

    real = botocore.auth.get_current_datetime
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: real(*a, **k) - dt.timedelta(hours=3))
    with pytest.raises(StoreError, match="check the clock"):
        store.list(bucket)


def test_credential_settings_are_checked_and_never_shown(s3_server):
    from backend.config import S3Settings
    from backend.store.s3 import S3Store

    with pytest.raises(ConfigError, match="secret_access_key is missing"):
        S3Store(S3Settings(endpoint_url=s3_server.endpoint, access_key_id="AK"))
    with pytest.raises(ConfigError, match="not both"):
        S3Store(S3Settings(aws_profile="p", access_key_id="AK", secret_access_key="SK"))
    st = make_store(s3_server, endpoint_url=s3_server.endpoint.replace("http://", "http://user:pw@"))
    assert st.describe() == s3_server.endpoint
    assert s3_server.secret_key not in repr(st.settings)


def test_aws_profile_and_missing_credentials(s3_server, tmp_path, monkeypatch, bucket):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[lab]\naws_access_key_id = {s3_server.access_key}\naws_secret_access_key = {s3_server.secret_key}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    via_profile = make_store(s3_server, access_key_id=None, secret_access_key=None, aws_profile="lab")
    assert bucket in [b.name for b in via_profile.list_buckets()]
    with pytest.raises(ConfigError, match="AWS profile not found"):
        make_store(s3_server, access_key_id=None, secret_access_key=None, aws_profile="nope").list_buckets()
    creds.write_text("")
    with pytest.raises(StoreError, match="no S3 credentials"):
        make_store(s3_server, access_key_id=None, secret_access_key=None).list_buckets()


# -- listing ---------------------------------------------------------------------------------------
def test_one_level_pagination_and_start_after(store, bucket):
    files = [f"p/f{i:02d}" for i in range(23)]
    folders = [f"p/d{i}/x" for i in range(3)]
    _fill(store, bucket, files + folders + ["other/y"])
    seen: list[ObjectInfo] = []
    token = None
    pages = 0
    while True:
        page = store.list(bucket, "p/", page_size=7, token=token)
        assert len(page.items) <= 7
        seen += page.items
        pages += 1
        token = page.next_token
        if token is None:
            break
    assert pages == 4
    keys = [i.key for i in seen]
    assert keys == sorted(["p/d0/", "p/d1/", "p/d2/", *files])
    assert [i.key for i in seen if i.is_prefix] == ["p/d0/", "p/d1/", "p/d2/"]
    jumped = store.list(bucket, "p/", start_after="p/f19")
    assert [i.key for i in jumped.items] == ["p/f20", "p/f21", "p/f22"]
    assert [i.key for i in store.list(bucket).items] == ["other/", "p/"]


@pytest.mark.slow
def test_delete_1500_keys_in_batches(store, bucket):
    keys = [f"many/{i:05d}" for i in range(1500)]
    _fill(store, bucket, keys)
    calls = []
    store.client.meta.events.register("before-call.s3.DeleteObjects", lambda **kw: calls.append(1))
    listed = [o.key for o in store.iter_objects(bucket, "many/")]
    assert listed == keys  # iter_objects followed the continuation token past 1000
    assert store.delete(bucket, listed) == 1500
    assert len(calls) == 2
    assert list(store.iter_objects(bucket, "many/")) == []


# -- transfers -------------------------------------------------------------------------------------
def _random_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_multipart_upload_and_download_progress_sums_to_size(s3_server, tmp_path):
    st = make_store(s3_server, multipart_threshold_mb=5, multipart_chunksize_mb=5, max_concurrency=4)
    bucket = "mp-" + uuid.uuid4().hex[:10]
    st.make_bucket(bucket)
    size = 21 * MiB + 123
    src = _random_file(tmp_path / "big.bin", size)
    threads = set()
    up = Transfer(on_update=lambda t: threads.add(threading.get_ident()))
    info = st.put_file(src, bucket, "big.bin", transfer=up)
    assert info.size == size
    if s3_server.kind == "weed":  # rclone's ETags do not show the part count
        assert info.etag.endswith("-5")  # five parts: it really went multipart
    assert (up.done, up.total, up.files_done) == (size, size, 1)
    down = Transfer()
    out = st.get_file(bucket, "big.bin", tmp_path / "back.bin", transfer=down)
    assert out.read_bytes() == src.read_bytes()
    assert (down.done, down.total) == (size, size)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("back.bin.")]  # no temp left


def test_cancelled_multipart_upload_leaves_nothing(s3_server, tmp_path):
    st = make_store(s3_server, multipart_threshold_mb=5, multipart_chunksize_mb=5, max_concurrency=2)
    bucket = "cx-" + uuid.uuid4().hex[:10]
    st.make_bucket(bucket)
    src = _random_file(tmp_path / "big.bin", 30 * MiB)

    def cancel_midway(t: Transfer) -> None:
        if t.done >= 6 * MiB:
            t.cancel()

    tr = Transfer(on_update=cancel_midway)
    with pytest.raises(TransferCancelled):
        st.put_file(src, bucket, "big.bin", transfer=tr)
    assert tr.done < 30 * MiB
    with pytest.raises(NotFound):
        st.stat(bucket, "big.bin")
    uploads = st.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u for u in uploads if u["Key"] == "big.bin"] == []


def test_presigned_get_is_fetchable(store, bucket):
    store.put_bytes(bucket, "share/me.txt", b"shared bytes")
    url = store.url(bucket, "share/me.txt", expires_s=120)
    assert url.startswith("http://127.0.0.1:") and "X-Amz-Signature" in url
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"shared bytes"
    with pytest.raises(BadInput):
        store.url(bucket, "share/me.txt", expires_s=0)


def test_folder_put_and_get_roundtrip(store, bucket, tmp_path):
    src = tmp_path / "src"
    expected = {}
    for i in range(40):
        rel = f"sub{i % 3}/file{i}.txt" if i % 2 else f"file{i}.txt"
        _random_file(src / rel, 100 + i)
        expected[rel] = (src / rel).read_bytes()
    calls = []
    store.client.meta.events.register("before-call.s3.*", lambda event_name, **kw: calls.append(event_name))
    up = Transfer()
    assert store.put_folder(src, bucket, "run1", transfer=up) == 40
    assert (up.files_done, up.done) == (40, up.total)
    calls.clear()
    down = Transfer()
    dest = tmp_path / "dest"
    assert store.get_prefix(bucket, "run1/", dest, transfer=down) == 40
    got = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert got == expected
    assert (down.files_done, down.done, down.total) == (40, down.total, sum(len(v) for v in expected.values()))
    assert not [c for c in calls if c.endswith("HeadObject")]  # sizes and ETags came from the listing


def test_get_prefix_refuses_keys_that_escape(tmp_path):
    from backend.store.s3 import plan_paths

    ok = plan_paths([ObjectInfo("p/a/b.txt", 1)], "p/", tmp_path, "b")
    assert ok[0][1] == tmp_path.resolve() / "a/b.txt"
    for hostile in ("p/../../etc/passwd", "p//etc/passwd", "p/a/../../x"):
        with pytest.raises(StoreError, match="outside"):
            plan_paths([ObjectInfo("p/fine", 1), ObjectInfo(hostile, 1)], "p/", tmp_path, "b")
    with pytest.raises(StoreError, match="both an object and a folder"):
        plan_paths([ObjectInfo("p/a", 1), ObjectInfo("p/a/b", 1)], "p/", tmp_path, "b")
    assert list(tmp_path.iterdir()) == []


def test_backend_builds_the_s3_store_from_a_profile(s3_server, dlaas_home, bucket):
    (dlaas_home / "config.toml").write_text(
        'default_profile = "cos"\n[profiles.cos]\nstore = "s3"\n[profiles.cos.s3]\n'
        f'endpoint_url = "{s3_server.endpoint}"\nregion = "us-east-1"\n'
        f'access_key_id = "{s3_server.access_key}"\nsecret_access_key = "{s3_server.secret_key}"\n'
    )
    from backend.facade import open_backend

    backend = open_backend()
    assert backend.store.kind == "s3"
    assert bucket in [b.name for b in backend.store.list_buckets()]
    assert s3_server.secret_key not in repr(backend.profile)


def test_cancelled_folder_transfers_stop_and_leave_no_temp_files(s3_server, bucket, tmp_path):
    store = make_store(s3_server, max_concurrency=2)
    src = tmp_path / "src"
    for i in range(300):
        _random_file(src / f"f{i:03d}.bin", 2000)

    def stop_after_20(t: Transfer) -> None:
        if t.files_done >= 20:
            t.cancel()

    with pytest.raises(TransferCancelled):
        store.put_folder(src, bucket, "up", transfer=Transfer(on_update=stop_after_20))
    uploaded = [o.key for o in store.iter_objects(bucket, "up/")]
    assert 20 <= len(uploaded) < 300
    assert store.put_folder(src, bucket, "all") == 300
    dest = tmp_path / "dest"
    with pytest.raises(TransferCancelled):
        store.get_prefix(bucket, "all/", dest, transfer=Transfer(on_update=stop_after_20))
    left = [p.name for p in dest.rglob("*") if p.is_file()]
    assert 20 <= len(left) < 300
    assert not [n for n in left if n.endswith(".part") or not n.startswith("f")]


def test_delete_reports_the_keys_it_could_not_delete(store, bucket):
    from botocore.stub import Stubber

    # weed deletes whatever the key may be; a per-key refusal (e.g. object lock) is stubbed.
    with Stubber(store.client) as stub:
        stub.add_response("delete_objects", {"Deleted": [{"Key": "a"}], "Errors": [
            {"Key": "locked/\x1b[2Jb", "Code": "AccessDenied", "Message": "Access Denied"}]})
        with pytest.raises(StoreError) as err:
            store.delete(bucket, ["a", "locked/\x1b[2Jb"])
    assert "deleted 1 objects" in str(err.value) and "1 could not be deleted" in str(err.value)
    assert "locked/ [2Jb: AccessDenied Access Denied" in str(err.value)
