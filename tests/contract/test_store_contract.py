"""The ObjectStore contract: every store (the folder store, S3) passes these unchanged.

Semantics pinned here that the protocol's signatures leave open:
- Buckets on a shared server outlive a test, so each test makes its own uniquely named bucket and
  asserts membership in `list_buckets`, never equality. `make_bucket` on an existing bucket raises a
  DlaasError; `remove_bucket` of a non-empty bucket raises a DlaasError and removes nothing.
- `list` returns prefixes (ending in `/`) and objects of ONE level in key order (UTF-8 bytes, a
  prefix `a/` ordered as the string "a/"); `next_token` is None on the last page; `start_after` is
  exclusive.
- `read_range(offset, length)`: bytes [offset, offset+length); `length=None` reads to the end; an
  offset at or past the end gives b""; a negative offset or length is BadInput (a tail is
  `stat().size - n`).
- `iter_objects` yields every object under the prefix, recursively, each once; the order is the
  server's (AWS gives key order, SeaweedFS lists a folder's contents before its siblings).
- `delete` returns how many of the given (existing) keys it deleted; it accepts more than 1000 keys.
  After a delete, a listing under the emptied prefix is empty (whether the empty prefix itself
  still shows one level up is left to the server).
- Transfers: totals are known before bytes move; at the end `done == total` = the bytes moved and
  `files_done == files_total`; a cancelled single-object put leaves no object and a cancelled get no
  destination file; a transfer cancelled before it starts moves nothing.
- Unsafe keys (absolute, `..` segments, NUL) raise BadInput naming the key in every operation (put,
  stat, read, get, delete), before any request; missing buckets and objects raise NotFound naming
  them.
- Stores are used from worker threads (the TUI's), so concurrent puts must work.
"""
from __future__ import annotations

import importlib
import inspect
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backend.errors import BadInput, DlaasError, NotFound
from backend.store.base import (
    OPTIONAL_STORE_FEATURES, LeftoverReclaim, LocalFolders, ManyGets, ObjectStore, Transfer, TransferCancelled)


def _utf8(key: str) -> bytes:
    return key.encode("utf-8")


def _new_name() -> str:
    return f"ct-{uuid.uuid4().hex[:12]}"


def _empty_bucket(store, bucket: str) -> None:
    keys = [o.key for o in store.iter_objects(bucket)]
    if keys:
        store.delete(bucket, keys)


@pytest.fixture
def bucket(store):
    name = _new_name()
    store.make_bucket(name)
    yield name
    try:  # a shared S3 server keeps what a test leaves behind
        _empty_bucket(store, name)
        store.remove_bucket(name)
    except DlaasError:
        pass


def _page_items(page):
    return [(i.key, i.is_prefix) for i in page.items]


# ----- buckets -----------------------------------------------------------------------------------


def test_store_implements_protocol(store):
    assert isinstance(store, ObjectStore)
    assert store.kind in ("local", "s3")
    assert store.describe()


def test_make_list_and_remove_bucket(store):
    name = _new_name()
    assert not store.bucket_exists(name)
    store.make_bucket(name)
    assert store.bucket_exists(name)
    assert name in [b.name for b in store.list_buckets()]
    with pytest.raises(DlaasError):
        store.make_bucket(name)
    store.remove_bucket(name)
    assert not store.bucket_exists(name)
    assert name not in [b.name for b in store.list_buckets()]


def test_remove_non_empty_bucket_is_refused(store, bucket):
    store.put_bytes(bucket, "keep.txt", b"x")
    with pytest.raises(DlaasError):
        store.remove_bucket(bucket)
    assert store.read_range(bucket, "keep.txt") == b"x"


@pytest.mark.parametrize(
    "name", ["ab", "Upper-case", "under_score", "-leading", "trailing-", "a..b", "192.168.1.1", "x" * 64]
)
def test_bad_bucket_names_are_refused(store, name):
    with pytest.raises(BadInput, match="bucket name"):
        store.make_bucket(name)


