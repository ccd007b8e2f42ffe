"""The ObjectStore protocol, its data types, key safety and transfer progress.

Listing is always ONE level (delimiter `/`) and paged with a continuation token: no call here ever
walks a whole bucket unless the caller asks to (`iter_objects`, used by folder get and recursive rm).
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import BadInput, DlaasError


class TransferCancelled(DlaasError):
    """The user cancelled a transfer; nothing half-written is left visible."""


@dataclass(frozen=True)
class BucketInfo:
    name: str
    created: datetime | None = None


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # full key; for a prefix it ends with "/"
    size: int = 0
    modified: datetime | None = None
    etag: str | None = None
    is_prefix: bool = False

    @property
    def name(self) -> str:
        """The last path segment (for a prefix, with its trailing slash)."""
        stripped = self.key[:-1] if self.is_prefix else self.key
        base = stripped.rsplit("/", 1)[-1]
        return base + "/" if self.is_prefix else base


@dataclass(frozen=True)
class ListPage:
    bucket: str
    prefix: str
    items: list[ObjectInfo]  # prefixes and objects of this one level, in key order
    next_token: str | None = None  # pass back as `token` for the next page; None = last page


class Transfer:
    """Progress and cancellation of one transfer (a file or a folder), safe across threads.

    Stores call `add_total` before moving bytes, then `advance` with byte increments (from any
    thread); the UI reads `done`/`total` or gets `on_update` calls. `cancel()` makes the store stop,
    clean up (abort multipart, remove temp files) and raise TransferCancelled.
    """

    def __init__(self, on_update: Callable[[Transfer], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self.total = 0
        self.done = 0
        self.files_total = 0
        self.files_done = 0
        self.on_update = on_update

    def add_total(self, nbytes: int, files: int = 1) -> None:
        with self._lock:
            self.total += nbytes
            self.files_total += files
        self._notify()

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.done += nbytes
        self._notify()

    def file_done(self) -> None:
        with self._lock:
            self.files_done += 1
        self._notify()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        if self._cancelled.is_set():
            raise TransferCancelled("transfer cancelled")

    @property
    def fraction(self) -> float:
        return 1.0 if self.total == 0 else min(1.0, self.done / self.total)

    def _notify(self) -> None:
        if self.on_update is not None:
            self.on_update(self)


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def validate_bucket_name(name: str) -> str:
    """S3's rules for new bucket names: 3-63 chars, lowercase letters, digits, dots, hyphens."""
    problems = []
    if not _BUCKET_RE.match(name or ""):
        problems.append(
            "3-63 characters of lowercase letters, digits, '.' and '-', starting and ending "
            "with a letter or digit"
        )
    if ".." in name or ".-" in name or "-." in name:
        problems.append("no adjacent periods or period-hyphen pairs")
    if _IP_RE.match(name or ""):
        problems.append("not formatted as an IP address")
    if name.startswith("xn--") or name.endswith("-s3alias"):
        problems.append("no reserved prefix or suffix")
    if problems:
        raise BadInput(f"invalid bucket name {name!r}: must be " + "; ".join(problems))
    return name


def validate_key(key: str) -> str:
    """Refuse keys that could escape a folder: absolute, `..` segments, NUL, backslashes-as-dirs."""
    if not key:
        raise BadInput("invalid object key '': a key cannot be empty")
    if "\x00" in key:
        raise BadInput(f"invalid object key {key!r}: it holds a NUL byte")
    if key.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", key):
        raise BadInput(f"invalid object key {key!r}: absolute keys are refused")
    segments = re.split(r"[\\/]", key)
    if any(seg == ".." for seg in segments):
        raise BadInput(f"invalid object key {key!r}: a '..' segment is refused")
    return key


def split_location(location: str) -> tuple[str, str]:
    """`BUCKET/KEY`, `s3://BUCKET/KEY` or `BUCKET` -> (bucket, key-or-prefix)."""
    loc = location
    for scheme in ("s3://", "local://", "cos://"):
        if loc.startswith(scheme):
            loc = loc[len(scheme) :]
            break
    bucket, _, key = loc.partition("/")
    if not bucket:
        raise BadInput(f"{location!r}: expected BUCKET/KEY")
    return bucket, key


@runtime_checkable
class ObjectStore(Protocol):
    kind: str  # "local" or "s3"

    def describe(self) -> str:
        """Where this store is, for messages (a folder or an endpoint), with no secrets."""
        ...

    def list_buckets(self) -> list[BucketInfo]: ...

    def bucket_exists(self, bucket: str) -> bool: ...

    def make_bucket(self, bucket: str) -> None: ...

    def remove_bucket(self, bucket: str) -> None:
        """Remove an empty bucket."""
        ...

    def list(
        self,
        bucket: str,
        prefix: str = "",
        *,
        page_size: int = 1000,
        token: str | None = None,
        start_after: str | None = None,
    ) -> ListPage: ...

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under `prefix`, recursively, fetched page by page."""
        ...

    def stat(self, bucket: str, key: str) -> ObjectInfo: ...

    def read_range(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> bytes: ...

    def put_bytes(self, bucket: str, key: str, data: bytes) -> ObjectInfo: ...

    def put_file(
        self, src: Path, bucket: str, key: str, *, transfer: Transfer | None = None
    ) -> ObjectInfo: ...

    def get_file(
        self, bucket: str, key: str, dest: Path, *, transfer: Transfer | None = None
    ) -> Path: ...

    def put_folder(
        self, src: Path, bucket: str, prefix: str, *, transfer: Transfer | None = None
    ) -> int:
        """Upload a folder recursively under `prefix`; returns the number of objects."""
        ...

    def get_prefix(
        self, bucket: str, prefix: str, dest: Path, *, transfer: Transfer | None = None
    ) -> int:
        """Download every object under `prefix` into `dest`; keys never escape `dest`."""
        ...

    def delete(self, bucket: str, keys: Iterable[str]) -> int: ...

    def url(self, bucket: str, key: str, *, expires_s: int = 3600) -> str:
        """A URL to fetch the object: presigned https on S3, file:// on the local store."""
        ...

    def uri(self, bucket: str, key: str = "") -> str:
        """`s3://bucket/key` (or `local://bucket/key`)."""
        ...


# -- optional features: a store offers one by having its method; callers ask `isinstance(store, F)` --


@runtime_checkable
class ManyGets(Protocol):
    """Download listed objects to the given paths in one go (one transfer manager, no HEAD per object)."""

    def get_many(
        self, bucket: str, items: Iterable[tuple[ObjectInfo, Path]], *, transfer: Transfer | None = None
    ) -> int:
        """The caller has checked the paths; returns how many objects were downloaded."""
        ...


@runtime_checkable
class LeftoverReclaim(Protocol):
    """Tidy what killed writers left in the store (temp files, open multipart uploads)."""

    def reclaim_leftovers(self) -> str:
        """What it did, for the log ("" if nothing)."""
        ...


@runtime_checkable
class LocalFolders(Protocol):
    """A folder store: the folder or file behind a bucket/prefix, for read-only views (no copy)."""

    def local_path(self, bucket: str, key_or_prefix: str = "") -> Path:
        """Safely resolved; the bucket must exist, the path itself may not (yet)."""
        ...


OPTIONAL_STORE_FEATURES: tuple[type, ...] = (ManyGets, LeftoverReclaim, LocalFolders)
