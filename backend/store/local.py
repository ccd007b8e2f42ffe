"""The folder-backed object store: one folder per bucket under a root, one file per object.

Semantics follow S3 where a file system allows it:
- Keys are `/`-separated; each segment is a folder or file name. A key ending in `/` names a prefix
  (a folder). A file system cannot hold both an object `a` and objects under `a/`, nor empty or `.`
  segments (`a//b`, `a/./b`): such keys are refused with BadInput naming the key.
- Listing reads ONE folder (os.scandir), orders its names the way S3 orders keys (by UTF-8 bytes, a
  sub-folder `a` counting as `a/`) and returns one page; the continuation token encodes the last key
  returned. Only the entries of the returned page are stat'ed, so a page of a 100,000-entry folder
  costs one scandir, one partial sort and `page_size` stats; the next pages of a big, unchanged
  folder reuse the sorted scan (local_listing.ScanCache).
- Writes go to a temp file in the bucket's hidden `.dlaas-tmp/` folder (same file system, never
  listed) and are moved into place with os.replace: a reader sees the old object or the new one,
  never half of one. A cancelled transfer removes its temp file and leaves no object.
- ETags: the MD5 hex digest (as S3 gives for single-part uploads) for objects up to
  ETAG_MD5_LIMIT bytes, computed on stat; for bigger objects `"sm-" + sha1(size, mtime_ns, inode)`,
  a change detector that never reads the data. Listings leave `etag` unset (it would mean reading
  every file of the page).
- Symlinks inside a bucket are followed only while they resolve inside the bucket; anything that
  would resolve outside is refused on access and left out of listings.
"""
from __future__ import annotations

import bisect
import fcntl
import hashlib
import heapq
import os
import shutil
import stat as stat_mod
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

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
from .files import copy_stream, folder_files, process_alive, safe_dest_path, within
from .local_listing import (
    TMP_DIR,
    ScanCache,
    decode_token,
    encode_token,
    info_from_stat,
    sort_key,
    walk,
)

ETAG_MD5_LIMIT = 8 << 20


