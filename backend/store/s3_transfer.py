"""Moving bytes: many uploads or downloads through ONE s3transfer TransferManager.

A folder of 10,000 small files is where plain `upload_file` loses to rclone: each call builds its
own manager and thread pool and does a HEAD per download. Here one manager (one executor, one
shared client with a connection pool at least as large as the workers) carries every file of a
call; downloads hand it the size and ETag the listing already gave, so no HEAD is sent and each
ranged GET carries If-Match. Progress increments arrive from worker threads and are summed into the
caller's Transfer (which locks). Cancelling cancels every future; s3transfer's failure cleanup then
aborts any multipart upload (so no object appears) and removes temp download files.
"""
from __future__ import annotations

import concurrent.futures
import queue
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import Transfer, TransferCancelled
from .s3_errors import translate, Where

_POLL_S = 0.05


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
    endpoint: str,
) -> None:
    from s3transfer.manager import TransferManager

    done: queue.SimpleQueue = queue.SimpleQueue()
    with TransferManager(client, config) as manager:
        submitted = 0
        for job in jobs:
            if transfer is not None and transfer.cancelled:
                break
            sub = _subscriber(transfer, job.size, None, done, job.key)
            manager.upload(str(job.src), bucket, job.key, subscribers=[sub])
            submitted += 1
        _wait(submitted, done, transfer, Where(endpoint, "upload", bucket))


def run_downloads(
    client: Any, config: Any, bucket: str, jobs: Sequence[DownloadJob], transfer: Transfer | None,
    endpoint: str,
) -> None:
    from s3transfer.manager import TransferManager

    done: queue.SimpleQueue = queue.SimpleQueue()
    with TransferManager(client, config) as manager:
        submitted = 0
        for job in jobs:
            if transfer is not None and transfer.cancelled:
                break
            job.dest.parent.mkdir(parents=True, exist_ok=True)
            sub = _subscriber(transfer, job.size, job.etag, done, job.key)
            manager.download(bucket, job.key, str(job.dest), subscribers=[sub])
            submitted += 1
        _wait(submitted, done, transfer, Where(endpoint, "download", bucket))


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
