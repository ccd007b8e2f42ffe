"""A download cache shared by every run on this machine whose training data lives in a store.

A sweep of 100 runs over the same `training_data` prefix should download it once. `fetch()` lists
the prefix, downloads each object the cache does not hold yet (keyed by the store's endpoint, the
bucket, the key and the ETag, so a changed object is a new entry), then materializes the run's
DATA_DIR with hard links to the cached files (a copy where linking is impossible).

Processes share the cache safely: each entry has a lock file (flock); a downloader holds it
exclusively, and a run holds it shared while it links, so eviction (which needs it exclusively and
never waits for it) skips entries in use. Files land under a temp name and are renamed into place,
so a half-downloaded entry is never seen. Cached files are made read-only, and an entry whose size
or mtime changed (a run wrote through its hard link) is dropped and fetched again.

Layout under `root`: `objects/ab/<id>` (data), `objects/ab/<id>.json` (what it is; its mtime is
the last use, for LRU), `locks/ab/<id>.lock`, `tmp/`.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend import clock
from .errors import BadInput, StoreError
from .store.base import ManyGets, ObjectInfo, ObjectStore, Transfer, validate_key

GROUP = 256  # entries locked at once: bounds open lock files for huge prefixes


@dataclass(frozen=True)
class CacheEvent:
    """A progress report for the run's event log: `phase` is plan, download, link, evict or done."""

    phase: str
    message: str
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0


@dataclass(frozen=True)
class _Item:
    obj: ObjectInfo
    rel: str
    entry_id: str


class DataCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise BadInput(f"cache size limit must be positive, got {max_bytes}")
        self.root = Path(root)
        self.max_bytes = max_bytes
        for sub in ("objects", "locks", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- public ---------------------------------------------------------------------------------
    def fetch(
        self,
        store: ObjectStore,
        bucket: str,
        prefix: str,
        dest_dir: Path,
        transfer: Transfer | None = None,
        on_event: Callable[[CacheEvent], None] | None = None,
        *,
        link: bool = True,
    ) -> Path:
        """Make `dest_dir` hold every object under `prefix` (as relative paths); returns dest_dir.

        `link=False` gives copies instead of hard links, for a reader the cache cannot trust not to
        write (one whose DATA_DIR is not a read-only mount)."""
        emit = on_event or (lambda e: None)
        base = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        dest = Path(dest_dir)
        objects = [o for o in store.iter_objects(bucket, base) if not o.key.endswith("/")]
        if not objects and not store.bucket_exists(bucket):
            raise StoreError(f"bucket {bucket!r} does not exist at {store.describe()}")
        items = self._plan(store, bucket, base, objects, dest)
        total = sum(i.obj.size for i in items)
        missing = [i for i in items if not self._valid(i.entry_id)]
        need = sum(i.obj.size for i in missing)
        emit(CacheEvent(
            "plan", f"{len(items)} objects ({total} bytes) under {store.uri(bucket, base)}; "
            f"{len(items) - len(missing)} cached, {len(missing)} to download ({need} bytes)",
            files_total=len(items), bytes_total=total,
        ))
        dest.mkdir(parents=True, exist_ok=True)
        if transfer is not None:
            transfer.add_total(need, files=len(missing))
        if need > self.max_bytes:
            # The data cannot fit at all: download straight into the run's folder, cache nothing.
            emit(CacheEvent("download", f"{need} bytes exceed the cache limit ({self.max_bytes}); "
                            "downloading without caching", bytes_total=need))
            self._download(store, bucket, [(i.obj, dest / i.rel) for i in missing], transfer)
            gone = [i for i in items if i not in missing and not self._link_under_lock(i, dest, link)]
            self._download(store, bucket, [(i.obj, dest / i.rel) for i in gone], None)
        else:
            self._evict(need, emit)
            done_files = 0
            for start in range(0, len(items), GROUP):
                group = items[start : start + GROUP]
                for _attempt in range(3):
                    # Retried when an entry was evicted between our check and our link.
                    group = self._fetch_group(store, bucket, group, dest, transfer, link)
                    if not group:
                        break
                else:
                    raise StoreError(f"the data cache in {self.root} keeps losing entries; "
                                     "raise the cache size limit")
                done_files = min(len(items), start + GROUP)
                emit(CacheEvent("link", f"{done_files}/{len(items)} objects in place",
                                done_files, len(items), transfer.done if transfer else 0, need))
        emit(CacheEvent("done", f"{len(items)} objects in {dest} ({len(missing)} downloaded)",
                        len(items), len(items), total, total))
        return dest

    def usage(self) -> int:
        """Bytes held by complete entries."""
        return sum(size for _, _, size in self._entries())

    # -- planning -------------------------------------------------------------------------------
    def _plan(self, store: ObjectStore, bucket: str, base: str, objects: list[ObjectInfo], dest: Path) -> list[_Item]:
        where = store.describe()
        items: list[_Item] = []
        for obj in objects:
            rel = obj.key[len(base):]
            try:
                validate_key(rel)
            except BadInput:
                raise StoreError(
                    f"refusing to fetch {store.uri(bucket, base)}: the key {obj.key!r} would be "
                    f"written outside {dest}"
                ) from None
            ident = obj.etag or f"size={obj.size};modified={obj.modified}"
            h = hashlib.sha256(f"{where}\0{bucket}\0{obj.key}\0{ident}".encode()).hexdigest()
            items.append(_Item(obj, rel, h))
        return items

    def _paths(self, entry_id: str) -> tuple[Path, Path, Path]:
        shard = entry_id[:2]
        obj = self.root / "objects" / shard / entry_id
        return obj, obj.with_name(entry_id + ".json"), self.root / "locks" / shard / (entry_id + ".lock")

    def _valid(self, entry_id: str) -> bool:
        """A complete, untouched entry: data and metadata present, size and mtime as recorded."""
        data, meta, _ = self._paths(entry_id)
        try:
            recorded = json.loads(meta.read_text())
            st = data.stat()
        except (OSError, ValueError):
            return False
        return st.st_size == recorded.get("size") and st.st_mtime_ns == recorded.get("mtime_ns")

    # -- locking --------------------------------------------------------------------------------
    @contextmanager
    def _lock(self, entry_id: str, mode: int) -> Iterator[bool]:
        """flock the entry's lock file; yields False only for a non-blocking try that lost."""
        path = self._paths(entry_id)[2]
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, mode)
            except BlockingIOError:
                os.close(fd)
                yield False
                return
            # Eviction unlinks lock files; if ours was unlinked while we waited, lock the new one.
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            yield True
        finally:
            os.close(fd)

    # -- fetching -------------------------------------------------------------------------------
    def _fetch_group(
        self, store: ObjectStore, bucket: str, group: list[_Item], dest: Path, transfer: Transfer | None,
        link: bool = True,
    ) -> list[_Item]:
        """Download what the cache lacks, link all of `group`; returns the items evicted meanwhile."""
        with ExitStack() as stack:
            mine: list[_Item] = []
            theirs: list[_Item] = []
            for item in group:
                if self._valid(item.entry_id):
                    continue
                if stack.enter_context(self._lock(item.entry_id, fcntl.LOCK_EX | fcntl.LOCK_NB)):
                    mine.append(item)
                else:
                    theirs.append(item)
            mine = [i for i in mine if not self._valid(i.entry_id)]  # done by someone meanwhile
            self._download_into_cache(store, bucket, mine, transfer)
        # Entries another process was downloading: wait for it, take over if it failed.
        for item in theirs:
            with self._lock(item.entry_id, fcntl.LOCK_EX):
                if not self._valid(item.entry_id):
                    self._download_into_cache(store, bucket, [item], transfer)
                elif transfer is not None:
                    transfer.advance(item.obj.size)
                    transfer.file_done()
        return [item for item in group if not self._link_under_lock(item, dest, link)]

    def _download(self, store: ObjectStore, bucket: str, pairs: list[tuple[ObjectInfo, Path]], transfer: Transfer | None) -> None:
        if not pairs:
            return
        if isinstance(store, ManyGets):  # one transfer manager for the lot, no HEAD per object
            store.get_many(bucket, pairs, transfer=transfer)
            return
        for _, path in pairs:
            path.parent.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p: store.get_file(bucket, p[0].key, p[1], transfer=transfer), pairs))

    def _download_into_cache(self, store: ObjectStore, bucket: str, items: list[_Item], transfer: Transfer | None) -> None:
        if not items:
            return
        tmp_dir = self.root / "tmp"
        pairs = [(i.obj, tmp_dir / f"{i.entry_id}.{os.getpid()}") for i in items]
        try:
            self._download(store, bucket, pairs, transfer)
            for item, (_, tmp) in zip(items, pairs):
                data, meta, _ = self._paths(item.entry_id)
                data.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)  # a run writing through its hard link would corrupt the cache
                os.replace(tmp, data)
                st = data.stat()
                record = {"bucket": bucket, "key": item.obj.key, "etag": item.obj.etag,
                          "size": st.st_size, "mtime_ns": st.st_mtime_ns}
                meta_tmp = tmp_dir / f"{item.entry_id}.{os.getpid()}.json"
                meta_tmp.write_text(json.dumps(record))
                os.replace(meta_tmp, meta)
        finally:
            for _, tmp in pairs:
                tmp.unlink(missing_ok=True)

    def _link_under_lock(self, item: _Item, dest: Path, link: bool = True) -> bool:
        """Link one entry into dest holding it shared, so eviction cannot remove it mid-way.

        False when the entry is gone (evicted since it was checked, or damaged)."""
        with self._lock(item.entry_id, fcntl.LOCK_SH):
            data, meta, _ = self._paths(item.entry_id)
            if not self._valid(item.entry_id):
                return False
            target = dest / item.rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.unlink(missing_ok=True)
            try:
                if not link:
                    raise OSError(errno.ENOTSUP, "copies asked for")
                os.link(data, tmp)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                shutil.copyfile(data, tmp)
                os.chmod(tmp, 0o644)  # the run's own copy: the cache's 0444 does not apply
            os.replace(tmp, target)
            os.utime(meta)  # last use, for LRU
        return True

    # -- eviction -------------------------------------------------------------------------------
    def _entries(self) -> list[tuple[float, str, int]]:
        """(last use, id, size) of every complete entry."""
        out = []
        for shard in (self.root / "objects").iterdir() if (self.root / "objects").exists() else []:
            for meta in shard.glob("*.json"):
                entry_id = meta.name[:-5]
                try:
                    used = meta.stat().st_mtime
                    size = (shard / entry_id).stat().st_size
                except OSError:
                    continue
                out.append((used, entry_id, size))
        return out

    def _evict(self, incoming: int, emit: Callable[[CacheEvent], Any]) -> None:
        """Drop least-recently-used entries until `incoming` more bytes fit; skip entries in use."""
        entries = sorted(self._entries())
        used = sum(size for _, _, size in entries)
        freed = removed = 0
        for _, entry_id, size in entries:
            if used - freed + incoming <= self.max_bytes:
                break
            with self._lock(entry_id, fcntl.LOCK_EX | fcntl.LOCK_NB) as got:
                if not got:
                    continue  # another run is linking or downloading it right now
                data, meta, lock = self._paths(entry_id)
                meta.unlink(missing_ok=True)
                data.unlink(missing_ok=True)
                lock.unlink(missing_ok=True)
            freed += size
            removed += 1
        if removed:
            emit(CacheEvent("evict", f"evicted {removed} least-recently-used cache entries ({freed} bytes)"))
        self._sweep_tmp()

    def _sweep_tmp(self, older_than_s: float = 24 * 3600) -> None:
        """Temp files a killed process left behind."""
        cutoff = clock.machine_time() - older_than_s  # against file mtimes
        for tmp in (self.root / "tmp").iterdir():
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
            except OSError:
                pass
