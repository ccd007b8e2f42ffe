"""Moving bytes: all the files of one call as ONE batch (one thread pool, one transfer manager).

A folder of 10,000 small files is where plain `upload_file` loses to rclone: each call builds its
own manager and thread pool and does a HEAD per download. Uploads at or over the multipart
threshold go through one s3transfer TransferManager; downloads of that size are parallel ranged
GETs (s3_ranged) on the same pool as the small files, which go as single requests (small GETs on
kept-alive http.client connections, s3_fastget). Downloads use the size and ETag the listing
already gave, so no HEAD is sent and every GET carries If-Match. Progress increments arrive from
worker threads and are summed into the caller's Transfer (which locks). Cancelling cancels every
future; s3transfer's failure cleanup then aborts any multipart upload (so no object appears), and
every download removes its temp file.
"""
from __future__ import annotations

import concurrent.futures
import copy
import hashlib
import os
import re
import queue
import secrets
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadInput, StoreError
from . import s3_checksum
from .base import ObjectInfo, Transfer, TransferCancelled, validate_key
from .s3_errors import Where, clean, translate
from .s3_fastget import ETAG_NOT_MD5, FastGetter, etag_not_md5
from .s3_ranged import RangedDownload
from .s3_retry import BrokenBody, retry

_POLL_S = 0.05
# Multipart parts in flight at once, at most. Measured (bench/s3_levers.py, 340 MiB to weed mini on
# 2 busy cores, median of 3; load 9-13): 8 MiB parts x 16 7.3 s, 8 x 8 8.2 s, 16 x 8 8.2 s,
# 16 x 16 12.0 s, 16 x 32 12.5 s; rclone 13.5 s. Uploads wait on the server's disk more than on
# either CPU, and more parts at once only queue there. Small files keep the whole concurrency.
PART_CONCURRENCY = 16
_MD5_ETAG = re.compile(r"[0-9a-fA-F]{32}")


@dataclass(frozen=True)
class UploadJob:
    src: Path
    key: str
    size: int


@dataclass(frozen=True)
class DownloadJob:
    key: str
    dest: Path
    size: int | None = None
    etag: str | None = None  # without quotes, as ObjectInfo holds it


def _subscriber(transfer: Transfer | None, size: int | None, etag: str | None, done: queue.SimpleQueue, key: str) -> Any:
    from s3transfer.subscribers import BaseSubscriber

    class _Progress(BaseSubscriber):
        def on_queued(self, future: Any, **kwargs: Any) -> None:
            # Giving size and ETag up front skips the HEAD s3transfer would send per download.
            if size is not None:
                future.meta.provide_transfer_size(size)
            if etag is not None:
                future.meta.provide_object_etag(f'"{etag}"')

        def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
            if transfer is not None:
                transfer.advance(bytes_transferred)

        def on_done(self, future: Any, **kwargs: Any) -> None:
            done.put((key, future))

    return _Progress()


def transfer_config(settings: Any, *, concurrency: int | None = None) -> Any:
    from s3transfer.manager import TransferConfig

    mib = 1024 * 1024
    return TransferConfig(
        multipart_threshold=settings.multipart_threshold_mb * mib,
        multipart_chunksize=settings.multipart_chunksize_mb * mib,
        max_request_concurrency=concurrency or settings.max_concurrency,
    )


def run_uploads(
    client: Any, config: Any, bucket: str, jobs: Sequence[UploadJob], transfer: Transfer | None,
    endpoint: str, *, wire: Any = None,
) -> None:
    def submit(manager: Any, job: UploadJob, sub: Any, crc: str | None = None) -> None:
        extra = {"Metadata": {s3_checksum.META_KEY: crc}} if crc is not None else None
        manager.upload(str(job.src), bucket, job.key, extra_args=extra, subscribers=[sub])

    fast = _fast(client, wire)

    def small(job: UploadJob, stop: threading.Event) -> None:
        if stop.is_set():
            raise concurrent.futures.CancelledError()
        if fast is None or not fast.put(bucket, job.key, job.src, job.size):
            with open(job.src, "rb") as body:
                client.put_object(Bucket=bucket, Key=job.key, Body=body)
        if transfer is not None:
            transfer.advance(job.size)

    try:
        _run(client, config, jobs, submit, small, transfer, Where(endpoint, "upload", bucket))
    finally:
        if fast is not None:
            fast.close()


