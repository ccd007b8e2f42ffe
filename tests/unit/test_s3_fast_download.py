"""Downloads that bypass botocore's request pipeline: small objects on kept-alive http.client
connections, large ones as parallel ranged GETs into one preallocated temp file. Real S3 server."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from backend.errors import StoreError
from backend.store import s3_ranged
from backend.store.base import ObjectInfo, Transfer, TransferCancelled
from tests.fixtures.s3server import make_store

pytestmark = pytest.mark.s3
MiB = 1024 * 1024


@pytest.fixture
def store(s3_server):
    st = make_store(s3_server, multipart_threshold_mb=5, multipart_chunksize_mb=5, max_concurrency=4)
    st.test_bucket = "fd-" + uuid.uuid4().hex[:10]  # one per test: the server is shared
    st.make_bucket(st.test_bucket)
    yield st
    st.close()


def _bucket(store) -> str:
    return store.test_bucket


def _no_temp(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".part")]


def test_large_object_in_several_ranged_parts(store, tmp_path, monkeypatch):
    monkeypatch.setattr(s3_ranged, "MIN_PART", 0)  # 5 MiB parts: this object takes five
    monkeypatch.setattr(s3_ranged, "BLOCK", 64 * 1024)
    bucket = _bucket(store)
    data = os.urandom(21 * MiB + 123)
    store.put_bytes(bucket, "big.bin", data)
    down = Transfer()
    out = store.get_file(bucket, "big.bin", tmp_path / "back.bin", transfer=down)
    assert out.read_bytes() == data
    assert (down.done, down.total, down.files_done) == (len(data), len(data), 1)
    assert _no_temp(tmp_path)


def test_folder_of_small_and_large_objects(store, tmp_path, monkeypatch):
    monkeypatch.setattr(s3_ranged, "MIN_PART", 0)
    bucket = _bucket(store)
    want = {f"d/s{i}.bin": os.urandom(1000 + i) for i in range(40)}
    want["d/big/l.bin"] = os.urandom(12 * MiB)
    for key, body in want.items():
        store.put_bytes(bucket, key, body)
    down = Transfer()
    assert store.get_prefix(bucket, "d/", tmp_path / "out", transfer=down) == len(want)
    for key, body in want.items():
        assert (tmp_path / "out" / key[2:]).read_bytes() == body
    assert down.done == down.total == sum(map(len, want.values()))
    assert _no_temp(tmp_path)


@pytest.mark.parametrize("size", [2000, 11 * MiB])
def test_a_changed_object_fails_and_leaves_no_file(store, tmp_path, size, monkeypatch):
    monkeypatch.setattr(s3_ranged, "MIN_PART", 0)
    bucket = _bucket(store)
    info = store.put_bytes(bucket, "obj.bin", os.urandom(size))
    store.put_bytes(bucket, "obj.bin", os.urandom(size))  # same size, new ETag
    stale = ObjectInfo("obj.bin", size, etag=info.etag)
    with pytest.raises(StoreError, match="obj.bin"):
        store.get_many(bucket, [(stale, tmp_path / "obj.bin")])
    assert list(tmp_path.iterdir()) == []


def test_cancelled_large_get_stops_and_leaves_no_file(store, tmp_path, monkeypatch):
    monkeypatch.setattr(s3_ranged, "MIN_PART", 0)
    monkeypatch.setattr(s3_ranged, "BLOCK", 64 * 1024)
    bucket = _bucket(store)
    size = 30 * MiB
    store.put_bytes(bucket, "big.bin", os.urandom(size))
    (tmp_path / "out").mkdir()
    transfer = Transfer(on_update=lambda t: t.cancel() if t.done > 0 else None)
    with pytest.raises(TransferCancelled):
        store.get_file(bucket, "big.bin", tmp_path / "out" / "big.bin", transfer=transfer)
    assert list((tmp_path / "out").iterdir()) == []
    assert transfer.done < size  # it stopped, rather than finishing and deleting


def test_a_get_that_cannot_be_sent_is_a_named_error(store, tmp_path, monkeypatch):
    bucket = _bucket(store)
    store.put_bytes(bucket, "a.bin", b"abc")
    objects = list(store.iter_objects(bucket))
    store.client.meta.events.register("before-sign.s3.GetObject", _refuse)
    monkeypatch.setattr(store.client, "generate_presigned_url", _refuse)
    with pytest.raises(StoreError, match="a.bin"):
        store.get_many(bucket, [(o, tmp_path / o.key) for o in objects])
    assert list(tmp_path.iterdir()) == []


def _refuse(*args, **kwargs):
    raise ConnectionRefusedError("refused")


def test_small_uploads_and_downloads_with_a_wrong_secret_say_so(s3_server, store, tmp_path):
    bucket = _bucket(store)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.bin").write_bytes(b"abc")
    store.put_folder(tmp_path / "src", bucket, "ok")
    bad = make_store(s3_server, secret_access_key="not-the-secret")
    msg = f"access denied by {s3_server.endpoint}: check the access key and secret"
    with pytest.raises(StoreError, match=msg):
        bad.put_folder(tmp_path / "src", bucket, "bad")
    with pytest.raises(StoreError, match=msg):
        bad.get_many(bucket, [(o, tmp_path / "out" / "a.bin") for o in store.iter_objects(bucket, "ok/")])
    assert [o.key for o in store.iter_objects(bucket)] == ["ok/a.bin"]
    assert not (tmp_path / "out" / "a.bin").exists()
    bad.close()


def test_the_fast_path_steps_aside_where_botocore_would_connect_differently(s3_server, monkeypatch):
    """A proxy (config or environment), a client certificate or a CA bundle that cannot be loaded
    keep every request on botocore; otherwise the fast getter verifies as the client was built to."""
    from botocore.config import Config

    from backend.store.s3_fastget import FastGetter

    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    plain = make_store(s3_server).client
    fast = FastGetter.for_client(plain, verify=False)
    assert fast is not None and fast._verify is False
    proxied = plain.meta.config.merge(Config(proxies={"http": "http://127.0.0.1:9"}))
    import boto3

    via_proxy = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name=s3_server.region, config=proxied,
                             aws_access_key_id="a", aws_secret_access_key="b")
    assert FastGetter.for_client(via_proxy) is None
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    assert FastGetter.for_client(plain) is None
    monkeypatch.delenv("http_proxy")
    assert FastGetter.for_client(plain, verify="/nonexistent/ca.pem") is not None  # plain http: nothing to verify
    tls = boto3.client("s3", endpoint_url="https://127.0.0.1:9", region_name=s3_server.region,
                       aws_access_key_id="a", aws_secret_access_key="b")
    assert FastGetter.for_client(tls, verify="/nonexistent/ca.pem") is None  # botocore reports the bundle
    assert FastGetter.for_client(tls, verify=False) is not None  # nothing to verify against
    assert FastGetter.for_client(tls) is not None  # certifi's bundle, as botocore


def test_bytes_that_do_not_match_the_md5_are_fetched_again_then_reported_with_the_key(store, tmp_path, monkeypatch):
    from backend.store import s3_retry, s3_transfer
    from backend.store.s3_fastget import FastGetter

    bucket = _bucket(store)
    store.put_bytes(bucket, "data/x.bin", b"A" * 4096)
    calls = []

    def corrupt(*args, **kwargs):
        calls.append(1)
        yield b"B" * 4096  # the right size, the wrong bytes: only the checksum can tell

    monkeypatch.setattr(FastGetter, "get", lambda self, *a, **k: corrupt())
    monkeypatch.setattr(s3_transfer, "_slow_get", lambda *a, **k: corrupt())
    dest = tmp_path / "x.bin"
    with pytest.raises(StoreError) as err:
        store.get_file(bucket, "data/x.bin", dest)
    assert "data/x.bin" in str(err.value) and "MD5" in str(err.value)
    assert len(calls) == s3_retry.ATTEMPTS  # retried before giving up
    assert list(tmp_path.iterdir()) == []  # no file and no temp file

    monkeypatch.undo()
    assert store.get_file(bucket, "data/x.bin", dest) == dest and dest.read_bytes() == b"A" * 4096


@pytest.mark.parametrize("source", ["AWS_CA_BUNDLE", "ca_bundle in ~/.aws/config"])
def test_https_verifies_against_the_aws_ca_bundle_on_both_paths(s3_server, store, tmp_path, monkeypatch, source):
    """The CA bundle from AWS_CA_BUNDLE or the AWS config's ca_bundle is what botocore and the fast
    path both verify https against: with it, the listing (botocore) and the small GETs (fast path,
    presigned in the query) go through a TLS proxy with a self-signed certificate; without it, the
    certificate is refused with a clear message."""
    from tests.fixtures.s3faults import FaultProxy, self_signed

    tls = self_signed(tmp_path)
    if tls is None:
        pytest.skip("needs the openssl command")
    for var in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    bucket = _bucket(store)
    files = {f"d/f{i}.bin": os.urandom(1000 + i) for i in range(3)}
    for key, body in files.items():
        store.put_bytes(bucket, key, body)
    proxy = FaultProxy(s3_server.endpoint, tls=tls).start()
    try:
        untrusting = make_store(s3_server, endpoint_url=proxy.endpoint)
        with pytest.raises(StoreError, match="TLS error talking to"):
            untrusting.get_prefix(bucket, "d/", tmp_path / "no")
        untrusting.close()
        if source == "AWS_CA_BUNDLE":
            monkeypatch.setenv("AWS_CA_BUNDLE", tls[0])
        else:
            config.write_text(f"[default]\nregion = us-east-1\nca_bundle = {tls[0]}\n")
        trusting = make_store(s3_server, endpoint_url=proxy.endpoint)
        assert trusting.get_prefix(bucket, "d/", tmp_path / "out") == 3
        trusting.close()
    finally:
        proxy.stop()
    assert {p.relative_to(tmp_path / "out").as_posix(): p.read_bytes()
            for p in (tmp_path / "out").rglob("*") if p.is_file()} == {k[2:]: v for k, v in files.items()}
    fast_gets = [t for m, t, _ in proxy.seen if m == "GET" and "X-Amz-Signature=" in t]
    assert len(fast_gets) == 3  # each object came through the fast path, over verified TLS


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"abc\"\r\nx-amz-meta-dlaas-crc32: 0a0b0c0d\r\n\r\nhello",
    b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-2/9\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\n!!!\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\nX-Skip: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-Folded: a\r\n b\r\n\r\nuntil the end",
    b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nbody",
    b"HTTP/1.1 204 No Content\r\nX-Amz-Id: 1\r\n\r\n",
    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\nContent-Type: application/xml\r\n\r\n<E/>\r\n",
])
def test_the_answer_reader_agrees_with_http_client(raw):
    """The fast path's answer (its own header reader instead of http.client's email parser) gives
    the status, headers, framing and body that http.client's own answer gives."""
    import http.client
    import io

    from backend.store.s3_fastget import _Response

    class Sock:
        def makefile(self, mode):
            return io.BytesIO(raw)

    seen = []
    for cls in (http.client.HTTPResponse, _Response):
        r = cls(Sock(), method="GET")
        r.begin()
        headers = [(k, " ".join(v.split())) for k, v in r.getheaders()]
        seen.append((r.status, r.reason, r.version, r.will_close, r.chunked, headers,
                     r.getheader("content-length"), r.getheader("X-AMZ-META-DLAAS-CRC32"), r.read()))
    assert seen[1] == seen[0]
