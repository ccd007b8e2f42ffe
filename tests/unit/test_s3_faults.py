"""S3 transfers when the server errs mid-way: a real S3 server behind a proxy that breaks chosen
requests (tests/fixtures/s3faults.py). A failure is retried, then reported with its key; the
progress bar counts every byte and file exactly once; nothing half-written is ever left."""
from __future__ import annotations

import os
import uuid
import zlib
from pathlib import Path

import pytest

from backend.errors import NotFound, StoreError
from backend.store import s3_checksum, s3_ranged, s3_retry
from backend.store.base import Transfer, TransferCancelled
from tests.fixtures.s3faults import FaultProxy
from tests.fixtures.s3server import make_store

pytestmark = pytest.mark.s3
MiB = 1024 * 1024


@pytest.fixture
def proxy(s3_server):
    p = FaultProxy(s3_server.endpoint).start()
    yield p
    p.stop()


@pytest.fixture
def store(s3_server, proxy, monkeypatch):
    monkeypatch.setattr(s3_ranged, "MIN_PART", 0)  # 5 MiB parts, as the multipart uploads
    monkeypatch.setattr(s3_retry, "PAUSE_S", 0.01)
    plain = make_store(s3_server)  # straight to the server: what really landed there
    st = make_store(s3_server, endpoint_url=proxy.endpoint, multipart_threshold_mb=5,
                    multipart_chunksize_mb=5, max_concurrency=4, max_attempts=3)
    st.plain = plain
    st.bucket = "ft-" + uuid.uuid4().hex[:10]
    plain.make_bucket(st.bucket)
    yield st
    st.close()
    plain.close()


class Recorder(Transfer):
    """A Transfer that remembers the largest `done` it ever showed."""

    def __init__(self) -> None:
        super().__init__(on_update=self._seen)
        self.peak = 0

    def _seen(self, t: Transfer) -> None:
        self.peak = max(self.peak, t.done)


def _folder(root: Path) -> dict[str, bytes]:
    files = {f"s/f{i:02d}.bin": os.urandom(3000 + i) for i in range(12)}
    files["big/model.bin"] = os.urandom(12 * MiB + 7)  # three 5 MiB parts up, three ranges down
    for rel, body in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(body)
    return files


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _uploads_left(store) -> list[str]:
    return [u["Key"] for u in store.plain.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])]


def test_errors_mid_folder_are_retried_and_the_bar_counts_each_byte_and_file_once(store, proxy, tmp_path):
    files = _folder(tmp_path / "src")
    total = sum(map(len, files.values()))
    proxy.add("PUT", "partNumber=2", "500")  # botocore's retry sends the part again
    proxy.add("PUT", "/up/s/f03.bin", "500")  # the fast (presigned) PUT steps aside; put_object sends it
    proxy.add("PUT", "partNumber=3", "cut")  # the answer breaks off after the part was stored
    up = Recorder()
    assert store.put_folder(tmp_path / "src", store.bucket, "up", transfer=up) == len(files)
    assert (up.done, up.total, up.files_done, up.files_total) == (total, total, len(files), len(files))
    assert up.peak <= total
    f03 = [(target, what) for method, target, what in proxy.seen if method == "PUT" and "/up/s/f03.bin" in target]
    assert [("X-Amz-Signature=" in t, what) for t, what in f03] == [(True, "500"), (False, "pass")]

    proxy.add("GET", "/up/s/f05.bin", "cut")  # half a small body: read again
    proxy.add("GET", "/up/big/model.bin", "cut")  # half of one range: that part read again
    down = Recorder()
    assert store.get_prefix(store.bucket, "up/", tmp_path / "dst", transfer=down) == len(files)
    assert _tree(tmp_path / "dst") == files
    assert (down.done, down.total, down.files_done, down.files_total) == (total, total, len(files), len(files))
    assert down.peak <= total  # a body read again is not counted twice
    assert all(f.fired == f.times for f in proxy.faults)  # every fault really happened
    assert _uploads_left(store) == []


