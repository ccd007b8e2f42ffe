"""The ObjectStore protocol over boto3, for AWS S3, IBM COS, SeaweedFS, MinIO, Ceph and friends.

boto3 is imported here only, and only when a store is built: `--help`, manifest validation and the
local store never pay for it. One client per store (botocore clients are thread-safe) with a
connection pool at least as large as the transfer workers; SigV4; retries in standard mode with a
bounded number of attempts; connect/read timeouts from the profile. Credentials come from the
profile's own keys (revealed only when the client is built), a named AWS profile, or the standard
AWS chain; they are never put in a message or a log line. Every call maps botocore's exceptions in
`s3_errors`, so a user sees one line that names the endpoint, the bucket, the key and the operation.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .. import clock
from ..config import S3Settings
from ..errors import BadInput, NotFound, StoreError
from .base import (
    BucketInfo,
    ListPage,
    ObjectInfo,
    Transfer,
    TransferCancelled,
    validate_bucket_name,
    validate_key,
)
from .s3_client import check_credentials, make_client, public_endpoint
from .s3_errors import clean, s3_errors
from .s3_uploads import UploadJournal
from .s3_transfer import (
    DownloadJob,
    UploadJob,
    plan_paths,
    run_downloads,
    run_uploads,
    transfer_config,
)

DELETE_BATCH = 1000  # S3's limit per DeleteObjects request


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


def _folder_prefix(prefix: str) -> str:
    """`data` and `data/` both mean the folder `data/`; '' is the bucket's top."""
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