def test_missing_bucket_is_not_found_and_named(store):
    name = _new_name()
    with pytest.raises(NotFound, match=name):
        store.list(name)
    with pytest.raises(NotFound, match=name):
        store.stat(name, "some/key")


# ----- objects -----------------------------------------------------------------------------------


def test_put_bytes_then_stat_and_read(store, bucket):
    data = b"hello object store\n" * 10
    info = store.put_bytes(bucket, "greeting.txt", data)
    assert info.key == "greeting.txt" and info.size == len(data)
    st = store.stat(bucket, "greeting.txt")
    assert st.size == len(data)
    assert st.modified is not None and st.etag
    assert not st.is_prefix
    assert store.read_range(bucket, "greeting.txt") == data


def test_overwrite_replaces_the_object(store, bucket):
    store.put_bytes(bucket, "k", b"first version")
    store.put_bytes(bucket, "k", b"2nd")
    assert store.read_range(bucket, "k") == b"2nd"
    assert store.stat(bucket, "k").size == 3


def test_empty_object(store, bucket):
    store.put_bytes(bucket, "empty", b"")
    assert store.stat(bucket, "empty").size == 0
    assert store.read_range(bucket, "empty") == b""


def test_ranged_reads(store, bucket):
    data = bytes(range(256)) * 40
    store.put_bytes(bucket, "r.bin", data)
    assert store.read_range(bucket, "r.bin", 100, 50) == data[100:150]
    assert store.read_range(bucket, "r.bin", 0, 1) == data[:1]
    assert store.read_range(bucket, "r.bin", 10_000) == data[10_000:]
    tail_from = store.stat(bucket, "r.bin").size - 16  # a tail: the size, then one ranged read
    assert store.read_range(bucket, "r.bin", tail_from) == data[-16:]
    assert store.read_range(bucket, "r.bin", len(data) - 5, 100) == data[-5:]
    assert store.read_range(bucket, "r.bin", len(data)) == b""
    assert store.read_range(bucket, "r.bin", 5, 0) == b""
    for offset, length in ((-16, None), (0, -1)):
        with pytest.raises(BadInput):
            store.read_range(bucket, "r.bin", offset, length)


def test_missing_object_is_not_found_and_named(store, bucket, tmp_path):
    with pytest.raises(NotFound) as exc:
        store.stat(bucket, "nope/missing.txt")
    assert "nope/missing.txt" in str(exc.value) and bucket in str(exc.value)
    with pytest.raises(NotFound, match="missing.bin"):
        store.read_range(bucket, "missing.bin")
    with pytest.raises(NotFound, match="missing.bin"):
        store.get_file(bucket, "missing.bin", tmp_path / "never-written")
    assert not (tmp_path / "never-written").exists()


def test_put_file_and_get_file_with_progress(store, bucket, tmp_path):
    src = tmp_path / "src.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)
    src.write_bytes(data)
    up = Transfer()
    info = store.put_file(src, bucket, "files/src.bin", transfer=up)
    assert info.size == len(data)
    assert up.total == up.done == len(data) and up.files_done == up.files_total == 1
    down = Transfer()
    out = store.get_file(bucket, "files/src.bin", tmp_path / "out.bin", transfer=down)
    assert Path(out).read_bytes() == data
    assert down.total == down.done == len(data)


@pytest.mark.parametrize(
    "key",
    [
        "with space/and more spaces.txt",
        "unicode/naïve-日本語-🎉.txt",
        "markup/[bold]red[/bold] [link=x]y[/link].txt",
        "punct/a+b=c&d;e,f'g\"h(i)!~@#$%^.txt",
    ],
)
def test_unusual_keys_round_trip(store, bucket, key, tmp_path):
    store.put_bytes(bucket, key, key.encode())
    assert store.read_range(bucket, key) == key.encode()
    prefix = key.rsplit("/", 1)[0] + "/"
    assert [i.key for i in store.list(bucket, prefix).items] == [key]
    assert store.stat(bucket, key).key == key
    assert store.uri(bucket, key).endswith(key)
    store.delete(bucket, [key])
    with pytest.raises(NotFound):
        store.stat(bucket, key)