def run_downloads(
    client: Any, config: Any, bucket: str, jobs: Sequence[DownloadJob], transfer: Transfer | None,
    endpoint: str, *, wire: Any = None,
) -> None:
    made: set[Path] = set()
    for job in jobs:  # one mkdir per folder, not per file: it is slow on busy overlay disks
        if job.dest.parent not in made:
            job.dest.parent.mkdir(parents=True, exist_ok=True)
            made.add(job.dest.parent)

    def submit(manager: Any, job: DownloadJob, sub: Any) -> None:
        manager.download(bucket, job.key, str(job.dest), subscribers=[sub])

    fast = _fast(client, wire)
    where = Where(endpoint, "download", bucket)

    def small(job: DownloadJob, stop: threading.Event) -> None:
        _get_small(client, where, job, transfer, stop, fast)

    def ranged(job: DownloadJob, pool: Any, stop: threading.Event, report: Callable[[str, Any], None]) -> None:
        part = config.multipart_chunksize
        RangedDownload(client, fast, where, job, part, transfer, stop, report).start(pool)

    try:
        _run(client, config, jobs, submit, small, transfer, where, ranged)
    finally:
        if fast is not None:
            fast.close()


def _fast(client: Any, wire: Any) -> FastGetter | None:
    """The fast path beside this client; `wire` (s3_client.Wire) gives its credentials and verify."""
    if wire is None:
        return FastGetter.for_client(client)
    return FastGetter.for_client(client, verify=wire.verify, credentials=wire.credentials)


def _get_small(
    client: Any, where: Where, job: DownloadJob, transfer: Transfer | None, stop: threading.Event,
    fast: FastGetter | None = None,
) -> None:
    """One GET into a temp file beside the target, then rename; a broken body is read again."""
    tmp = job.dest.with_name(f".{job.dest.name}.{secrets.token_hex(4)}.part")
    # A single-part object's ETag is the MD5 of its bytes (a multipart one has a `-N` suffix, and
    # our own carry a whole-object CRC32 in their metadata instead: s3_checksum).
    md5_etag = job.etag.lower() if job.etag and _MD5_ETAG.fullmatch(job.etag) else None

    def attempt(n: int) -> None:
        got = 0
        digest = hashlib.md5(usedforsecurity=False) if md5_etag else None
        meta: dict[str, str] = {}
        try:
            chunks = ((fast.get(where.bucket, job.key, job.etag, meta=meta) if fast is not None and n == 0 else None)
                      or _slow_get(client, where.bucket, job, meta))
            crc = 0
            want_crc = None if digest is not None else s3_checksum.parse(meta.get(s3_checksum.META_KEY))
            # os.open/os.write: Python's buffered open() adds an fstat, an ioctl and an lseek per
            # file (~10-30 us measured here, per 16 KiB file of a folder).
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
            try:
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view):]
                    got += len(chunk)
                    if digest is not None:
                        digest.update(chunk)
                    elif want_crc is not None:
                        crc = zlib.crc32(chunk, crc)
                    if transfer is not None:
                        transfer.advance(len(chunk))
            finally:
                os.close(out)
            if job.size is not None and got != job.size:
                raise BrokenBody(f"got {got} of {job.size} bytes")
            if digest is not None and digest.hexdigest() != md5_etag and ETAG_NOT_MD5 not in meta:
                raise BrokenBody(f"the bytes do not match the object's MD5 (ETag {md5_etag})")
            if want_crc is not None and crc != want_crc:
                raise BrokenBody(f"the bytes do not match the object's CRC32 ({s3_checksum.HEADER})")
        except BaseException:
            if transfer is not None:  # the bar counts each byte once, whatever is read again
                transfer.advance(-got)
            raise
        os.replace(tmp, job.dest)

    try:
        retry(attempt, Where(where.endpoint, where.op, where.bucket, job.key),
              lambda: stop.is_set() or (transfer is not None and transfer.cancelled))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _slow_get(client: Any, bucket: str, job: DownloadJob, meta: dict[str, str]) -> Iterator[bytes]:
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": job.key}
    if job.etag:
        kwargs["IfMatch"] = f'"{job.etag}"'
    resp = client.get_object(**kwargs)
    meta.update({k.lower(): v for k, v in (resp.get("Metadata") or {}).items()})
    if etag_not_md5("x-amz-server-side-encryption", resp.get("ServerSideEncryption") or "") \
            or resp.get("SSECustomerAlgorithm"):
        meta[ETAG_NOT_MD5] = resp.get("ServerSideEncryption") or resp.get("SSECustomerAlgorithm")
    return _chunks(resp["Body"])


