"""What only the folder store does: legacy bucket folders, the file-system mapping, symlinks, etags."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from backend.errors import BadInput, NotFound, StoreError
from backend.store import local as local_mod
from backend.store import local_listing
from backend.store.base import Transfer
from backend.store.files import CHUNK, safe_dest_path
from backend.store.local import TMP_DIR, LocalStore


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    s = LocalStore(tmp_path / "root")
    s.make_bucket("bkt")
    return s


def keys(page) -> list[str]:
    return [i.key for i in page.items]


def test_legacy_bucket_folder_is_readable_but_not_creatable(tmp_path):
    store = LocalStore(tmp_path / "root")
    legacy = tmp_path / "root" / "tf_training_data"
    (legacy / "mnist").mkdir(parents=True)
    (legacy / "mnist" / "train.npz").write_bytes(b"data")
    assert "tf_training_data" in [b.name for b in store.list_buckets()]
    assert store.bucket_exists("tf_training_data")
    assert keys(store.list("tf_training_data", "mnist/")) == ["mnist/train.npz"]
    assert store.read_range("tf_training_data", "mnist/train.npz") == b"data"
    with pytest.raises(BadInput, match="tf_training_data"):
        store.make_bucket("tf_training_data2")


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "a\\b", "nul\x00"])
def test_bucket_names_that_are_not_one_visible_folder_are_refused(store, name):
    with pytest.raises(BadInput):
        store.list(name)


def test_missing_root_lists_no_buckets(tmp_path):
    assert LocalStore(tmp_path / "nowhere").list_buckets() == []


def test_files_at_root_and_hidden_folders_are_not_buckets(tmp_path):
    root = tmp_path / "root"
    (root / ".cache").mkdir(parents=True)
    (root / "stray.txt").write_text("x")
    (root / "real").mkdir()
    assert [b.name for b in LocalStore(root).list_buckets()] == ["real"]


def test_temp_folder_is_hidden_and_reserved(store, tmp_path):
    bdir = tmp_path / "root" / "bkt"
    (bdir / TMP_DIR).mkdir()
    (bdir / TMP_DIR / "stale.part").write_bytes(b"half")
    store.put_bytes("bkt", "visible", b"x")
    assert keys(store.list("bkt")) == ["visible"]
    assert [o.key for o in store.iter_objects("bkt")] == ["visible"]
    with pytest.raises(BadInput, match="reserved"):
        store.put_bytes("bkt", f"{TMP_DIR}/x", b"x")
    store.delete("bkt", ["visible"])
    store.remove_bucket("bkt")  # stale temp files do not make a bucket non-empty
    assert not bdir.exists()


@pytest.mark.parametrize("key", ["a//b", "a/./b", "./a", "x" * 256, "d/" + "é" * 128])
def test_keys_a_file_system_cannot_hold_are_refused_by_name(store, key):
    with pytest.raises(BadInput) as exc:
        store.put_bytes("bkt", key, b"x")
    assert repr(key) in str(exc.value)
    assert store.list("bkt").items == []


def test_object_and_folder_of_the_same_name_conflict_clearly(store):
    store.put_bytes("bkt", "a/x", b"1")
    with pytest.raises(BadInput, match="is a folder"):
        store.put_bytes("bkt", "a", b"2")
    with pytest.raises(NotFound, match="it is a folder"):
        store.stat("bkt", "a")
    store.put_bytes("bkt", "f", b"1")
    with pytest.raises(BadInput, match="'f' is an object"):
        store.put_bytes("bkt", "f/under", b"2")
    with pytest.raises(BadInput, match="prefix"):
        store.read_range("bkt", "a/")


def test_folder_marker_is_a_folder(store):
    store.put_bytes("bkt", "marker/", b"")
    assert [(i.key, i.is_prefix) for i in store.list("bkt").items] == [("marker/", True)]
    assert store.stat("bkt", "marker/").is_prefix
    with pytest.raises(BadInput):
        store.put_bytes("bkt", "marker/", b"not empty")
    assert store.delete("bkt", ["marker/"]) == 1
    assert store.list("bkt").items == []


def test_delete_prunes_empty_folders_but_keeps_the_bucket(store, tmp_path):
    store.put_bytes("bkt", "x/y/z", b"1")
    store.put_bytes("bkt", "x/keep", b"1")
    store.delete("bkt", ["x/y/z"])
    assert keys(store.list("bkt", "x/")) == ["x/keep"]
    store.delete("bkt", ["x/keep", "x/never-existed"])
    assert store.list("bkt").items == []
    assert (tmp_path / "root" / "bkt").is_dir()


def test_a_bad_key_in_a_delete_deletes_nothing(store):
    store.put_bytes("bkt", "a", b"1")
    with pytest.raises(BadInput, match=r"\.\./b"):
        store.delete("bkt", ["a", "../b"])
    assert store.read_range("bkt", "a") == b"1"


def test_symlink_out_of_the_bucket_is_refused_and_not_listed(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s3cr3t")
    bdir = tmp_path / "root" / "bkt"
    os.symlink(outside, bdir / "link")
    os.symlink(outside / "secret", bdir / "filelink")
    store.put_bytes("bkt", "ok", b"1")
    assert keys(store.list("bkt")) == ["ok"]
    assert [o.key for o in store.iter_objects("bkt")] == ["ok"]
    for key in ("link/secret", "filelink"):
        with pytest.raises(BadInput, match="outside bucket"):
            store.read_range("bkt", key)
    with pytest.raises(BadInput, match="outside bucket"):
        store.put_bytes("bkt", "link/planted", b"x")
    assert not (outside / "planted").exists()
    with pytest.raises(BadInput, match="outside bucket"):
        store.local_path("bkt", "link/")


def test_symlink_inside_the_bucket_is_followed_without_looping(store, tmp_path):
    store.put_bytes("bkt", "real/f", b"1")
    bdir = tmp_path / "root" / "bkt"
    os.symlink(bdir / "real", bdir / "alias")
    os.symlink(bdir, bdir / "real" / "loop")
    assert keys(store.list("bkt")) == ["alias/", "real/"]
    assert store.read_range("bkt", "alias/f") == b"1"
    got = [o.key for o in store.iter_objects("bkt")]
    assert "alias/f" in got and "real/f" in got
    assert len(got) < 20


def test_get_prefix_never_writes_through_a_symlink_out_of_dest(store, tmp_path):
    store.put_bytes("bkt", "p/sub/f", b"1")
    dest = tmp_path / "dest"
    dest.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    os.symlink(victim, dest / "sub")
    with pytest.raises(BadInput, match="outside"):
        store.get_prefix("bkt", "p/", dest)
    assert list(victim.iterdir()) == []


@pytest.mark.parametrize("rel", ["", "/abs", "../up", "a/../../up", "a//b", "./a", "a/."])
def test_safe_dest_path_refuses_escapes(tmp_path, rel):
    with pytest.raises(BadInput):
        safe_dest_path(tmp_path, rel)


def test_safe_dest_path_accepts_plain_relative_keys(tmp_path):
    assert safe_dest_path(tmp_path, "a/b c/[x].txt") == tmp_path.resolve() / "a" / "b c" / "[x].txt"


def test_etag_is_md5_for_small_objects_and_a_change_detector_for_big_ones(store, monkeypatch):
    store.put_bytes("bkt", "small", b"hello")
    assert store.stat("bkt", "small").etag == "5d41402abc4b2a76b9719d911017c592"
    monkeypatch.setattr(local_mod, "ETAG_MD5_LIMIT", 4)
    first = store.stat("bkt", "small").etag
    assert first.startswith("sm-")
    store.put_bytes("bkt", "small", b"hello!")
    assert store.stat("bkt", "small").etag != first


def test_readers_never_see_half_an_object(store, tmp_path):
    store.put_bytes("bkt", "obj", b"old" * 1000)
    src = tmp_path / "new.bin"
    src.write_bytes(b"N" * (3 * CHUNK + 5))
    seen = []

    def peek(t: Transfer) -> None:
        seen.append(store.read_range("bkt", "obj"))

    store.put_file(src, "bkt", "obj", transfer=Transfer(on_update=peek))
    assert len(seen) >= 3
    assert all(s == b"old" * 1000 for s in seen[:-1])
    assert store.read_range("bkt", "obj") == src.read_bytes()


def test_concurrent_puts_of_one_key_leave_one_whole_version(store):
    versions = [bytes([65 + i]) * 200_000 for i in range(6)]
    threads = [threading.Thread(target=store.put_bytes, args=("bkt", "k", v)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.read_range("bkt", "k") in versions
    assert keys(store.list("bkt")) == ["k"]


def test_tokens_are_checked(store):
    for i in range(5):
        store.put_bytes("bkt", f"p/{i}", b"x")
        store.put_bytes("bkt", f"q/{i}", b"x")
    page = store.list("bkt", "p/", page_size=2)
    assert keys(page) == ["p/0", "p/1"] and page.next_token
    with pytest.raises(BadInput, match="token"):
        store.list("bkt", "p/", token="garbage")
    with pytest.raises(BadInput, match="prefix"):
        store.list("bkt", "q/", token=page.next_token)
    with pytest.raises(BadInput, match="page size"):
        store.list("bkt", page_size=0)


def test_keys_sort_by_utf8_bytes_not_code_points(store):
    # U+FF61 sorts before U+10000 in UTF-16 but after it in UTF-8 (and in S3)
    for key in ["\uff61", "\U00010000", "z"]:
        store.put_bytes("bkt", key, b"x")
    assert keys(store.list("bkt")) == ["z", "\uff61", "\U00010000"]


def test_non_utf8_file_names_are_listed_not_fatal(store, tmp_path):
    bdir = os.fsencode(tmp_path / "root" / "bkt")
    with open(os.path.join(bdir, b"bad-\xff-name"), "wb") as fh:
        fh.write(b"x")
    store.put_bytes("bkt", "good", b"x")
    assert len(store.list("bkt").items) == 2


def test_local_path_and_url(store, tmp_path):
    store.put_bytes("bkt", "data/train.npz", b"x")
    bdir = (tmp_path / "root" / "bkt").resolve()
    assert store.local_path("bkt") == bdir
    assert store.local_path("bkt", "data/") == bdir / "data"
    assert store.local_path("bkt", "data/train.npz") == bdir / "data" / "train.npz"
    assert store.local_path("bkt", "nothing/") == bdir / "nothing"  # callers check existence
    with pytest.raises(NotFound, match="nobucket"):
        store.local_path("nobucket", "data/")
    with pytest.raises(BadInput):
        store.local_path("bkt", "../x")
    assert store.url("bkt", "data/train.npz") == (bdir / "data" / "train.npz").as_uri()
    assert store.uri("bkt", "data/train.npz") == "local://bkt/data/train.npz"


def test_remove_bucket_errors(store):
    store.put_bytes("bkt", "x", b"1")
    with pytest.raises(StoreError, match="not empty"):
        store.remove_bucket("bkt")
    with pytest.raises(NotFound, match="nope"):
        store.remove_bucket("nope")


def test_from_backend_uses_the_store_dir(dlaas_home):
    from backend.facade import open_backend

    backend = open_backend()
    store = backend.store
    assert isinstance(store, LocalStore) and store.kind == "local"
    assert store.root == backend.paths.store_dir
    store.make_bucket("made-here")
    assert (dlaas_home / "store" / "made-here").is_dir()


def test_put_folder_refuses_a_missing_bucket_before_writing(store, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("x")
    with pytest.raises(NotFound, match="nobucket"):
        store.put_folder(tmp_path / "src", "nobucket", "p/")
    with pytest.raises(BadInput, match="not a folder"):
        store.put_folder(tmp_path / "src" / "f", "bkt", "p/")


def test_cached_scan_of_a_stable_folder_never_hides_a_change(store, tmp_path, monkeypatch):
    monkeypatch.setattr(local_listing, "CACHE_MIN_ENTRIES", 1)
    for i in range(6):
        store.put_bytes("bkt", f"big/k{i}", b"x")
    folder = tmp_path / "root" / "bkt" / "big"
    os.utime(folder, ns=(0, 10**9))  # unchanged for decades: its scan may be kept
    first = store.list("bkt", "big/", page_size=2)
    assert not store._scans.holding  # a first page needs no full sort
    store.list("bkt", "big/", page_size=2, token=first.next_token)
    assert store._scans.holding
    assert keys(store.list("bkt", "big/", page_size=2, token=first.next_token)) == ["big/k2", "big/k3"]
    store.put_bytes("bkt", "big/k25", b"x")
    store.delete("bkt", ["big/k3"])
    page = store.list("bkt", "big/", page_size=3, token=first.next_token)
    assert keys(page) == ["big/k2", "big/k25", "big/k4"]


def test_put_and_stat_agree_on_the_etag(store, monkeypatch):
    assert store.put_bytes("bkt", "s", b"abc").etag == store.stat("bkt", "s").etag
    monkeypatch.setattr(local_mod, "ETAG_MD5_LIMIT", 1)
    assert store.put_bytes("bkt", "b", b"abc").etag == store.stat("bkt", "b").etag


def test_iter_objects_yields_s3_key_order(store):
    keys = ["top", "d/one", "d/two/deep", "d-sibling", "e/x", "d0"]
    for key in keys:
        store.put_bytes("bkt", key, b"x")
    assert [o.key for o in store.iter_objects("bkt")] == sorted(keys, key=lambda k: k.encode())