@pytest.mark.parametrize("key", ["/etc/passwd", "../escape", "a/../../b", "a/..", "nul\x00byte"])
def test_unsafe_keys_are_refused(store, bucket, key, tmp_path):
    ops = [
        lambda: store.put_bytes(bucket, key, b"x"),
        lambda: store.stat(bucket, key),
        lambda: store.read_range(bucket, key),
        lambda: store.get_file(bucket, key, tmp_path / "out"),
        lambda: store.delete(bucket, [key]),
    ]
    for op in ops:
        with pytest.raises(BadInput) as exc:
            op()
        assert repr(key)[1:-1] in str(exc.value) or key in str(exc.value)
    assert not (tmp_path / "out").exists()
    assert store.list(bucket).items == []


def test_url_and_uri(store, bucket):
    store.put_bytes(bucket, "u/x.txt", b"x")
    assert store.uri(bucket, "u/x.txt") == f"{store.kind}://{bucket}/u/x.txt"
    url = store.url(bucket, "u/x.txt", expires_s=60)
    assert url.startswith(("file://", "http://", "https://"))


# ----- listing -----------------------------------------------------------------------------------


def test_one_level_listing_with_prefixes_in_key_order(store, bucket):
    for key in ["b.txt", "a/1", "a/2", "a-b", "a0", "c/d/e", "A", "z"]:
        store.put_bytes(bucket, key, b"x")
    page = store.list(bucket)
    assert _page_items(page) == [
        ("A", False),
        ("a-b", False),
        ("a/", True),
        ("a0", False),
        ("b.txt", False),
        ("c/", True),
        ("z", False),
    ]
    assert page.next_token is None
    assert [i.key for i in page.items] == sorted((i.key for i in page.items), key=_utf8)
    assert [i.name for i in page.items if i.is_prefix] == ["a/", "c/"]
    assert _page_items(store.list(bucket, "a/")) == [("a/1", False), ("a/2", False)]
    assert _page_items(store.list(bucket, "c/")) == [("c/d/", True)]
    assert _page_items(store.list(bucket, "c/d/")) == [("c/d/e", False)]
    # a prefix that is not a folder boundary filters names, as S3 does
    assert _page_items(store.list(bucket, "a")) == [("a-b", False), ("a/", True), ("a0", False)]
    assert store.list(bucket, "nothing/here/").items == []
    sizes = {i.key: i.size for i in store.list(bucket, "a/").items}
    assert sizes == {"a/1": 1, "a/2": 1}


def test_start_after_is_exclusive(store, bucket):
    for key in ["k1", "k2", "k3", "k4", "sub/x"]:
        store.put_bytes(bucket, key, b"x")
    assert [i.key for i in store.list(bucket, start_after="k2").items] == ["k3", "k4", "sub/"]
    assert [i.key for i in store.list(bucket, start_after="k4").items] == ["sub/"]
    assert store.list(bucket, start_after="zzz").items == []


def test_iter_objects_is_recursive(store, bucket):
    keys = ["top", "d/one", "d/two/deep", "d-sibling", "e/x"]
    for key in keys:
        store.put_bytes(bucket, key, b"xy")
    got = [o.key for o in store.iter_objects(bucket)]
    assert sorted(got) == sorted(keys) and len(got) == len(set(got))
    assert sorted(o.key for o in store.iter_objects(bucket, "d/")) == ["d/one", "d/two/deep"]
    assert all(o.size == 2 and not o.is_prefix for o in store.iter_objects(bucket))


