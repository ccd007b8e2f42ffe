"""The shared data cache against a real S3 server: one download per object, LRU eviction, locks."""
from __future__ import annotations

import fcntl
import os
import threading
import uuid
from pathlib import Path

import pytest

from backend.datacache import CacheEvent, DataCache
from backend.errors import StoreError
from backend.store.base import Transfer
from tests.fixtures.s3server import S3Server, make_store

pytestmark = pytest.mark.s3
KiB = 1024


_COUNTERS: list[GetCounter] = []


class GetCounter:
    """Counts the GETs a store really sends: through botocore (its before-parameter-build event,
    presigning aside) and on the fast path (a FastGetter.get that was answered)."""

    def __init__(self, store) -> None:
        self.keys: list[str] = []
        self.client = store.client
        self._lock = threading.Lock()
        store.client.meta.events.register("before-parameter-build.s3.GetObject", self._seen)
        _COUNTERS.append(self)

    def _seen(self, params, context=None, **kwargs) -> None:
        if not (context or {}).get("is_presign_request"):
            self.add(params["Key"])

    def add(self, key: str) -> None:
        with self._lock:
            self.keys.append(key)

    @property
    def count(self) -> int:
        return len(self.keys)


@pytest.fixture(autouse=True)
def _count_fast_gets(monkeypatch):
    from backend.store.s3_fastget import FastGetter

    real = FastGetter.get

    def get(self, bucket, key, *args, **kwargs):
        body = real(self, bucket, key, *args, **kwargs)
        if body is not None:
            for counter in _COUNTERS:
                if counter.client is self._client:
                    counter.add(key)
        return body

    monkeypatch.setattr(FastGetter, "get", get)
    yield
    _COUNTERS.clear()


@pytest.fixture
def store(s3_server: S3Server):
    st = make_store(s3_server)
    yield st
    st.close()


@pytest.fixture
def dataset(store) -> tuple[str, dict[str, bytes]]:
    bucket = "dc-" + uuid.uuid4().hex[:10]
    store.make_bucket(bucket)
    files = {f"train/part-{i}.bin": os.urandom(1000 + i) for i in range(12)}
    files["train/sub/labels.csv"] = b"a,b\n1,2\n"
    for key, body in files.items():
        store.put_bytes(bucket, key, body)
    store.put_bytes(bucket, "other/skip.bin", b"not part of the prefix")
    return bucket, files


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_second_run_downloads_nothing_and_links(store, dataset, tmp_path):
    bucket, files = dataset
    cache = DataCache(tmp_path / "cache", max_bytes=10 * 1024 * KiB)
    gets = GetCounter(store)
    events: list[CacheEvent] = []
    tr = Transfer()
    run1 = cache.fetch(store, bucket, "train", tmp_path / "run1" / "data", transfer=tr, on_event=events.append)
    expected = {k[len("train/"):]: v for k, v in files.items()}
    assert _tree(run1) == expected
    assert gets.count == len(files)
    assert (tr.done, tr.total, tr.files_done) == (sum(map(len, files.values())), tr.total, len(files))
    assert events[0].phase == "plan" and events[-1].phase == "done"
    assert "13 to download" in events[0].message

    for run in range(2, 6):  # a sweep: every later run is served from the cache
        events.clear()
        out = cache.fetch(store, bucket, "train/", tmp_path / f"run{run}" / "data", on_event=events.append)
        assert _tree(out) == expected
        assert "0 to download" in events[0].message
    assert gets.count == len(files)
    a = (tmp_path / "run1/data/part-0.bin").stat()
    b = (tmp_path / "run5/data/part-0.bin").stat()
    assert a.st_ino == b.st_ino  # hard links, not copies
    assert cache.usage() == sum(map(len, files.values()))


def test_changed_object_is_a_new_entry(store, dataset, tmp_path):
    bucket, files = dataset
    cache = DataCache(tmp_path / "cache", max_bytes=10 * 1024 * KiB)
    cache.fetch(store, bucket, "train/", tmp_path / "r1")
    store.put_bytes(bucket, "train/part-3.bin", b"new contents")
    gets = GetCounter(store)
    out = cache.fetch(store, bucket, "train/", tmp_path / "r2")
    assert gets.keys == ["train/part-3.bin"]
    assert (out / "part-3.bin").read_bytes() == b"new contents"
    assert (tmp_path / "r1/part-3.bin").read_bytes() == files["train/part-3.bin"]


def test_damaged_entry_is_fetched_again(store, dataset, tmp_path):
    bucket, _ = dataset
    cache = DataCache(tmp_path / "cache", max_bytes=10 * 1024 * KiB)
    out = cache.fetch(store, bucket, "train/", tmp_path / "r1")
    victim = out / "part-1.bin"
    assert not os.access(victim, os.W_OK) or os.geteuid() == 0  # read-only for non-root runs
    os.chmod(victim, 0o644)
    victim.write_bytes(b"scribbled on by a run")  # through the hard link, into the cache
    gets = GetCounter(store)
    out2 = cache.fetch(store, bucket, "train/", tmp_path / "r2")
    assert gets.keys == ["train/part-1.bin"]
    assert (out2 / "part-1.bin").read_bytes() != b"scribbled on by a run"