class LocalStore:
    """An ObjectStore on a local folder; safe to share between threads."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._scans = ScanCache()

    @classmethod
    def from_backend(cls, backend: Any) -> LocalStore:
        """The home's folder store (`backend`: the facade's Backend, whose paths name the folder)."""
        return cls(backend.paths.store_dir)

    def describe(self) -> str:
        return f"local folder {self.root}"

    # ----- buckets -------------------------------------------------------------------------------

    def _bucket_dir(self, bucket: str, *, must_exist: bool = True) -> Path:
        # Existing folders with legacy names (FfDL's `tf_training_data`) stay readable, so only the
        # rules that keep a name a single, visible folder are enforced here.
        if (
            not bucket
            or bucket.startswith(".")
            or any(c in bucket for c in "/\\\x00")
            or len(bucket.encode("utf-8", "surrogateescape")) > 255
        ):
            raise BadInput(f"invalid bucket name {bucket!r}")
        path = self.root / bucket
        if must_exist and not path.is_dir():
            raise NotFound(f"bucket {bucket!r} not found in {self.describe()}")
        return path

    def list_buckets(self) -> list[BucketInfo]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        out = []
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            st = entry.stat()
            out.append(BucketInfo(entry.name, datetime.fromtimestamp(st.st_mtime, tz=UTC)))
        return sorted(out, key=lambda b: sort_key(b.name))

    def bucket_exists(self, bucket: str) -> bool:
        return self._bucket_dir(bucket, must_exist=False).is_dir()

    def make_bucket(self, bucket: str) -> None:
        validate_bucket_name(bucket)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            (self.root / bucket).mkdir(mode=0o700)
        except FileExistsError:
            raise StoreError(f"bucket {bucket!r} already exists") from None

    def remove_bucket(self, bucket: str) -> None:
        path = self._bucket_dir(bucket)
        if any(e.name != TMP_DIR for e in os.scandir(path)):
            raise StoreError(f"bucket {bucket!r} is not empty")
        shutil.rmtree(path / TMP_DIR, ignore_errors=True)
        try:
            path.rmdir()
        except OSError as exc:
            raise StoreError(f"cannot remove bucket {bucket!r}: {exc.strerror}") from None

    def reclaim_leftovers(self, legacy_age_s: float = 3600.0) -> str:
        """Remove the temp files of writes whose writer was killed; returns what it did ("" if nothing).

        A temp file is `<pid>-<random>.part` in a bucket's TMP_DIR: it is left alone while that pid
        lives or while a writer holds its lock. Older unnamed ones go after `legacy_age_s`."""
        from .. import clock

        count = size = 0
        try:
            buckets = [e.path for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith(".")]
        except OSError:
            return ""
        for bdir in buckets:
            tmp_dir = Path(bdir, TMP_DIR)
            try:
                parts = [e for e in os.scandir(tmp_dir) if e.name.endswith(".part")]
            except OSError:
                continue
            for entry in parts:
                head = entry.name.split("-", 1)[0]
                pid = int(head) if head.isdigit() and "-" in entry.name else None
                try:
                    if pid is not None:
                        if pid == os.getpid() or process_alive(pid):
                            continue
                    elif clock.machine_time() - entry.stat().st_mtime < legacy_age_s:
                        continue
                    fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
                except OSError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    size += os.fstat(fd).st_size
                    os.unlink(entry.path)
                    count += 1
                except OSError:
                    continue  # a writer still holds it, or it went meanwhile
                finally:
                    os.close(fd)
        if not count:
            return ""
        return f"removed {count} temp file(s) ({size} bytes) that killed writers left in {self.root}"

    # ----- key to path ---------------------------------------------------------------------------

    def _segments(self, bucket: str, key: str) -> list[str]:
        validate_key(key)
        body = key[:-1] if key.endswith("/") else key
        segments = body.split("/")
        if any(seg in ("", ".") for seg in segments):
            raise BadInput(
                f"object key {key!r} in bucket {bucket!r}: empty or '.' path segments cannot be "
                "stored in the local store"
            )
        if segments[0] == TMP_DIR:
            raise BadInput(f"object key {key!r}: {TMP_DIR}/ is reserved by the local store")
        if any(len(seg.encode("utf-8", "surrogateescape")) > 255 for seg in segments):
            raise BadInput(f"object key {key!r}: a path segment is longer than 255 bytes")
        return segments

    def _path(self, bucket: str, key: str) -> Path:
        """The file for `key`, refusing keys that resolve outside the bucket (also via symlinks)."""
        bdir = self._bucket_dir(bucket)
        segments = self._segments(bucket, key)
        base = os.path.realpath(bdir)
        target = os.path.realpath(os.path.join(base, *segments))
        if not within(target, base) or target == base:
            raise BadInput(f"object key {key!r} resolves outside bucket {bucket!r}")
        return Path(target)

    def local_path(self, bucket: str, key_or_prefix: str = "") -> Path:
        """The folder or file behind a bucket/prefix, safely resolved, for read-only views (DATA_DIR).

        The bucket must exist; the path itself may not (yet): callers check, as they know whether
        a missing prefix is an error (training data) or not (a log not written yet).
        """
        if not key_or_prefix:
            return Path(os.path.realpath(self._bucket_dir(bucket)))
        return self._path(bucket, key_or_prefix)

    def _not_found(self, bucket: str, key: str, path: Path) -> NotFound:
        if path.is_dir():
            return NotFound(
                f"object {key!r} not found in bucket {bucket!r}: it is a folder (prefix {key.rstrip('/') + '/'!r})"
            )
        return NotFound(f"object {key!r} not found in bucket {bucket!r}")

    def _object_file(self, bucket: str, key: str) -> tuple[Path, os.stat_result]:
        if key.endswith("/"):
            raise BadInput(f"key {key!r} ends with '/': it names a prefix, not an object")
        path = self._path(bucket, key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"object {key!r} not found in bucket {bucket!r}") from None
        if not stat_mod.S_ISREG(st.st_mode):
            raise self._not_found(bucket, key, path)
        return path, st

    # ----- listing -------------------------------------------------------------------------------

    def _level(self, bucket: str, prefix: str) -> tuple[Path, str, str, str]:
        """(folder to scan, key of that folder, name filter, bucket realpath) for a prefix."""
        bdir = self._bucket_dir(bucket)
        base = os.path.realpath(bdir)
        folder_key, _, name_part = prefix.rpartition("/")
        folder_key = folder_key + "/" if folder_key else ""
        if folder_key:
            folder = self._path(bucket, folder_key)
        else:
            folder = Path(base)
        return folder, folder_key, name_part, base

    def list(
        self,
        bucket: str,
        prefix: str = "",
        *,
        page_size: int = 1000,
        token: str | None = None,
        start_after: str | None = None,
    ) -> ListPage:
        if page_size < 1:
            raise BadInput(f"page size must be at least 1, not {page_size}")
        if prefix:
            validate_key(prefix)
        folder, folder_key, name_part, base = self._level(bucket, prefix)
        after = b""
        if start_after:
            after = sort_key(start_after)
        if token:
            after = max(after, sort_key(decode_token(token, prefix)))
        rows, is_sorted = self._scans.scan(folder, folder_key, name_part, base, keep=bool(after))
        if is_sorted:
            start = bisect.bisect_right(rows, after, key=lambda r: r[0])
            chosen = rows[start : start + page_size + 1]
        else:
            # One more than a page tells whether another page follows without a second scan.
            chosen = heapq.nsmallest(page_size + 1, (r for r in rows if r[0] > after))
        more = len(chosen) > page_size
        items: list[ObjectInfo] = []
        for _, key, is_dir, path in chosen[:page_size]:
            if is_dir:
                items.append(ObjectInfo(key=key, is_prefix=True))
                continue
            try:
                items.append(info_from_stat(key, os.stat(path)))
            except FileNotFoundError:  # deleted between scan and stat
                continue
        next_token = encode_token(chosen[page_size - 1][1]) if more else None
        return ListPage(bucket=bucket, prefix=prefix, items=items, next_token=next_token)

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        if prefix:
            validate_key(prefix)
        folder, folder_key, name_part, base = self._level(bucket, prefix)
        yield from walk(folder, folder_key, name_part, base, frozenset({os.path.realpath(folder)}))

    # ----- reading -------------------------------------------------------------------------------

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        if key.endswith("/"):
            path = self._path(bucket, key)
            if not path.is_dir():
                raise NotFound(f"prefix {key!r} not found in bucket {bucket!r}")
            return ObjectInfo(key=key, is_prefix=True)
        path, st = self._object_file(bucket, key)
        md5 = None
        if st.st_size <= ETAG_MD5_LIMIT:
            md5 = hashlib.md5(usedforsecurity=False)
            with open(path, "rb") as fh:
                md5.update(fh.read())
        return info_from_stat(key, st, _etag(st, md5))

    def read_range(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes [offset, offset+length); past the end there is nothing (b"")."""
        if offset < 0 or (length is not None and length < 0):
            raise BadInput(f"invalid range offset={offset} length={length} for {key!r}")
        path, _ = self._object_file(bucket, key)
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read() if length is None else fh.read(length)

    def get_file(self, bucket: str, key: str, dest: Path, *, transfer: Transfer | None = None) -> Path:
        path, st = self._object_file(bucket, key)
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / key.rsplit("/", 1)[-1]
        if transfer is not None:
            transfer.add_total(st.st_size)
        self._download(path, dest, transfer)
        return dest

    def _download(self, path: Path, dest: Path, transfer: Transfer | None) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name[:40]}.", suffix=".part")
        try:
            with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
                copy_stream(src, dst, transfer)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if transfer is not None:
            transfer.file_done()

    def get_prefix(self, bucket: str, prefix: str, dest: Path, *, transfer: Transfer | None = None) -> int:
        folder_prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        objects = list(self.iter_objects(bucket, folder_prefix))
        dest = Path(dest)
        # Every target is checked before any byte moves, so a bad key leaves nothing half-done.
        plan = [(obj, safe_dest_path(dest, obj.key[len(folder_prefix) :])) for obj in objects]
        if transfer is not None:
            transfer.add_total(sum(o.size for o in objects), files=len(objects))
        for obj, target in plan:
            if transfer is not None:
                transfer.check()
            path, _ = self._object_file(bucket, obj.key)
            # Re-checked per file: a folder created by an earlier file could be a symlink by now.
            safe_dest_path(dest, obj.key[len(folder_prefix) :])
            self._download(path, target, transfer)
        return len(plan)

    # ----- writing -------------------------------------------------------------------------------

    def _target(self, bucket: str, key: str) -> Path:
        path = self._path(bucket, key)
        if path.is_dir():
            raise BadInput(
                f"object key {key!r} in bucket {bucket!r} is a folder in the local store "
                f"(it holds objects under {key + '/'!r})"
            )
        self._check_parents(bucket, key, path)
        return path

    def _check_parents(self, bucket: str, key: str, path: Path) -> None:
        bdir = Path(os.path.realpath(self._bucket_dir(bucket)))
        parent = path.parent
        while parent != bdir:
            if parent.exists() and not parent.is_dir():
                rel = parent.relative_to(bdir).as_posix()
                raise BadInput(
                    f"object key {key!r} in bucket {bucket!r}: {rel!r} is an object, so it "
                    "cannot also be a folder in the local store"
                )
            parent = parent.parent

    def _write(self, bucket: str, key: str, src: BinaryIO, transfer: Transfer | None) -> ObjectInfo:
        target = self._target(bucket, key)
        tmp_dir = self._bucket_dir(bucket) / TMP_DIR
        tmp_dir.mkdir(exist_ok=True)
        # The writer's pid names the temp file and a lock is held on it while it fills, so
        # reclaim_leftovers() can tell a killed writer's leftover from a write in progress.
        fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=f"{os.getpid()}-", suffix=".part")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            md5 = hashlib.md5(usedforsecurity=False)
            with os.fdopen(fd, "wb") as dst:
                copy_stream(src, dst, transfer, md5)
            for attempt in range(3):
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.replace(tmp, target)
                    break
                except FileNotFoundError:  # a delete pruned the empty parent meanwhile
                    if attempt == 2:
                        raise
                except IsADirectoryError:
                    raise BadInput(f"object key {key!r} in bucket {bucket!r} is a folder") from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if transfer is not None:
            transfer.file_done()
        st = target.stat()
        return info_from_stat(key, st, _etag(st, md5))

    def put_bytes(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        import io

        if key.endswith("/"):
            # An empty object named `dir/` is how S3 tools mark a folder; here it is the folder.
            if data:
                raise BadInput(f"object key {key!r} ends with '/': only an empty folder marker can")
            path = self._path(bucket, key)
            self._check_parents(bucket, key, path)
            if path.exists() and not path.is_dir():
                raise BadInput(f"{key!r} in bucket {bucket!r} is an object, not a folder")
            path.mkdir(parents=True, exist_ok=True)
            return ObjectInfo(key=key, is_prefix=True)
        return self._write(bucket, key, io.BytesIO(data), None)

    def put_file(self, src: Path, bucket: str, key: str, *, transfer: Transfer | None = None) -> ObjectInfo:
        if key.endswith("/"):
            raise BadInput(f"object key {key!r} ends with '/': give the object a name")
        src = Path(src)
        try:
            fh = open(src, "rb")
        except FileNotFoundError:
            raise NotFound(f"no such file: {src}") from None
        except IsADirectoryError:
            raise BadInput(f"{src} is a folder: upload it with put_folder") from None
        with fh:
            if transfer is not None:
                transfer.add_total(os.fstat(fh.fileno()).st_size)
            return self._write(bucket, key, fh, transfer)

    def put_folder(self, src: Path, bucket: str, prefix: str, *, transfer: Transfer | None = None) -> int:
        src = Path(src)
        if not src.is_dir():
            raise BadInput(f"{src} is not a folder")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        files = folder_files(src)
        plan = [(path, prefix + rel) for path, rel in files]
        for _, key in plan:  # refuse a bad key before writing anything
            self._segments(bucket, key)
        self._bucket_dir(bucket)
        if transfer is not None:
            transfer.add_total(sum(p.stat().st_size for p, _ in plan), files=len(plan))
        for path, key in plan:
            if transfer is not None:
                transfer.check()
            with open(path, "rb") as fh:
                self._write(bucket, key, fh, transfer)
        return len(plan)

    def delete(self, bucket: str, keys: Iterable[str]) -> int:
        keys = list(keys)
        paths = [(key, self._path(bucket, key)) for key in keys]  # all validated before any unlink
        base = Path(os.path.realpath(self._bucket_dir(bucket)))
        removed = 0
        for key, path in paths:
            try:
                if key.endswith("/"):
                    path.rmdir()  # a folder marker: only when empty, as S3 deletes only the marker
                else:
                    if path.is_dir():
                        continue
                    path.unlink()
                removed += 1
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                if key.endswith("/"):
                    continue
                raise StoreError(f"cannot delete {key!r} from bucket {bucket!r}: {exc.strerror}") from None
            _prune_empty(path.parent, base)
        return removed

    # ----- addresses -----------------------------------------------------------------------------

    def url(self, bucket: str, key: str, *, expires_s: int = 3600) -> str:
        return self._path(bucket, key).as_uri()

    def uri(self, bucket: str, key: str = "") -> str:
        if key:
            self._segments(bucket, key)
        return f"local://{bucket}/{key}"


def _etag(st: os.stat_result, md5) -> str:
    """The MD5 of a small object (S3's single-part ETag); a size/mtime/inode digest of a big one."""
    if st.st_size <= ETAG_MD5_LIMIT and md5 is not None:
        return md5.hexdigest()
    ident = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode()
    return "sm-" + hashlib.sha1(ident, usedforsecurity=False).hexdigest()


def _prune_empty(folder: Path, base: Path) -> None:
    """Remove folders left empty by a delete, as S3 prefixes vanish with their last object."""
    while folder != base and within(str(folder), str(base)):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


__all__ = ["LocalStore", "safe_dest_path", "TransferCancelled"]

