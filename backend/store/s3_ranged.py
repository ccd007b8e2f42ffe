"""Large-object downloads as parallel ranged GETs written in place into one preallocated temp file.

s3transfer's download path queues every 256 KiB of every part to a single IO thread that seeks
and writes it; on two busy cores that thread and its queue cost more CPU than the bytes. Here
each part's worker reads 1 MiB blocks straight into its own buffer and `os.pwrite`s them at their
offset, so a byte is copied once from the socket to the page cache. Parts share the small-file
pool. The temp file is renamed over the destination only when every part has its full length
and, for an object that carries our whole-object CRC32 (s3_checksum), when the parts' CRCs,
summed as they arrive and combined, match it; a mismatch reads the whole object again (the
retry policy's attempts and pauses), then fails naming the key. Any failure or cancel closes and
removes the temp file, so no partial destination file is ever left.
"""
from __future__ import annotations

import concurrent.futures
import os
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import StoreError
from .base import Transfer
from .s3_checksum import HEADER, META_KEY, combine_all, parse
from .s3_errors import Where
from .s3_fastget import FastGetter
from .s3_retry import ATTEMPTS, BrokenBody, pause_s, retry

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
        self.pool: concurrent.futures.Executor | None = None
        self.spans: list[tuple[int, int]] = []
        self.crcs: list[int | None] = []  # each part's CRC32, where the object carries ours
        self.expected: int | None = None  # the object's whole CRC32 (its x-amz-meta-dlaas-crc32)
        self.round = 0  # whole-object reads so far that failed their CRC

    def start(self, pool: concurrent.futures.Executor) -> None:
        size = self.job.size
        self.pool = pool
        try:
            self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
            os.ftruncate(self.fd, size)
        except OSError as exc:
            self.error = exc
            self._finish()
            return
        self.spans = [(off, min(self.part_size, size - off)) for off in range(0, size, self.part_size)]
        if not self._submit_all():
            self._finish()

    def _submit_all(self) -> bool:
        """Send every part; False when none could be (the pool is shutting down after a failure)."""
        assert self.pool is not None
        self.crcs = [None] * len(self.spans)
        with self.lock:
            self.left = len(self.spans)
        for i, span in enumerate(self.spans):
            try:
                fut = self.pool.submit(self._part, i, span)
            except RuntimeError:
                with self.lock:
                    if self.error is None:
                        self.error = concurrent.futures.CancelledError()
                    self.left -= len(self.spans) - i
                    last = self.left == 0
                self.failed.set()
                return not last
            fut.add_done_callback(self._part_done)
        return True

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

    def _crc_ok(self) -> bool:
        if self.expected is None:
            return True
        if any(c is None for c in self.crcs):
            return False
        return combine_all([(c, n) for c, (_, n) in zip(self.crcs, self.spans, strict=True)]) == self.expected  # type: ignore[misc]

    def _read_again(self) -> bool:
        """After a CRC mismatch: read the whole object again (True), or set the error (False)."""
        self.round += 1
        if self.round >= ATTEMPTS:
            self.error = StoreError(
                f"{self.where.op} {self.where.target} failed after {ATTEMPTS} attempts: the bytes do not "
                f"match the object's CRC32 ({HEADER})"
            )
            return False
        if self.transfer is not None:  # the bar counts each byte once, whatever is read again
            self.transfer.advance(-self.job.size)
        deadline = time.monotonic() + pause_s(self.round)
        while time.monotonic() < deadline and not self._halted():
            time.sleep(0.02)
        if self._halted():
            self.error = concurrent.futures.CancelledError()
            return False
        self.expected = None
        return self._submit_all()

    def _finish(self) -> None:
        if self.error is None and not self._crc_ok() and self._read_again():
            return
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

    def _part(self, index: int, span: tuple[int, int]) -> None:
        buf = bytearray(BLOCK)
        retry(lambda attempt: self._read_part(index, span, buf, attempt), self.where, self._halted)

    def _read_part(self, index: int, span: tuple[int, int], buf: bytearray, attempt: int) -> None:
        """One attempt at a part: the fast getter first, botocore when it steps aside or on a retry."""
        off, length = span
        got = 0
        meta: dict[str, str] = {}
        try:
            blocks = ((self.fast.get(self.bucket, self.job.key, self.job.etag, span, buf, meta)
                       if self.fast is not None and attempt == 0 else None)
                      or self._slow(span, meta))
            expected = parse(meta.get(META_KEY))
            crc = 0
            for block in blocks:
                if got + len(block) > length:
                    raise BrokenBody(f"more than the {length} bytes asked for at offset {off}")
                os.pwrite(self.fd, block, off + got)
                if expected is not None:
                    crc = zlib.crc32(block, crc)
                got += len(block)
                if self.transfer is not None:
                    self.transfer.advance(len(block))
                if self._halted():
                    blocks.close()  # type: ignore[attr-defined]
                    raise concurrent.futures.CancelledError()
            if got != length:
                raise BrokenBody(f"got {got} of {length} bytes at offset {off}")
            if expected is not None:
                with self.lock:  # every part is read with If-Match: one version, one value
                    if self.expected is None:
                        self.expected = expected
                self.crcs[index] = crc
        except BaseException:
            if self.transfer is not None:  # the bar counts each byte once, whatever is read again
                self.transfer.advance(-got)
            raise

    def _slow(self, span: tuple[int, int], meta: dict[str, str]) -> Iterator[bytes]:
        off, length = span
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket, "Key": self.job.key, "Range": f"bytes={off}-{off + length - 1}",
        }
        if self.job.etag:
            kwargs["IfMatch"] = f'"{self.job.etag}"'
        resp = self.client.get_object(**kwargs)
        meta.update({k.lower(): v for k, v in (resp.get("Metadata") or {}).items()})
        return _blocks(resp["Body"])


def _blocks(body: Any) -> Iterator[bytes]:
    with body:
        while block := body.read(BLOCK):
            yield block
