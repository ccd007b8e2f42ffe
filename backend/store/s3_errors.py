"""The one place where botocore/s3transfer exceptions become messages a user can act on.

Every S3Store call runs inside `s3_errors(...)`, which knows the operation, the endpoint, the bucket
and the key, so a message can name all of them. Server-supplied text is data: control characters
are dropped before it reaches a message. Nothing here imports botocore at module level; the
exception classes are looked up only when something has already gone wrong.
"""
from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import BadInput, ConfigError, DlaasError, NotFound, StoreError
from ..text import controls_to_spaces
from .base import TransferCancelled


CREDENTIAL_CODES = {
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "InvalidSecurity",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
}
SKEW_CODES = {"RequestTimeTooSkewed", "RequestExpired"}
THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded"}


def clean(text: object) -> str:
    """Server or exception text made safe to show: one line, no control characters, bounded."""
    s = controls_to_spaces(str(text)).strip()
    return s if len(s) <= 300 else s[:297] + "..."


@dataclass(frozen=True)
class Where:
    """What an operation touched, for messages."""

    endpoint: str
    op: str
    bucket: str | None = None
    key: str | None = None

    @property
    def target(self) -> str:
        if not self.bucket:
            return self.endpoint
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"


def translate(exc: BaseException, where: Where) -> DlaasError:
    """Map one exception from boto3/botocore/s3transfer (or the cancel path) to our error types."""
    if isinstance(exc, DlaasError):
        return exc
    if isinstance(exc, concurrent.futures.CancelledError):
        return TransferCancelled(f"{where.op} {where.target}: transfer cancelled")
    try:
        import botocore.exceptions as bx
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return StoreError(f"{where.op} {where.target} failed: {clean(exc)}")

    if isinstance(exc, bx.ClientError):
        return _from_client_error(exc, where)
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return StoreError(
            f"no S3 credentials for {where.endpoint}: set access_key_id and secret_access_key "
            "or aws_profile in the profile's [s3] table, or configure the standard AWS "
            "credential chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials)"
        )
    if isinstance(exc, bx.ProfileNotFound):
        return ConfigError(f"AWS profile not found: {clean(exc)} (check aws_profile in [s3])")
    if isinstance(exc, bx.SSLError):
        return StoreError(
            f"TLS error talking to {where.endpoint}: {clean(exc)} "
            "(check endpoint_url, or set verify_tls = false for a self-signed test server)"
        )
    if isinstance(exc, bx.ConnectTimeoutError | bx.EndpointConnectionError):
        return StoreError(
            f"cannot reach the S3 endpoint {where.endpoint}: check endpoint_url and the network"
            + (f" ({where.op} {where.target})" if where.bucket else "")
        )
    if isinstance(exc, bx.ReadTimeoutError | bx.ConnectionClosedError):
        return StoreError(
            f"the S3 endpoint {where.endpoint} stopped answering during {where.op} "
            f"{where.target}: try again, or raise read_timeout in [s3]"
        )
    if isinstance(exc, bx.ParamValidationError):
        return BadInput(f"{where.op} {where.target}: {clean(exc)}")
    if isinstance(exc, bx.NoRegionError):
        return ConfigError("no S3 region: set region in the profile's [s3] table")
    if isinstance(exc, bx.BotoCoreError):
        return StoreError(f"{where.op} {where.target} failed at {where.endpoint}: {clean(exc)}")
    if isinstance(exc, OSError):
        return StoreError(f"{where.op} {where.target}: {clean(exc)}")
    return StoreError(f"{where.op} {where.target} failed: {type(exc).__name__}: {clean(exc)}")


def _from_client_error(exc: object, where: Where) -> DlaasError:
    response = getattr(exc, "response", {}) or {}
    err = response.get("Error", {}) or {}
    code = str(err.get("Code", "") or "")
    message = clean(err.get("Message", "") or "")
    status = (response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode")
    where_s = f"{where.op} {where.target}"

    if code in CREDENTIAL_CODES:
        e = StoreError(f"access denied by {where.endpoint}: check the access key and secret")
        e.reason = "credentials"  # type: ignore[attr-defined]
        return e
    if code in SKEW_CODES:
        return StoreError(
            f"{where.endpoint} refused the request because this machine's clock differs too "
            "much from the server's: check the clock (enable NTP time sync)"
        )
    if code == "NoSuchBucket" or (code in ("404", "NotFound") and not where.key):
        return NotFound(f"bucket {where.bucket!r} does not exist at {where.endpoint}")
    if code in ("NoSuchKey", "404", "NotFound"):
        return NotFound(f"object {where.target} not found")
    if code == "NoSuchUpload":
        return StoreError(f"{where_s}: the multipart upload was aborted or expired; try again")
    if code in ("AccessDenied", "AllAccessDisabled", "Forbidden") or code == "403" or status == 403:
        hint = "" if code not in ("403", "Forbidden") else (
            " (the server gave no reason: the key may lack permission, or the access key and "
            "secret may be wrong)"
        )
        e = StoreError(f"permission denied by {where.endpoint}: cannot {where.op} {where.target}{hint}")
        e.reason = "forbidden" if not hint else "forbidden-unexplained"  # type: ignore[attr-defined]
        return e
    if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
        return BadInput(f"bucket {where.bucket!r} already exists at {where.endpoint}")
    if code == "BucketNotEmpty":
        return BadInput(f"bucket {where.bucket!r} is not empty: delete its objects first")
    if code in ("InvalidBucketName",):
        return BadInput(f"invalid bucket name {where.bucket!r}: {message or code}")
    if code in ("KeyTooLongError", "InvalidArgument") and where.key:
        return BadInput(f"{where_s}: {message or code}")
    if code in ("PreconditionFailed", "412"):
        return StoreError(f"{where.target} changed on the server during {where.op}; try again")
    if code in THROTTLE_CODES or status == 503:
        return StoreError(f"{where.endpoint} is busy (throttled) during {where_s}; try again later")
    detail = f"{code}: {message}" if message else code or f"HTTP {status}"
    return StoreError(f"{where_s} failed at {where.endpoint}: {detail}")


@contextmanager
def s3_errors(endpoint: str, op: str, bucket: str | None = None, key: str | None = None) -> Iterator[Where]:
    """Run a block; any exception leaves it as a DlaasError that names what failed."""
    where = Where(endpoint, op, bucket, key)
    try:
        yield where
    except DlaasError:
        raise
    except (Exception, concurrent.futures.CancelledError) as exc:  # noqa: BLE001 - translated
        raise translate(exc, where) from None