def test_pagination_and_delete_many(store, bucket):
    """1,100 keys in one folder: pages with tokens (S3's maximum of 1000, and small ones), then one
    delete of them all (more than S3's 1000 keys per request)."""
    keys = [f"many/obj-{i:05d}" for i in range(1100)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.put_bytes(bucket, k, b"."), keys))
    store.put_bytes(bucket, "many-after", b".")

    for page_size, pages_expected in ((1000, 2), (300, 4)):
        seen, token, pages = [], None, 0
        while True:
            page = store.list(bucket, "many/", page_size=page_size, token=token)
            pages += 1
            assert len(page.items) <= page_size
            seen.extend(i.key for i in page.items)
            token = page.next_token
            if token is None:
                break
        assert pages == pages_expected
        assert seen == keys

    page = store.list(bucket, "many/", page_size=7, start_after="many/obj-01095")
    assert [i.key for i in page.items] == keys[1096:] and page.next_token is None

    assert store.delete(bucket, keys) == len(keys)
    assert store.list(bucket, "many/").items == []
    # Filer-backed servers may keep an empty `many/` folder; the object next to it must remain.
    assert "many-after" in [i.key for i in store.list(bucket).items]


def test_delete_some_keys(store, bucket):
    for key in ["d/a", "d/b", "d/c"]:
        store.put_bytes(bucket, key, b"x")
    assert store.delete(bucket, ["d/a", "d/c"]) == 2
    assert [i.key for i in store.list(bucket, "d/").items] == ["d/b"]
    assert store.delete(bucket, []) == 0


# ----- folders and transfers ---------------------------------------------------------------------


def _make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.txt": b"alpha\n",
        "sub/b.bin": os.urandom(70_000),
        "sub/deeper/c.txt": b"gamma " * 1000,
        "sub/deeper/empty": b"",
        "with space/é.txt": "é".encode(),
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_folder_round_trip_with_progress(store, bucket, tmp_path):
    files = _make_tree(tmp_path / "src")
    total = sum(len(d) for d in files.values())
    up = Transfer()
    assert store.put_folder(tmp_path / "src", bucket, "data/set1", transfer=up) == len(files)
    assert up.total == up.done == total
    assert up.files_total == up.files_done == len(files)
    assert [o.key for o in store.iter_objects(bucket, "data/set1/")] == sorted(
        (f"data/set1/{k}" for k in files), key=_utf8
    )

    down = Transfer()
    assert store.get_prefix(bucket, "data/set1/", tmp_path / "dest", transfer=down) == len(files)
    assert down.total == down.done == total
    assert down.files_total == down.files_done == len(files)
    for rel, data in files.items():
        assert (tmp_path / "dest" / rel).read_bytes() == data
    got = sorted(p.relative_to(tmp_path / "dest").as_posix() for p in (tmp_path / "dest").rglob("*") if p.is_file())
    assert got == sorted(files)


def test_get_prefix_without_trailing_slash_takes_the_folder_only(store, bucket, tmp_path):
    store.put_bytes(bucket, "p/x", b"1")
    store.put_bytes(bucket, "p2/y", b"2")
    assert store.get_prefix(bucket, "p", tmp_path / "d") == 1
    assert (tmp_path / "d" / "x").read_bytes() == b"1"
    assert not (tmp_path / "d" / "y").exists()


def _cancel_after_first_bytes(transfer: Transfer) -> None:
    if transfer.done > 0:
        transfer.cancel()


def test_cancelled_put_leaves_no_object(store, bucket, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(6 * 1024 * 1024))
    transfer = Transfer(on_update=_cancel_after_first_bytes)
    with pytest.raises(TransferCancelled):
        store.put_file(src, bucket, "cancel/big.bin", transfer=transfer)
    with pytest.raises(NotFound):
        store.stat(bucket, "cancel/big.bin")
    assert store.list(bucket, "cancel/").items == []


def test_cancelled_get_leaves_no_file(store, bucket, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(6 * 1024 * 1024))
    store.put_file(src, bucket, "big.bin")
    (tmp_path / "out").mkdir()
    transfer = Transfer(on_update=_cancel_after_first_bytes)
    with pytest.raises(TransferCancelled):
        store.get_file(bucket, "big.bin", tmp_path / "out" / "big.bin", transfer=transfer)
    assert list((tmp_path / "out").iterdir()) == []


def test_cancel_before_start_moves_nothing(store, bucket, tmp_path):
    _make_tree(tmp_path / "src")
    transfer = Transfer()
    transfer.cancel()
    with pytest.raises(TransferCancelled):
        store.put_folder(tmp_path / "src", bucket, "x/", transfer=transfer)
    assert store.list(bucket).items == []


