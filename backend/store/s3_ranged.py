"""Large-object downloads as parallel ranged GETs written in place into one preallocated temp file.

s3transfer's download path queues every 256 KiB of every part to a single IO thread that seeks
and writes it; on two busy cores that thread and its queue cost more CPU than the bytes. Here
each part's worker reads 1 MiB blocks straight into its own buffer and `os.pwrite`s them at their
offset, so a byte is copied once from the socket to the page cache. Parts share the small-file
pool. The temp file is renamed over the destination only when every part has its full length;
any failure or cancel closes and removes it, so no partial destination file is ever left.
"""
from __future__ import annotations

import concurrent.futures
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .base import Transfer
from .s3_errors import Where
from .s3_fastget import FastGetter
from .s3_retry import BrokenBody, retry

BLOCK = 1024 * 1024
MIN_PART = 32 * 1024 * 1024  # fewer, larger requests: each costs a round of signing and parsing


class RangedDownload:
    def __init__(
        self, client: Any, fast: FastGetter | None, where: Where, job: Any, part_size: int,
        transfer: Transfer | None, stop: threading.Event,
        report: Callable[[str, concurrent.futures.Future], None],
    ) -> None:
        self.client, self.fast, self.bucket, self.job = client, fast, where.bucket, job
        self.where = Where(where.endpoint, where.op, where.bucket, job.key)
        self.part_size = max(part_size, MIN_PART)
        self.transfer, self.stop, self.report = transfer, stop, report
        self.tmp = job.dest.with_name(f".{job.dest.name}.{secrets.token_hex(4)}.part")
        self.lock = threading.Lock()
        self.failed = threading.Event()  # one part failed: the others stop at their next block
        self.error: BaseException | None = None
        self.left = 0
        self.fd = -1

    def start(self, pool: concurrent.futures.Executor) -> None:
        size = self.job.size
        try:
            self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
            os.ftruncate(self.fd, size)
        except OSError as exc:
            self.error = exc
            self._finish()
            return
        spans = [(off, min(self.part_size, size - off)) for off in range(0, size, self.part_size)]
        self.left = len(spans)
        for span in spans:
            pool.submit(self._part, span).add_done_callback(self._part_done)

    def _part_done(self, fut: concurrent.futures.Future) -> None:
        err = concurrent.futures.CancelledError() if fut.cancelled() else fut.exception()
        with self.lock:
            self.left -= 1
            if err is not None and self.error is None:
                self.error = err
            last = self.left == 0
        if err is not None:
            self.failed.set()
        if last:
            self._finish()

    def _finish(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.error is None:
            try:
                os.replace(self.tmp, self.job.dest)
            except OSError as exc:
                self.error = exc
        result: concurrent.futures.Future = concurrent.futures.Future()
        if self.error is not None:
            self.tmp.unlink(missing_ok=True)
            result.set_exception(self.error)
        else:
            result.set_result(None)
        self.report(self.job.key, result)

    def _halted(self) -> bool:
        return self.stop.is_set() or self.failed.is_set() or (
            self.transfer is not None and self.transfer.cancelled
        )

    def _part(self, span: tuple[int, int]) -> None:
        buf = bytearray(BLOCK)
        retry(lambda attempt: self._read_part(span, buf, attempt), self.where, self._halted)

    def _read_part(self, span: tuple[int, int], buf: bytearray, attempt: int) -> None:
        """One attempt at a part: the fast getter first, botocore when it steps aside or on a retry."""
        off, length = span
        got = 0
        try:
            blocks = ((self.fast.get(self.bucket, self.job.key, self.job.etag, span, buf)
                       if self.fast is not None and attempt == 0 else None)
                      or self._slow(span))
            for block in blocks:
                if got + len(block) > length:
                    raise BrokenBody(f"more than the {length} bytes asked for at offset {off}")
                os.pwrite(self.fd, block, off + got)
                got += len(block)
                if self.transfer is not None:
                    self.transfer.advance(len(block))
                if self._halted():
                    blocks.close()  # type: ignore[attr-defined]
                    raise concurrent.futures.CancelledError()
            if got != length:
                raise BrokenBody(f"got {got} of {length} bytes at offset {off}")
        except BaseException:
            if self.transfer is not None:  # the bar counts each byte once, whatever is read again
                self.transfer.advance(-got)
            raise

    def _slow(self, span: tuple[int, int]) -> Iterator[bytes]:
        off, length = span
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket, "Key": self.job.key, "Range": f"bytes={off}-{off + length - 1}",
        }
        if self.job.etag:
            kwargs["IfMatch"] = f'"{self.job.etag}"'
        body = self.client.get_object(**kwargs)["Body"]
        with body:
            while block := body.read(BLOCK):
                yield block