def test_a_part_the_server_keeps_failing_is_reported_with_the_key_and_leaves_no_object(store, proxy, tmp_path):
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(11 * MiB))
    proxy.add("PUT", "partNumber=2", "500", times=None)
    with pytest.raises(StoreError, match=r"s3://ft-\w+/run/model\.bin"):
        store.put_file(src, store.bucket, "run/model.bin", transfer=Transfer())
    assert proxy.faults[0].fired == 3  # max_attempts = 3: sent three times, then given up
    with pytest.raises(NotFound):
        store.plain.stat(store.bucket, "run/model.bin")
    assert _uploads_left(store) == []  # the multipart upload was aborted


@pytest.mark.parametrize("size", [3000, 11 * MiB])
def test_a_body_that_keeps_breaking_is_reported_with_the_key_and_leaves_no_file(store, proxy, tmp_path, size):
    store.plain.put_bytes(store.bucket, "d/x.bin", os.urandom(size))
    proxy.add("GET", "/d/x.bin", "cut", times=None)
    tr = Transfer()
    with pytest.raises(StoreError) as err:
        store.get_prefix(store.bucket, "d/", tmp_path / "out", transfer=tr)
    msg = str(err.value)
    assert f"s3://{store.bucket}/d/x.bin" in msg and f"after {s3_retry.ATTEMPTS} attempts" in msg
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]  # no file, no temp file
    assert tr.done < size and tr.files_done == 0