class S3Store:
    kind = "s3"

    def __init__(self, settings: S3Settings, *, profile_name: str = "") -> None:
        self.settings = settings
        self.profile_name = profile_name
        self.endpoint = public_endpoint(settings.endpoint_url, settings.region)
        self._client: Any = None
        self._wire: Any = None  # s3_client.Wire, built with the client
        self._client_lock = threading.Lock()
        check_credentials(settings, profile_name)
        self._uploads = UploadJournal(self.endpoint)

    @classmethod
    def from_backend(cls, backend: Any) -> S3Store:
        return cls(backend.profile.s3, profile_name=backend.profile.name)

    @property
    def client(self) -> Any:
        """The store's one client, built on first use (TUI workers may race for it)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    client, wire = make_client(self.settings, self.endpoint)
                    self._uploads.attach(client)
                    self._wire = wire
                    self._client = client
        return self._client

    def describe(self) -> str:
        return self.endpoint

    def _errors(self, op: str, bucket: str | None = None, key: str | None = None) -> Any:
        return s3_errors(self.endpoint, op, bucket, key)

    # -- buckets --------------------------------------------------------------------------------
    def list_buckets(self) -> list[BucketInfo]:
        with self._errors("list buckets"):
            resp = self.client.list_buckets()
        return [BucketInfo(b["Name"], b.get("CreationDate")) for b in resp.get("Buckets", [])]

    def bucket_exists(self, bucket: str) -> bool:
        try:
            with self._errors("open", bucket):
                self.client.head_bucket(Bucket=bucket)
        except NotFound:
            return False
        except StoreError as err:
            raise self._explain_forbidden(err, bucket) from None
        return True

    def make_bucket(self, bucket: str) -> None:
        validate_bucket_name(bucket)
        kwargs: dict[str, Any] = {"Bucket": bucket}
        region = self.settings.region
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        with self._errors("create bucket", bucket):
            self.client.create_bucket(**kwargs)

    def remove_bucket(self, bucket: str) -> None:
        with self._errors("remove bucket", bucket):
            # Some servers delete non-empty buckets; the protocol promises "empty only".
            resp = self.client.list_objects_v2(Bucket=bucket, MaxKeys=1)
            if resp.get("KeyCount", 0) or resp.get("Contents"):
                raise BadInput(f"bucket {bucket!r} is not empty: delete its objects first")
            self.client.delete_bucket(Bucket=bucket)

    # -- listing --------------------------------------------------------------------------------
    def list(
        self,
        bucket: str,
        prefix: str = "",
        *,
        page_size: int = 1000,
        token: str | None = None,
        start_after: str | None = None,
    ) -> ListPage:
        if not 1 <= page_size <= 1000:
            raise BadInput(f"page size must be 1..1000, got {page_size}")
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/", "MaxKeys": page_size}
        if token:
            kwargs["ContinuationToken"] = token
        elif start_after:
            kwargs["StartAfter"] = start_after
        with self._errors("list", bucket, prefix or None):
            resp = self.client.list_objects_v2(**kwargs)
        items = [ObjectInfo(p["Prefix"], is_prefix=True) for p in resp.get("CommonPrefixes", [])]
        for obj in resp.get("Contents", []):
            if obj["Key"] == prefix and prefix.endswith("/"):
                continue  # the folder's own marker object, not a child of it
            items.append(self._info(obj))
        items.sort(key=lambda i: i.key)
        next_token = resp.get("NextContinuationToken") if resp.get("IsTruncated") else None
        return ListPage(bucket=bucket, prefix=prefix, items=items, next_token=next_token)

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1000}
        while True:
            with self._errors("list", bucket, prefix or None):
                resp = self.client.list_objects_v2(**kwargs)
            for obj in resp.get("Contents", []):
                yield self._info(obj)
            if not resp.get("IsTruncated") or not resp.get("NextContinuationToken"):
                return
            kwargs["ContinuationToken"] = resp["NextContinuationToken"]

    @staticmethod
    def _info(obj: dict[str, Any]) -> ObjectInfo:
        return ObjectInfo(
            key=obj["Key"], size=int(obj.get("Size", 0)), modified=obj.get("LastModified"),
            etag=_etag(obj.get("ETag")),
        )

    def _is_folder(self, bucket: str, key: str) -> bool:
        folder = _folder_prefix(key)
        with self._errors("list", bucket, folder):
            resp = self.client.list_objects_v2(Bucket=bucket, Prefix=folder, MaxKeys=1)
        return bool(resp.get("Contents") or resp.get("CommonPrefixes"))

    def _not_found(self, bucket: str, key: str, op: str) -> Exception:
        """A 404 on a key: a folder, a missing object, or a missing bucket — say which."""
        if key.endswith("/") or self._is_folder(bucket, key):
            return BadInput(
                f"s3://{bucket}/{key} is a folder, not an object: {op} needs an object key "
                "(use a folder get/rm for a prefix)"
            )
        if not self.bucket_exists(bucket):
            return NotFound(f"bucket {bucket!r} does not exist at {self.endpoint}")
        return NotFound(f"object s3://{bucket}/{key} not found")

    # -- single objects -------------------------------------------------------------------------
    def _explain_forbidden(self, err: StoreError, bucket: str) -> StoreError:
        """A HEAD answered 403 has no body, so no reason; a GET-type call on the bucket has one."""
        if getattr(err, "reason", "") != "forbidden-unexplained":
            return err
        try:
            with self._errors("list", bucket):
                self.client.list_objects_v2(Bucket=bucket, MaxKeys=1)
        except StoreError as probe:
            if getattr(probe, "reason", "") == "credentials":
                return probe
        except Exception:  # noqa: BLE001, S110 - the probe only refines the message
            pass
        return err

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        validate_key(key)
        try:
            with self._errors("stat", bucket, key):
                resp = self.client.head_object(Bucket=bucket, Key=key)
        except NotFound:
            raise self._not_found(bucket, key, "stat") from None
        except StoreError as err:
            raise self._explain_forbidden(err, bucket) from None
        return ObjectInfo(
            key=key, size=int(resp.get("ContentLength", 0)), modified=resp.get("LastModified"),
            etag=_etag(resp.get("ETag")),
        )

    def read_range(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> bytes:
        validate_key(key)
        if offset < 0 or (length is not None and length < 0):
            raise BadInput(f"invalid range offset={offset} length={length}")
        if length == 0:
            return b""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            kwargs["Range"] = f"bytes={offset}-{end}"
        try:
            with self._errors("read", bucket, key):
                try:
                    resp = self.client.get_object(**kwargs)
                except Exception as exc:  # a range past the end is just empty; others re-raised
                    if getattr(exc, "response", {}).get("Error", {}).get("Code") == "InvalidRange":
                        return b""
                    raise
                body = resp["Body"]
                try:
                    return body.read()
                finally:
                    body.close()
        except NotFound:
            raise self._not_found(bucket, key, "read") from None

    def put_bytes(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        self._check_object_key(key)
        with self._errors("put", bucket, key):
            resp = self.client.put_object(Bucket=bucket, Key=key, Body=data)
        return ObjectInfo(key=key, size=len(data), modified=clock.now(), etag=_etag(resp.get("ETag")))

    @staticmethod
    def _check_object_key(key: str) -> None:
        validate_key(key)
        if key.endswith("/"):
            raise BadInput(f"invalid object key {key!r}: a key ending in '/' names a folder")

    def _tconfig(self) -> Any:
        return transfer_config(self.settings)

    def reclaim_leftovers(self) -> str:
        """Abort the multipart uploads that writers cut off (the server was gone when they failed)."""
        if not self._uploads.stale():
            return ""
        with self._errors("abort multipart uploads"):
            keys = self._uploads.reclaim(self.client)
        if not keys:
            return ""
        return f"aborted {len(keys)} unfinished multipart upload(s) at {self.endpoint}: {', '.join(keys[:5])}"

    def _upload(self, bucket: str, jobs: list[UploadJob], transfer: Transfer | None) -> None:
        """run_uploads, after tidying what failed puts left, with this put counted as in flight."""
        try:
            self.reclaim_leftovers()
        except StoreError as exc:  # the put itself will say what is wrong with the server
            import logging

            logging.getLogger("dlaas.store").info("leftover uploads not aborted yet: %s", exc)
        with self._client_lock:
            self._uploads.active += 1
        try:
            run_uploads(self.client, self._tconfig(), bucket, jobs, transfer, self.endpoint,
                        wire=self._wire)
        finally:
            with self._client_lock:
                self._uploads.active -= 1

    def put_file(self, src: Path, bucket: str, key: str, *, transfer: Transfer | None = None) -> ObjectInfo:
        self._check_object_key(key)
        src = Path(src)
        if not src.is_file():
            raise BadInput(f"{src}: not a file" if src.exists() else f"{src}: no such file")
        size = src.stat().st_size
        before = None
        if transfer is not None:
            transfer.add_total(size)
            before = self._version(bucket, key)
        try:
            self._upload(bucket, [UploadJob(src, key, size)], transfer)
        except TransferCancelled:
            # A PUT already on the wire completes even when cancelled: if the key changed, it is
            # ours, and a cancelled put must leave no object.
            after = self._version(bucket, key)
            if after is not None and after != before:
                with self._errors("delete", bucket, key):
                    self.client.delete_object(Bucket=bucket, Key=key)
            raise
        return self.stat(bucket, key)

    def _version(self, bucket: str, key: str) -> tuple[Any, Any] | None:
        """(ETag, LastModified) of an object, None when there is none; one HEAD."""
        try:
            resp = self.client.head_object(Bucket=bucket, Key=key)
        except Exception:  # noqa: BLE001 - absent (or unreadable): nothing of ours to remove
            return None
        return resp.get("ETag"), resp.get("LastModified")

    def get_file(self, bucket: str, key: str, dest: Path, *, transfer: Transfer | None = None) -> Path:
        validate_key(key)
        if key.endswith("/"):
            raise BadInput(f"s3://{bucket}/{key} is a folder, not an object: get it as a folder")
        info = self.stat(bucket, key)  # also turns "that key is a folder" into a clear error
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / info.name
        if transfer is not None:
            transfer.add_total(info.size)
        existed = dest.exists()
        try:
            run_downloads(
                self.client, self._tconfig(), bucket, [DownloadJob(key, dest, info.size, info.etag)],
                transfer, self.endpoint, wire=self._wire,
            )
        except TransferCancelled:
            if not existed:  # finished just as the cancel came: a cancelled get leaves no file
                dest.unlink(missing_ok=True)
            raise
        return dest

    def get_many(self, bucket: str, items: Iterable[tuple[ObjectInfo, Path]], *, transfer: Transfer | None = None) -> int:
        """Download listed objects to the given paths through one transfer manager, no HEADs.

        The caller has checked the paths (datacache and get_prefix do); sizes and ETags come from
        the listing and every GET carries If-Match, so a changed object fails instead of mixing.
        """
        jobs = [DownloadJob(o.key, Path(p), o.size, o.etag) for o, p in items]
        run_downloads(self.client, self._tconfig(), bucket, jobs, transfer, self.endpoint,
                      wire=self._wire)
        return len(jobs)

    # -- folders --------------------------------------------------------------------------------
    def put_folder(self, src: Path, bucket: str, prefix: str, *, transfer: Transfer | None = None) -> int:
        src = Path(src)
        if not src.is_dir():
            raise BadInput(f"{src}: not a folder")
        base = _folder_prefix(prefix)
        if base:
            validate_key(base)
        jobs: list[UploadJob] = []
        for root, dirs, files in os.walk(src):  # symlinked folders are not followed
            dirs.sort()
            for name in sorted(files):
                path = Path(root, name)
                if not path.is_file():
                    continue
                rel = path.relative_to(src).as_posix()
                jobs.append(UploadJob(path, base + rel, path.stat().st_size))
        if transfer is not None:
            transfer.add_total(sum(j.size for j in jobs), files=len(jobs))
        self._upload(bucket, jobs, transfer)
        return len(jobs)

    def get_prefix(self, bucket: str, prefix: str, dest: Path, *, transfer: Transfer | None = None) -> int:
        base = _folder_prefix(prefix)
        dest = Path(dest)
        objects = [o for o in self.iter_objects(bucket, base) if not o.key.endswith("/")]
        if not objects and not self.bucket_exists(bucket):
            raise NotFound(f"bucket {bucket!r} does not exist at {self.endpoint}")
        plan = plan_paths(objects, base, dest, bucket)
        if transfer is not None:
            transfer.add_total(sum(o.size for o, _ in plan), files=len(plan))
        dest.mkdir(parents=True, exist_ok=True)
        return self.get_many(bucket, plan, transfer=transfer)

    # -- delete, urls ---------------------------------------------------------------------------
    def delete(self, bucket: str, keys: Iterable[str]) -> int:
        keys = list(keys)
        for key in keys:  # every key checked before the first request: a bad one deletes nothing
            validate_key(key)
        deleted = 0
        errors: list[str] = []
        batch: list[str] = []

        def flush() -> None:
            nonlocal deleted
            with self._errors("delete", bucket, batch[0] if len(batch) == 1 else None):
                resp = self.client.delete_objects(
                    Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            failed = resp.get("Errors", [])
            deleted += len(batch) - len(failed)
            for e in failed:
                errors.append(f"{clean(e.get('Key', '?'))}: {clean(e.get('Code', ''))} {clean(e.get('Message', ''))}".strip())
            batch.clear()

        for key in keys:
            batch.append(key)
            if len(batch) == DELETE_BATCH:
                flush()
        if batch:
            flush()
        if errors:
            more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
            raise StoreError(
                f"deleted {deleted} objects from s3://{bucket}; {len(errors)} could not be deleted: "
                + "; ".join(errors[:5]) + more
            )
        return deleted

    def url(self, bucket: str, key: str, *, expires_s: int = 3600) -> str:
        if not 1 <= expires_s <= 7 * 24 * 3600:
            raise BadInput(f"expiry must be between 1 second and 7 days, got {expires_s} s")
        validate_key(key)
        with self._errors("sign a URL for", bucket, key):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
            )

    def uri(self, bucket: str, key: str = "") -> str:
        return f"s3://{bucket}/{key}"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
