"""The fast path's own SigV4 presigning (backend/store/s3_sign.py): for the same credentials, clock
and inputs, its URLs are byte-identical to botocore's generate_presigned_url; where it cannot be
sure (SigV2, a hook that changes the request, credentials it cannot prove), it hands back
botocore's own URL. No server: the comparison is of the URLs themselves (the real-server tests in
test_s3_fast_download.py and test_s3_store.py send them)."""
from __future__ import annotations

import datetime as dt

import boto3
import botocore.auth
import pytest
from botocore.config import Config
from botocore.credentials import CredentialProvider, RefreshableCredentials
from botocore.session import get_session

from backend.store.s3_sign import Presigner

KEYS = [
    "plain.bin",
    "folder/sub/sample-000001.bin",
    "a key with spaces.txt",
    "ünïcödé/日本語/emoji-🎉.bin",
    "~tilde/~x~",
    "plus+equals=amp&question?hash#percent%25",
    "/leading/slash",
    "double//slash/",
    "dots/../..",
    "tab\tand\nnewline",
    "safe-_.~!*'()$,;:@",
]
ENDPOINTS = [
    ("http://127.0.0.1:8333", "path"),
    ("http://127.0.0.1:8333", "virtual"),  # an IP: botocore keeps path style
    ("http://s3.example.test:9000", "virtual"),
    ("http://s3.example.test:9000", "path"),
    ("https://S3.Example.TEST:443", "virtual"),  # default port and upper case in the endpoint
    ("https://objects.example.test/", "auto"),
    ("http://[::1]:9000", "path"),
    (None, "auto"),  # AWS itself
]
FROZEN = dt.datetime(2031, 2, 28, 23, 59, 58)


@pytest.fixture
def frozen(monkeypatch):
    """botocore's signing clock (which the presigner reads too) stopped at FROZEN."""
    now = {"t": FROZEN}
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: now["t"])
    return now


def _client(endpoint, style, token=None, region="eu-west-1", **config):
    session = boto3.session.Session(aws_access_key_id="AKIDEXAMPLE+/=", aws_secret_access_key="wJalr/XUtnFEMI+K7MDENG=",
                                    aws_session_token=token, region_name=region)
    cfg = Config(signature_version=config.pop("signature_version", "s3v4"), s3={"addressing_style": style}, **config)
    client = session.client("s3", endpoint_url=endpoint, config=cfg)
    return client, session._session.get_credentials()


def _botocore(client, method, bucket, key):
    op = {"GET": "get_object", "PUT": "put_object"}[method]
    return client.generate_presigned_url(op, Params={"Bucket": bucket, "Key": key}, ExpiresIn=900)


@pytest.mark.parametrize("endpoint,style", ENDPOINTS)
@pytest.mark.parametrize("token", [None, "FQoGZXIvYXdzE/session+token=="])
def test_urls_are_byte_identical_to_botocore(frozen, endpoint, style, token):
    client, creds = _client(endpoint, style, token)
    signer = Presigner(client, creds)
    for bucket in ("bench", "data.with.dots"):
        for method in ("GET", "PUT"):
            for key in KEYS:
                ours = signer.url(method, bucket, key)
                assert ours is not None
                assert ours.url == _botocore(client, method, bucket, key), (method, bucket, key)
            assert signer._templates[(method, bucket)] is not None  # signed here, not by botocore


def test_the_signing_key_follows_the_date(frozen):
    client, creds = _client("http://127.0.0.1:8333", "path")
    signer = Presigner(client, creds)
    first = signer.url("GET", "bench", "k").url
    assert first == _botocore(client, "GET", "bench", "k")
    frozen["t"] = FROZEN + dt.timedelta(seconds=3)  # past midnight: a new date in the scope
    second = signer.url("GET", "bench", "k").url
    assert second == _botocore(client, "GET", "bench", "k")
    assert "20310301" in second and "20310228" in first
    assert signer._key is not None and signer._key[0][1] == "20310301"


def test_refreshed_credentials_are_used_at_once(frozen):
    """Credentials from the chain that refresh (an assumed role, SSO): every URL is signed with
    what botocore's credentials object holds at that moment."""
    current = {"access_key": "AKIDFIRST", "secret_key": "first/secret", "token": "tok1"}
    expiry = (FROZEN.replace(tzinfo=dt.timezone.utc) + dt.timedelta(days=36500)).isoformat()
    due = {"now": False}  # whether the credentials are near their expiry (botocore then refreshes)

    def refresh():
        due["now"] = False
        return {**current, "expiry_time": expiry}

    class Rotating(CredentialProvider):
        METHOD = "test-rotating"

        def load(self):
            return RefreshableCredentials.create_from_metadata(
                {**current, "expiry_time": expiry}, refresh_using=refresh,
                method=self.METHOD)

    core = get_session()
    core.get_component("credential_provider").insert_before("env", Rotating())
    session = boto3.session.Session(botocore_session=core, region_name="us-east-1")
    client = session.client("s3", endpoint_url="http://127.0.0.1:8333",
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    creds = core.get_credentials()
    assert isinstance(creds, RefreshableCredentials)
    signer = Presigner(client, creds)
    assert signer.url("GET", "bench", "k").url == _botocore(client, "GET", "bench", "k")
    current.update(access_key="AKIDSECOND", secret_key="second/secret", token="tok2")
    creds.refresh_needed = lambda refresh_in=None: due["now"]
    due["now"] = True  # the expiry nears: the next read of the credentials refreshes them
    ours = signer.url("GET", "bench", "k").url
    assert "AKIDSECOND" in ours and "tok2" in ours
    assert ours == _botocore(client, "GET", "bench", "k")
    assert signer._templates[("GET", "bench")] is not None  # signed here, with the new keys


def test_where_it_cannot_be_sure_the_url_is_botocores(frozen):
    # SigV2 query auth: a different scheme altogether.
    client, creds = _client("http://127.0.0.1:8333", "path", signature_version="s3")
    signer = Presigner(client, creds)
    url = signer.url("GET", "bench", "a b").url
    assert "AWSAccessKeyId=" in url and url == _botocore(client, "GET", "bench", "a b")
    assert signer._templates[("GET", "bench")] is None

    # A hook that changes what is signed (an extra header): the probe does not match the template.
    client, creds = _client("http://127.0.0.1:8333", "path")

    def add_header(request, **_):
        request.headers["x-amz-request-payer"] = "requester"

    client.meta.events.register("before-sign.s3.GetObject", add_header)
    signer = Presigner(client, creds)
    url = signer.url("GET", "bench", "k").url
    assert "x-amz-request-payer" in url and url == _botocore(client, "GET", "bench", "k")
    assert signer._templates[("GET", "bench")] is None

    # Credentials other than those the client signs with: the proof fails, botocore signs.
    client, _ = _client("http://127.0.0.1:8333", "path")
    _, other = _client("http://127.0.0.1:8333", "path", token="someone-else")
    signer = Presigner(client, other)
    assert signer.url("PUT", "bench", "k").url == _botocore(client, "PUT", "bench", "k")
    assert signer._templates[("PUT", "bench")] is None

    # No credentials object at all: botocore presigns every URL.
    signer = Presigner(client, None)
    assert signer.url("GET", "bench", "k").url == _botocore(client, "GET", "bench", "k")


def test_a_presign_botocore_refuses_is_none(frozen):
    client, creds = _client("http://127.0.0.1:8333", "path")
    signer = Presigner(client, creds)
    assert signer.url("GET", "Not A Valid Bucket!", "k") is None