def _chunks(body: Any) -> Iterator[bytes]:
    with body:
        yield from body.iter_chunks(256 * 1024)


def _run(
    client: Any, config: Any, jobs: Sequence[Any], submit_large: Callable[..., None],
    do_small: Callable[[Any, threading.Event], None], transfer: Transfer | None, where: Where,
    ranged: Callable[[Any, Any, threading.Event, Callable[[str, Any], None]], None] | None = None,
) -> None:
    """Large files through `ranged` (downloads, sharing the small files' pool) or one TransferManager
    (uploads, which finish before the small files start); small ones as single requests on one
    thread pool. s3transfer's machinery costs about 2 ms of CPU per file on top of
    the ~1 ms the request itself costs; for a folder of 16 KiB files that is most of the time."""
    from s3transfer.manager import TransferManager

    if transfer is not None:
        transfer.check()  # cancelled before it started: move nothing
    threshold = config.multipart_threshold
    large = [j for j in jobs if j.size is None or j.size >= threshold]
    small = [j for j in jobs if j.size is not None and j.size < threshold]
    done: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def guarded(job: Any, stop: threading.Event) -> None:
        # A queued job may start before _wait sees a cancel: it checks the transfer itself.
        if stop.is_set() or (transfer is not None and transfer.cancelled):
            raise concurrent.futures.CancelledError()
        do_small(job, stop)

    pool = concurrent.futures.ThreadPoolExecutor(config.max_request_concurrency, thread_name_prefix="s3-small")
    # Uploads: each multipart file's whole CRC32 (s3_checksum), summed in order, one thread per
    # core, so the first file's upload starts while the others' are still being summed.
    summer = (concurrent.futures.ThreadPoolExecutor(min(4, os.cpu_count() or 1), thread_name_prefix="s3-crc")
              if ranged is None and large else None)
    try:
        parts = copy.copy(config)
        parts.max_request_concurrency = min(config.max_request_concurrency, PART_CONCURRENCY)
        sums: dict[int, concurrent.futures.Future] = {}
        if summer is not None:
            def halted() -> bool:
                return stop.is_set() or (transfer is not None and transfer.cancelled)

            sums = {i: s3_checksum.file_crc32(job.src, job.size, summer, halted) for i, job in enumerate(large)}
        with TransferManager(client, parts) as manager:
            count = 0
            for i, job in enumerate(large):
                if transfer is not None and transfer.cancelled:
                    break
                if ranged is not None and job.size is not None:
                    ranged(job, pool, stop, lambda key, fut: done.put((key, fut)))
                    count += 1
                    continue
                sub = _subscriber(transfer, job.size, getattr(job, "etag", None), done, job.key)
                if i in sums:
                    submit_large(manager, job, sub, _crc_of(sums[i], transfer, where, job.key))
                else:
                    submit_large(manager, job, sub)
                count += 1
            if ranged is None and count and small:
                # Uploads: the multipart parts first, then the small files, each phase with the whole
                # concurrency. Both at once put two full pools of requests on the same cores and
                # measured slower than one after the other (bench_s3_transfer, folder up).
                _wait(count, done, transfer, where)
                count = 0
            for job in small:
                if transfer is not None and transfer.cancelled:
                    break
                fut = pool.submit(guarded, job, stop)
                fut.add_done_callback(lambda f, key=job.key: done.put((key, f)))
                count += 1
            try:
                _wait(count, done, transfer, where)
            except BaseException:
                stop.set()  # queued small files stop before their request; the manager cancels
                raise
    finally:
        stop.set()  # on success every job is done already; otherwise queued ones must not start
        pool.shutdown(wait=True, cancel_futures=True)
        if summer is not None:
            summer.shutdown(wait=True, cancel_futures=True)


