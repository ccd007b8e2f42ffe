"""How the folder store reads folders as S3 listings: key order, tokens, one-level scans, walks.

S3 orders keys by their UTF-8 bytes, and a delimiter listing shows a sub-folder `a` as the prefix
`a/`, in that same order. Sorting one folder's names that way (sub-folders keyed `name/`) gives
S3's order for one level, and a depth-first walk in that order gives S3's flat order for a subtree.
"""
from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from .. import clock
from ..errors import BadInput
from .base import ObjectInfo
from .files import within

TMP_DIR = ".dlaas-tmp"  # per-bucket temp files of writes in progress; never listed
_TOKEN_PREFIX = "lk1."
CACHE_MIN_ENTRIES = 2000
STABLE_NS = 2_000_000_000

Row = tuple[bytes, str, bool, str]  # (sort key, key, is_folder, path)


def sort_key(key: str) -> bytes:
    # surrogateescape keeps names that are not valid UTF-8 (possible on Linux) sortable as bytes
    return key.encode("utf-8", "surrogateescape")


def encode_token(key: str) -> str:
    return _TOKEN_PREFIX + base64.urlsafe_b64encode(sort_key(key)).decode("ascii")


def decode_token(token: str, prefix: str) -> str:
    try:
        if not token.startswith(_TOKEN_PREFIX):
            raise ValueError
        key = base64.urlsafe_b64decode(token[len(_TOKEN_PREFIX) :]).decode("utf-8", "surrogateescape")
    except ValueError:
        raise BadInput(f"invalid continuation token {token[:40]!r}") from None
    if not key.startswith(prefix):
        raise BadInput(f"continuation token does not belong to prefix {prefix!r}")
    return key


def info_from_stat(key: str, st: os.stat_result, etag: str | None = None) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=st.st_size,
        modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
        etag=etag,
    )


def scan_entries(folder: Path, folder_key: str, name_part: str, base: str):
    """(key, is_folder, DirEntry) for the visible entries of one folder whose names match.

    Symlinks that resolve outside the bucket (`base`) are left out, so are the temp folder at a
    bucket's top and anything that is neither a file nor a folder.
    """
    top = not folder_key
    try:
        it = os.scandir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return
    with it:
        for entry in it:
            name = entry.name
            if (top and name == TMP_DIR) or not name.startswith(name_part):
                continue
            try:
                if entry.is_symlink() and not within(os.path.realpath(entry.path), base):
                    continue
                is_dir = entry.is_dir()
                if not is_dir and not entry.is_file():
                    continue
            except OSError:
                continue
            yield (folder_key + name + "/" if is_dir else folder_key + name), is_dir, entry


class ScanCache:
    """The sorted rows of the last big folder paged through, while the folder stays unchanged.

    Paging through a big folder would rescan it for every page. Rows are kept from the second page
    on (a first page needs no full sort), only for folders left unchanged for STABLE_NS before the
    scan: a change after the scan then always gets a newer mtime, even on file systems whose
    timestamps are coarse, so a kept scan is never stale.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: tuple[tuple, list[Row]] | None = None

    @property
    def holding(self) -> bool:
        return self._kept is not None

    def clear(self) -> None:
        with self._lock:
            self._kept = None

    def scan(
        self, folder: Path, folder_key: str, name_part: str, base: str, keep: bool
    ) -> tuple[list[Row], bool]:
        """The rows of one folder, and whether they are sorted."""
        try:
            st = os.stat(folder)
        except (FileNotFoundError, NotADirectoryError):
            return [], True
        ident = (os.fspath(folder), folder_key, name_part, st.st_ino, st.st_mtime_ns)
        with self._lock:
            if self._kept is not None and self._kept[0] == ident:
                return self._kept[1], True
        started = clock.machine_time_ns()  # against the folder's mtime
        rows = [
            (sort_key(key), key, is_dir, entry.path)
            for key, is_dir, entry in scan_entries(folder, folder_key, name_part, base)
        ]
        if not keep or len(rows) < CACHE_MIN_ENTRIES or started - st.st_mtime_ns < STABLE_NS:
            return rows, False
        rows.sort()
        with self._lock:
            self._kept = (ident, rows)
        return rows, True


def walk(folder: Path, folder_key: str, name_part: str, base: str, seen: frozenset[str]) -> Iterator[ObjectInfo]:
    """Every object below `folder`, in S3's flat key order; symlink loops are entered once."""
    entries = sorted(scan_entries(folder, folder_key, name_part, base), key=lambda e: sort_key(e[0]))
    for key, is_dir, entry in entries:
        if is_dir:
            real = os.path.realpath(entry.path)
            if real in seen:
                continue
            yield from walk(Path(entry.path), key, "", base, seen | {real})
        else:
            try:
                yield info_from_stat(key, entry.stat())
            except FileNotFoundError:  # deleted since the scan
                continue