# ----- optional features: each store offers one or states that it does not ----------------------

STORE_CLASSES = {"local": "backend.store.local:LocalStore", "s3": "backend.store.s3:S3Store"}
STORE_FEATURES = {
    "local": {LeftoverReclaim, LocalFolders},  # a get is a file copy: no batched get to offer
    "s3": {ManyGets, LeftoverReclaim},
}


def _store_class(kind: str) -> type:
    module, _, attr = STORE_CLASSES[kind].partition(":")
    if kind == "s3":
        pytest.importorskip("boto3")
    return getattr(importlib.import_module(module), attr)


def _callable_as(cls: type, feature: type) -> list[str]:
    """Each of the feature's methods takes the feature's parameters, in order, of the same kinds;
    any more it takes have defaults (a caller going by the feature never passes them)."""
    wrong = []
    for name, proto in vars(feature).items():
        if not inspect.isfunction(proto) or name.startswith("_"):
            continue
        mine = getattr(cls, name, None)
        if mine is None:
            wrong.append(f"{name}: missing")
            continue
        want = [(p.name, p.kind) for p in inspect.signature(proto).parameters.values()]
        have = list(inspect.signature(mine).parameters.values())
        extra = have[len(want):]
        if [(p.name, p.kind) for p in have[:len(want)]] != want or any(
                p.default is inspect.Parameter.empty for p in extra):
            wrong.append(f"{name}{inspect.signature(mine)} is not {name}{inspect.signature(proto)}")
    return wrong


def test_every_store_is_in_the_feature_table():
    assert set(STORE_FEATURES) == set(STORE_CLASSES)


@pytest.mark.parametrize("kind", sorted(STORE_CLASSES))
def test_the_store_offers_the_optional_features_it_states(kind):
    cls = _store_class(kind)
    assert cls.kind == kind
    offered = {f for f in OPTIONAL_STORE_FEATURES if issubclass(cls, f)}
    assert {f.__name__ for f in offered} == {f.__name__ for f in STORE_FEATURES[kind]}
    for feature in offered:
        assert _callable_as(cls, feature) == [], f"{kind} store, {feature.__name__}"


def test_the_feature_check_tells_a_feature_apart():
    class Tidy:
        def reclaim_leftovers(self, older_than_s: float = 60.0) -> str:
            return ""

    class Untidy:
        def reclaim_leftovers(self, older_than_s: float) -> str:
            return ""

    assert isinstance(Tidy(), LeftoverReclaim) and not isinstance(Tidy(), ManyGets)
    assert _callable_as(Tidy, LeftoverReclaim) == []
    assert _callable_as(Untidy, LeftoverReclaim) != []


def test_a_fresh_store_has_no_leftovers(store, bucket):
    if not isinstance(store, LeftoverReclaim):
        pytest.skip(f"the {store.kind} store states it keeps no leftovers")
    store.put_bytes(bucket, "kept", b"1")
    assert store.reclaim_leftovers() == ""
    assert store.read_range(bucket, "kept") == b"1"  # what was written whole stays


def test_get_many_downloads_what_was_listed(store, bucket, tmp_path):
    if not isinstance(store, ManyGets):
        pytest.skip(f"the {store.kind} store states it has no batched get")
    files = _make_tree(tmp_path / "src")
    store.put_folder(tmp_path / "src", bucket, "m/")
    objects = list(store.iter_objects(bucket, "m/"))
    pairs = [(o, tmp_path / "out" / f"{i}.bin") for i, o in enumerate(objects)]
    for _, path in pairs:
        path.parent.mkdir(parents=True, exist_ok=True)
    transfer = Transfer()
    transfer.add_total(sum(o.size for o in objects), files=len(objects))
    assert store.get_many(bucket, pairs, transfer=transfer) == len(files)
    for o, path in pairs:
        assert path.read_bytes() == files[o.key.removeprefix("m/")]
    assert transfer.done == transfer.total
