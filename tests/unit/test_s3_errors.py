"""The botocore -> DlaasError mapping, with exceptions built as botocore builds them (no server)."""
from __future__ import annotations

import concurrent.futures

import botocore.exceptions as bx
import pytest

from backend.errors import BadInput, ConfigError, NotFound, StoreError
from backend.store.base import TransferCancelled
from backend.store.s3_errors import Where, clean, s3_errors, translate

EP = "https://s3.example.test"


def client_error(code: str, message: str = "", status: int = 400, op: str = "GetObject") -> bx.ClientError:
    return bx.ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, op
    )


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (client_error("SignatureDoesNotMatch", status=403), StoreError,
         f"access denied by {EP}: check the access key and secret"),
        (client_error("InvalidAccessKeyId", status=403), StoreError,
         f"access denied by {EP}: check the access key and secret"),
        (client_error("RequestTimeTooSkewed", status=403), StoreError, "check the clock"),
        (client_error("NoSuchBucket", status=404), NotFound, f"bucket 'bkt' does not exist at {EP}"),
        (client_error("NoSuchKey", status=404), NotFound, "object s3://bkt/a/b.txt not found"),
        (client_error("AccessDenied", "Access Denied", 403), StoreError,
         f"permission denied by {EP}: cannot read s3://bkt/a/b.txt"),
        (client_error("SlowDown", status=503), StoreError, "busy (throttled)"),
        (client_error("PreconditionFailed", status=412), StoreError, "changed on the server"),
        (client_error("InternalError", "We encountered\x1b[31m an error", 500), StoreError,
         "InternalError: We encountered [31m an error"),
        (bx.EndpointConnectionError(endpoint_url=EP), StoreError, f"cannot reach the S3 endpoint {EP}"),
        (bx.ConnectTimeoutError(endpoint_url=EP), StoreError, f"cannot reach the S3 endpoint {EP}"),
        (bx.ReadTimeoutError(endpoint_url=EP), StoreError, "stopped answering"),
        (bx.NoCredentialsError(), StoreError, "no S3 credentials"),
        (bx.ProfileNotFound(profile="cos"), ConfigError, "AWS profile not found"),
        (concurrent.futures.CancelledError(), TransferCancelled, "cancelled"),
    ],
)
def test_translate(exc, kind, text):
    err = translate(exc, Where(EP, "read", "bkt", "a/b.txt"))
    assert type(err) is kind
    assert text in str(err)
    assert "\x1b" not in str(err)


def test_bare_403_mentions_both_causes_and_bucket_ops_name_the_bucket():
    err = translate(client_error("403", status=403, op="HeadObject"), Where(EP, "stat", "bkt", "k"))
    assert "permission" in str(err) and "access key and secret may be wrong" in str(err)
    err = translate(client_error("404", status=404, op="HeadBucket"), Where(EP, "open", "bkt"))
    assert isinstance(err, NotFound) and "bucket 'bkt'" in str(err)
    err = translate(client_error("BucketNotEmpty", status=409), Where(EP, "remove bucket", "bkt"))
    assert isinstance(err, BadInput) and "not empty" in str(err)


def test_context_manager_translates_and_passes_our_errors_through():
    with pytest.raises(NotFound, match="bucket 'b1'"), s3_errors(EP, "list", "b1"):
        raise client_error("NoSuchBucket", status=404)
    with pytest.raises(BadInput, match="mine"), s3_errors(EP, "list", "b1"):
        raise BadInput("mine")


def test_clean_drops_control_characters_and_bounds_length():
    assert clean("a\x1b[2Jb\nc") == "a [2Jb c"
    assert len(clean("x" * 1000)) == 300


def test_one_retry_policy_for_broken_bodies(monkeypatch):
    from backend.store import s3_retry

    monkeypatch.setattr(s3_retry, "PAUSE_S", 0.0)
    where = Where("http://127.0.0.1:9", "download", "b", "data/k.bin")
    calls: list[int] = []

    def broken(n: int) -> None:
        calls.append(n)
        raise s3_retry.BrokenBody("got 10 of 20 bytes")

    with pytest.raises(StoreError, match=r"^download s3://b/data/k\.bin failed after 3 attempts: got 10 of 20 bytes$"):
        s3_retry.retry(broken, where, lambda: False)
    assert calls == [0, 1, 2]

    calls.clear()

    def second_time_lucky(n: int) -> str:
        calls.append(n)
        if n == 0:
            raise ConnectionResetError("reset by peer")
        return "ok"

    assert s3_retry.retry(second_time_lucky, where, lambda: False) == "ok" and calls == [0, 1]

    calls.clear()

    def missing(n: int) -> None:
        calls.append(n)
        raise NotFound("object s3://b/data/k.bin not found")

    with pytest.raises(NotFound):  # reading again cannot help: raised at once
        s3_retry.retry(missing, where, lambda: False)
    assert calls == [0]
    with pytest.raises(concurrent.futures.CancelledError):  # a cancel: nothing more is sent
        s3_retry.retry(missing, where, lambda: True)
    assert calls == [0]
    assert [s3_retry.pause_s(n) for n in range(3)] == [0.0, 0.0, 0.0]
    monkeypatch.setattr(s3_retry, "PAUSE_S", 0.2)
    assert [s3_retry.pause_s(n) for n in range(5)] == [0.0, 0.2, 0.4, 0.8, 1.6]


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def iter_chunks(self, size: int):
        yield self.data


class _Client:
    """get_object as botocore answers it for an object AWS encrypted (or not) with `sse`."""

    def __init__(self, data: bytes, sse: dict) -> None:
        self.data, self.sse = data, sse

    def get_object(self, **kwargs):
        return {"Body": _Body(self.data), "Metadata": {}, **self.sse}


@pytest.mark.parametrize("sse, checked", [
    ({}, True),
    ({"ServerSideEncryption": "AES256"}, True),  # SSE-S3: the ETag is still the MD5 of the bytes
    ({"ServerSideEncryption": "aws:kms"}, False),
    ({"ServerSideEncryption": "aws:kms:dsse"}, False),
    ({"SSECustomerAlgorithm": "AES256"}, False),
])
def test_the_md5_etag_check_is_skipped_only_where_aws_says_the_etag_is_no_md5(tmp_path, monkeypatch, sse, checked):
    import hashlib
    import threading

    from backend.store import s3_retry, s3_transfer
    from backend.store.s3_fastget import ETAG_NOT_MD5, etag_not_md5

    monkeypatch.setattr(s3_retry, "PAUSE_S", 0.0)
    data = b"the bytes as stored"
    other_md5 = hashlib.md5(b"not these bytes").hexdigest()  # an ETag that is no MD5 of `data`
    job = s3_transfer.DownloadJob("k.bin", tmp_path / "k.bin", size=len(data), etag=other_md5)
    where = Where("http://127.0.0.1:9", "download", "b")
    get = lambda: s3_transfer._get_small(_Client(data, sse), where, job, None, threading.Event())  # noqa: E731
    if checked:
        with pytest.raises(StoreError, match="the bytes do not match the object's MD5"):
            get()
        assert not (tmp_path / "k.bin").exists() and list(tmp_path.iterdir()) == []
    else:
        get()
        assert (tmp_path / "k.bin").read_bytes() == data
    # the fast path reads the same headers
    assert etag_not_md5("x-amz-server-side-encryption", sse.get("ServerSideEncryption", "AES256")) == (
        not checked and "ServerSideEncryption" in sse)
    assert etag_not_md5("x-amz-server-side-encryption-customer-algorithm", "AES256")
    assert ETAG_NOT_MD5.startswith("@")  # no header name (so no user metadata name) can be it