def test_lru_eviction_keeps_recent_and_in_use_entries(store, tmp_path):
    bucket = "lru-" + uuid.uuid4().hex[:10]
    store.make_bucket(bucket)
    for name in "abcd":
        store.put_bytes(bucket, f"{name}/blob", os.urandom(400 * KiB))
    cache = DataCache(tmp_path / "cache", max_bytes=1000 * KiB)  # room for two
    gets = GetCounter(store)
    cache.fetch(store, bucket, "a", tmp_path / "1")
    cache.fetch(store, bucket, "b", tmp_path / "2")
    cache.fetch(store, bucket, "a", tmp_path / "3")  # a is now more recent than b
    assert gets.count == 2
    events: list[CacheEvent] = []
    cache.fetch(store, bucket, "c", tmp_path / "4", on_event=events.append)  # evicts b, the LRU
    assert any(e.phase == "evict" for e in events)
    assert cache.usage() <= 1000 * KiB
    before = gets.count
    cache.fetch(store, bucket, "a", tmp_path / "5")
    assert gets.count == before  # a survived
    cache.fetch(store, bucket, "b", tmp_path / "6")
    assert gets.count == before + 1  # b had been evicted (and now c, the LRU, is gone)
    assert (tmp_path / "2/blob").read_bytes() == (tmp_path / "6/blob").read_bytes()  # old links intact

    # An entry another run holds (its lock taken shared) is never evicted, even if it is the LRU.
    entries = sorted(cache._entries())
    lru_id = entries[0][1]
    lock_path = cache._paths(lru_id)[2]
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        cache.fetch(store, bucket, "d", tmp_path / "7")
        assert cache._paths(lru_id)[0].exists()
        assert cache.usage() <= 1000 * KiB  # the next-oldest went instead
    finally:
        os.close(fd)


def test_concurrent_fetches_download_each_object_once(s3_server, dataset, tmp_path):
    bucket, files = dataset
    stores = [make_store(s3_server) for _ in range(4)]
    counters = [GetCounter(s) for s in stores]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            # A DataCache per worker, as separate processes would have; flock keeps them apart.
            DataCache(tmp_path / "cache", max_bytes=10 * 1024 * KiB).fetch(
                stores[i], bucket, "train/", tmp_path / f"w{i}"
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sum(c.count for c in counters) == len(files)
    for i in range(4):
        assert len(_tree(tmp_path / f"w{i}")) == len(files)


def test_too_big_for_the_cache_bypasses_it(store, dataset, tmp_path):
    bucket, files = dataset
    cache = DataCache(tmp_path / "cache", max_bytes=2 * KiB)
    events: list[CacheEvent] = []
    out = cache.fetch(store, bucket, "train/", tmp_path / "r", on_event=events.append)
    assert len(_tree(out)) == len(files)
    assert any("without caching" in e.message for e in events)
    assert cache.usage() == 0


def test_hostile_keys_and_missing_bucket(tmp_path):
    from backend.store.base import ObjectInfo

    class Hostile:
        kind = "test"

        def describe(self):
            return "hostile"

        def iter_objects(self, bucket, prefix=""):
            yield ObjectInfo(prefix + "../../outside", 3, etag="e")

        def bucket_exists(self, bucket):
            return True

        def uri(self, bucket, key=""):
            return f"test://{bucket}/{key}"

    cache = DataCache(tmp_path / "cache", max_bytes=KiB)
    with pytest.raises(StoreError, match="outside"):
        cache.fetch(Hostile(), "b", "p/", tmp_path / "dest")
    assert not (tmp_path / "outside").exists()


def test_copies_instead_of_links_leave_the_cache_untouched_by_writes(store, dataset, tmp_path):
    """A run without a read-only mount gets copies: what it writes stays in its own copy."""
    bucket, files = dataset
    cache = DataCache(tmp_path / "cache", max_bytes=10 * 1024 * KiB)
    linked = cache.fetch(store, bucket, "train", tmp_path / "a" / "data")
    copied = cache.fetch(store, bucket, "train", tmp_path / "b" / "data", link=False)
    expected = {k[len("train/"):]: v for k, v in files.items()}
    assert _tree(copied) == expected
    assert (copied / "part-0.bin").stat().st_ino != (linked / "part-0.bin").stat().st_ino
    with open(copied / "part-0.bin", "r+b") as fh:  # the run's copy is its own to change
        fh.write(b"CLOBBERED")
    later = cache.fetch(store, bucket, "train", tmp_path / "c" / "data")
    assert _tree(later) == expected
    assert (later / "part-0.bin").stat().st_ino == (linked / "part-0.bin").stat().st_ino