def test_a_small_upload_corrupted_in_transit_is_refused_by_the_server(store, proxy, tmp_path):
    """The fast PUT carries Content-MD5; put_object (its fallback) a signed SHA-256 of the body."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(5000))
    proxy.add("PUT", "/c/a.bin", "flip", times=None)
    with pytest.raises(StoreError, match=r"c/a\.bin"):
        store.put_folder(src, store.bucket, "c")
    with pytest.raises(NotFound):
        store.plain.stat(store.bucket, "c/a.bin")


def test_a_part_corrupted_in_transit_is_refused_and_the_upload_aborted(store, proxy, tmp_path):
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(11 * MiB))
    proxy.add("PUT", "partNumber=2", "flip", times=None)
    with pytest.raises(StoreError, match=r"model\.bin"):
        store.put_file(src, store.bucket, "m/model.bin")
    with pytest.raises(NotFound):
        store.plain.stat(store.bucket, "m/model.bin")
    assert _uploads_left(store) == []


def test_a_small_download_corrupted_in_transit_is_read_again(store, proxy, tmp_path):
    body = os.urandom(5000)
    store.plain.put_bytes(store.bucket, "g/a.bin", body)
    proxy.add("GET", "/g/a.bin", "flip-reply")  # once: the MD5 (its ETag) catches it
    tr = Recorder()
    assert store.get_file(store.bucket, "g/a.bin", tmp_path / "a.bin", transfer=tr).read_bytes() == body
    assert proxy.faults[0].fired == 1
    assert (tr.done, tr.total, tr.peak) == (len(body), len(body), len(body))


def test_a_multipart_object_carries_its_crc32_and_a_byte_flipped_on_the_way_down_is_read_again(
        store, proxy, tmp_path):
    body = os.urandom(12 * MiB + 5)  # three 5 MiB parts up, three ranges down
    (tmp_path / "model.bin").write_bytes(body)
    store.put_file(tmp_path / "model.bin", store.bucket, "mp/model.bin")
    head = store.plain.client.head_object(Bucket=store.bucket, Key="mp/model.bin")
    assert head["ETag"].strip('"').endswith("-3")  # multipart: the ETag is no MD5 of the bytes
    assert head["Metadata"][s3_checksum.META_KEY] == s3_checksum.encode(zlib.crc32(body))
    proxy.clear()
    proxy.add("GET", "/mp/model.bin", "flip-reply")  # one range: its length is right, a byte is not
    tr = Recorder()
    got = store.get_file(store.bucket, "mp/model.bin", tmp_path / "out.bin", transfer=tr)
    assert got.read_bytes() == body
    assert proxy.faults[0].fired == 1
    gets = [t for m, t, _ in proxy.seen if m == "GET" and "/mp/model.bin" in t]
    assert len(gets) == 6  # three ranges, then all three again
    assert (tr.done, tr.total, tr.files_done) == (len(body), len(body), 1)
    assert tr.peak <= len(body)


@pytest.mark.parametrize("way", ["get_file", "get_prefix"])
def test_a_multipart_object_that_keeps_arriving_corrupted_is_reported_and_leaves_no_file(
        store, proxy, tmp_path, way):
    (tmp_path / "model.bin").write_bytes(os.urandom(11 * MiB))
    store.put_file(tmp_path / "model.bin", store.bucket, "bad/model.bin")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.bin").write_bytes(b"the old file stays as it was")
    proxy.add("GET", "/bad/model.bin", "flip-reply", times=None)
    tr = Transfer()
    with pytest.raises(StoreError) as err:
        if way == "get_file":
            store.get_file(store.bucket, "bad/model.bin", tmp_path / "out" / "model.bin", transfer=tr)
        else:
            store.get_prefix(store.bucket, "bad/", tmp_path / "out", transfer=tr)
    msg = str(err.value)
    assert f"s3://{store.bucket}/bad/model.bin" in msg and f"after {s3_retry.ATTEMPTS} attempts" in msg
    assert "CRC32" in msg
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.bin"]  # no temp file left
    assert (tmp_path / "out" / "model.bin").read_bytes() == b"the old file stays as it was"
    assert tr.files_done == 0 and tr.done <= tr.total


def test_a_small_copy_of_a_multipart_object_is_checked_against_its_crc32(store, proxy, tmp_path, s3_server):
    """An object of ours that is multipart but under another profile's threshold goes as one GET:
    that GET is checked against the CRC32 too."""
    body = os.urandom(11 * MiB)
    (tmp_path / "model.bin").write_bytes(body)
    store.put_file(tmp_path / "model.bin", store.bucket, "sm/model.bin")
    other = make_store(s3_server, endpoint_url=proxy.endpoint, multipart_threshold_mb=64)  # one GET
    proxy.clear()
    proxy.add("GET", "/sm/model.bin", "flip-reply")
    tr = Recorder()
    try:
        assert other.get_file(store.bucket, "sm/model.bin", tmp_path / "o.bin", transfer=tr).read_bytes() == body
    finally:
        other.close()
    assert proxy.faults[0].fired == 1 and len([1 for m, t, _ in proxy.seen if m == "GET"]) == 2
    assert (tr.done, tr.peak) == (len(body), len(body))


def test_objects_without_our_crc32_still_download(store, proxy, tmp_path):
    """A multipart object another tool uploaded (no dlaas-crc32) is checked for length only."""
    c = store.plain.client
    part = os.urandom(5 * MiB)
    up = c.create_multipart_upload(Bucket=store.bucket, Key="other/x.bin")
    etags = [c.upload_part(Bucket=store.bucket, Key="other/x.bin", UploadId=up["UploadId"], PartNumber=n,
                           Body=part)["ETag"] for n in (1, 2)]
    c.complete_multipart_upload(Bucket=store.bucket, Key="other/x.bin", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)]})
    assert store.get_file(store.bucket, "other/x.bin", tmp_path / "x.bin").read_bytes() == part * 2


def test_a_put_cancelled_while_its_crc32_is_summed_sends_no_byte(store, proxy, tmp_path, monkeypatch):
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(11 * MiB))
    tr = Transfer()
    real = s3_checksum._piece_crc

    def cancel_then_sum(*args):
        tr.cancel()
        return real(*args)

    monkeypatch.setattr(s3_checksum, "_piece_crc", cancel_then_sum)
    with pytest.raises(TransferCancelled):
        store.put_file(src, store.bucket, "cx/model.bin", transfer=tr)
    assert not [t for m, t, _ in proxy.seen if m in ("PUT", "POST") and "/cx/model.bin" in t]
    with pytest.raises(NotFound):
        store.plain.stat(store.bucket, "cx/model.bin")
    assert tr.done == 0 and _uploads_left(store) == []
