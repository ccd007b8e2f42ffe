"""Building the one boto3 client an S3Store uses; boto3 is imported here only when it is built.

Credentials: the profile's own keys (revealed here and nowhere else), else a named AWS profile,
else the standard AWS chain. SigV4; botocore's standard retries with bounded attempts; connect and
read timeouts; a connection pool sized for the transfer workers. Beside the client, `Wire` carries
what the small-object fast path (s3_fastget) must share with it: the very credentials object the
client signs with, and the TLS verify value the client was built with.
"""
from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..config import S3Settings
from ..errors import ConfigError
from .s3_errors import s3_errors


def public_endpoint(url: str | None, region: str | None) -> str:
    """The endpoint for messages: no user:password@ part, ever."""
    if not url:
        return f"AWS S3 ({region})" if region else "AWS S3"
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/") or url


def parse_timestamp(value: str) -> datetime:
    """S3 timestamps: ISO 8601 in XML bodies, RFC 1123 in headers; anything else to botocore."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        pass
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        from botocore.utils import parse_timestamp as botocore_parse

        return botocore_parse(value)


def check_credentials(s: S3Settings, profile_name: str) -> None:
    """Refuse half a key pair, and keys next to an AWS profile, before any request."""
    where = f"profile {profile_name!r} [s3]" if profile_name else "[s3]"
    if bool(s.access_key_id) != bool(s.secret_access_key):
        missing = "secret_access_key" if s.access_key_id else "access_key_id"
        raise ConfigError(f"{where}: {missing} is missing (set both keys, or neither)")
    if s.access_key_id and s.aws_profile:
        raise ConfigError(f"{where}: set either aws_profile or access_key_id/secret_access_key, not both")


@dataclass(frozen=True)
class Wire:
    """What the fast path shares with the client: botocore's credentials object (None where there
    are none; refreshable ones refresh on use) and the verify value the client was built with."""

    credentials: Any
    verify: bool | str


def resolve_verify(verify_tls: bool, core: Any) -> bool | str:
    """What botocore would verify https against: nothing where the profile says verify_tls = false,
    else the AWS config's `ca_bundle` (AWS_CA_BUNDLE or the profile's `ca_bundle` in ~/.aws/config),
    else REQUESTS_CA_BUNDLE, else True (certifi's bundle). The client is built with this value
    explicitly, so it and the fast path verify against the same bundle."""
    if not verify_tls:
        return False
    bundle = core.get_config_variable("ca_bundle")
    return bundle if bundle is not None else os.environ.get("REQUESTS_CA_BUNDLE", True)


def make_client(s: S3Settings, endpoint: str) -> tuple[Any, Wire]:
    import boto3
    from botocore.config import Config as BotoConfig

    region = s.region or ("us-east-1" if s.endpoint_url else None)
    config = BotoConfig(
        signature_version="s3v4",
        region_name=region,
        retries={"mode": "standard", "total_max_attempts": s.max_attempts},
        connect_timeout=s.connect_timeout,
        read_timeout=s.read_timeout,
        # Large-file workers and small-file workers each need a pooled connection, plus
        # room for listings; a full pool would drop connections and reconnect per request.
        max_pool_connections=2 * s.max_concurrency + 4,
        s3={"addressing_style": s.effective_addressing_style, "payload_signing_enabled": False},
        # botocore's newer "when_supported" checksums break on S3-compatible servers (rclone
        # sends whole-object checksums for ranges; older Ceph/COS reject aws-chunked bodies).
        # Every PutObject and UploadPart carries Content-MD5 instead (add_content_md5), which
        # the servers check; weed does not check the signed SHA-256 of a body (tested), so
        # signing it as well only costs a second pass over the bytes.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        tcp_keepalive=True,
    )
    kwargs: dict[str, Any] = {}
    if s.access_key_id and s.secret_access_key:
        # Given to the session, not the client: the client then signs with the session's one
        # credentials object, which the fast path reads too (core.get_credentials()).
        kwargs["aws_access_key_id"] = s.access_key_id.reveal()
        kwargs["aws_secret_access_key"] = s.secret_access_key.reveal()
    with s3_errors(endpoint, "connect to"):
        import botocore.session

        # A listing page carries 1000 timestamps; botocore's dateutil parsing of them costs
        # more than the request itself. This session's parser uses the C ISO-8601 parser.
        core = botocore.session.get_session()
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
        session = boto3.session.Session(botocore_session=core, profile_name=s.aws_profile or None, **kwargs)
        verify = resolve_verify(s.verify_tls, core)
        client = session.client("s3", endpoint_url=s.endpoint_url, verify=verify, config=config)
        # The object the client signs with (the session caches it); with no credentials at all the
        # chain is asked once more here, and every request then fails with the usual message.
        credentials = core.get_credentials()
    for op in ("PutObject", "UploadPart"):
        client.meta.events.register(f"before-call.s3.{op}", add_content_md5)
    return client, Wire(credentials, verify)


def add_content_md5(params: dict[str, Any], **_: Any) -> None:
    """Content-MD5 on an upload's body (bytes or a seekable file, read once and rewound), so the
    server refuses bytes that changed on the way. s3transfer's part bodies do not report progress
    while this reads them (their callbacks are off until the request is sent)."""
    headers = params["headers"]
    body = params.get("body")
    if body is None or any(h.lower() == "content-md5" or h.lower().startswith("x-amz-checksum-") for h in headers):
        return
    md5 = hashlib.md5(usedforsecurity=False)
    if isinstance(body, bytes | bytearray):
        md5.update(body)
    else:
        try:
            start = body.tell()
        except (AttributeError, OSError):  # a stream that cannot be rewound goes without
            return
        while block := body.read(1024 * 1024):
            md5.update(block)
        body.seek(start)
    headers["Content-MD5"] = base64.b64encode(md5.digest()).decode("ascii")