def _crc_of(fut: concurrent.futures.Future, transfer: Transfer | None, where: Where, key: str) -> str:
    """The file's CRC32 for its metadata, once summed; a cancel or a read error stops the put."""
    while True:
        if transfer is not None and transfer.cancelled:
            raise TransferCancelled(f"{where.op} s3://{where.bucket}: transfer cancelled")
        try:
            return s3_checksum.encode(fut.result(timeout=_POLL_S))
        except concurrent.futures.TimeoutError:
            continue
        except BaseException as exc:  # noqa: BLE001 - translated with the key
            if transfer is not None and transfer.cancelled:
                raise TransferCancelled(f"{where.op} s3://{where.bucket}: transfer cancelled") from None
            raise translate(exc, Where(where.endpoint, where.op, where.bucket, key)) from None


def _wait(
    count: int, done: queue.SimpleQueue, transfer: Transfer | None, where: Where
) -> None:
    """Collect `count` finished futures, watching for a cancel; the first failure cancels the rest.

    Raising out of the TransferManager's `with` block makes it cancel every future and wait for
    them, so their cleanup (abort multipart, delete temp files) has run when the caller sees it.
    """
    if transfer is not None and transfer.cancelled:  # cancelled before anything was submitted
        raise TransferCancelled(f"{where.op} s3://{where.bucket}: transfer cancelled")
    finished = 0
    while finished < count:
        if transfer is not None and transfer.cancelled:
            raise TransferCancelled(f"{where.op} s3://{where.bucket}: transfer cancelled")
        try:
            key, fut = done.get(timeout=_POLL_S)
        except queue.Empty:
            continue
        finished += 1
        try:
            fut.result()
        except BaseException as exc:  # noqa: BLE001 - translated below
            if transfer is not None and transfer.cancelled:
                raise TransferCancelled(f"{where.op} s3://{where.bucket}: transfer cancelled") from None
            raise translate(exc, Where(where.endpoint, where.op, where.bucket, key)) from None
        if transfer is not None:
            transfer.file_done()
    if transfer is not None and transfer.cancelled:  # the cancel came as the last bytes went
        raise TransferCancelled(f"{where.op} s3://{where.bucket}: transfer cancelled")


def plan_paths(objects: list[ObjectInfo], base: str, dest: Path, bucket: str) -> list[tuple[ObjectInfo, Path]]:
    """Where each object lands under `dest`; any key that would escape it refuses the whole get.

    Checking every key before the first byte moves means a hostile listing (`../x`, `/etc/x`)
    writes nothing at all, rather than half a folder.
    """
    root = dest.resolve()
    plan: list[tuple[ObjectInfo, Path]] = []
    files: set[str] = set()
    for obj in objects:
        rel = obj.key[len(base):]
        try:
            validate_key(rel)
        except BadInput:
            raise StoreError(
                f"refusing to download s3://{bucket}: the key {clean(obj.key)!r} would be written "
                f"outside {dest}"
            ) from None
        files.add(rel)
        plan.append((obj, root / rel))
    for rel in files:  # `a` and `a/b` cannot both be files on disk
        parts = rel.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise StoreError(
                    f"cannot download s3://{bucket}/{base}: {'/'.join(parts[:i])!r} is both an "
                    "object and a folder"
                )
    return plan
