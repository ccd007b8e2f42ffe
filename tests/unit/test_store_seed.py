"""Seeding the samples' data into the store: complete, idempotent, cheap the second time."""
from __future__ import annotations

from pathlib import Path

import pytest

from backend.samples_seed import MARKER_KEY, RESULTS_BUCKET, SAMPLES_BUCKET, ensure_sample_data
from backend.store.local import LocalStore


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    root = tmp_path / "samples"
    (root / "pytorch-digits" / "data").mkdir(parents=True)
    (root / "pytorch-digits" / "data" / "digits.npz").write_bytes(b"D" * 5000)
    (root / "pytorch-digits" / "data" / "README.txt").write_text("digits\n")
    (root / "pytorch-digits" / "model").mkdir()
    (root / "pytorch-digits" / "model" / "train.py").write_text("print()\n")
    (root / "pytorch-sweep").mkdir()  # no data folder: nothing to seed
    (root / "other" / "data" / "nested").mkdir(parents=True)
    (root / "other" / "data" / "nested" / "x.csv").write_text("a,b\n1,2\n")
    return root


class CountingStore(LocalStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[str] = []

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if name in {"put_file", "put_bytes", "stat", "read_range", "bucket_exists", "make_bucket", "list"}:
            super().__getattribute__("calls").append(name)
        return attr


def test_seeds_every_sample_data_folder_and_the_results_bucket(tmp_path, samples):
    store = LocalStore(tmp_path / "store")
    assert ensure_sample_data(store, samples) == 3
    keys = [o.key for o in store.iter_objects(SAMPLES_BUCKET) if o.key != MARKER_KEY]
    assert keys == ["other/nested/x.csv", "pytorch-digits/README.txt", "pytorch-digits/digits.npz"]
    assert store.read_range(SAMPLES_BUCKET, "pytorch-digits/digits.npz") == b"D" * 5000
    assert store.bucket_exists(RESULTS_BUCKET)


def test_second_call_copies_nothing_and_is_cheap(tmp_path, samples):
    store = CountingStore(tmp_path / "store")
    ensure_sample_data(store, samples)
    store.calls.clear()
    assert ensure_sample_data(store, samples) == 0
    assert "put_file" not in store.calls and "put_bytes" not in store.calls
    assert len(store.calls) <= 2


def test_interrupted_seed_resumes_skipping_what_is_there(tmp_path, samples):
    store = CountingStore(tmp_path / "store")
    ensure_sample_data(store, samples)
    store.delete(SAMPLES_BUCKET, [MARKER_KEY, "other/nested/x.csv"])
    store.calls.clear()
    assert ensure_sample_data(store, samples) == 1
    assert store.calls.count("put_file") == 1
    assert store.read_range(SAMPLES_BUCKET, "other/nested/x.csv") == b"a,b\n1,2\n"


def test_a_changed_sample_is_recopied(tmp_path, samples):
    store = LocalStore(tmp_path / "store")
    ensure_sample_data(store, samples)
    (samples / "pytorch-digits" / "data" / "digits.npz").write_bytes(b"E" * 6000)
    assert ensure_sample_data(store, samples) == 1
    assert store.read_range(SAMPLES_BUCKET, "pytorch-digits/digits.npz") == b"E" * 6000


def test_existing_buckets_and_user_objects_are_kept(tmp_path, samples):
    store = LocalStore(tmp_path / "store")
    store.make_bucket(SAMPLES_BUCKET)
    store.put_bytes(SAMPLES_BUCKET, "mine.txt", b"user data")
    store.make_bucket(RESULTS_BUCKET)
    ensure_sample_data(store, samples)
    assert store.read_range(SAMPLES_BUCKET, "mine.txt") == b"user data"


def test_no_samples_folder_still_makes_the_buckets(tmp_path):
    store = LocalStore(tmp_path / "store")
    assert ensure_sample_data(store, tmp_path / "absent") == 0
    assert store.bucket_exists(SAMPLES_BUCKET) and store.bucket_exists(RESULTS_BUCKET)


def test_default_samples_root_is_the_bundled_one(tmp_path, monkeypatch):
    import backend.paths

    seen = []

    def fake_resource_dir(name):
        seen.append(name)
        return tmp_path / "nothing"

    monkeypatch.setattr(backend.paths, "resource_dir", fake_resource_dir)
    ensure_sample_data(LocalStore(tmp_path / "store"))
    assert seen == ["samples"]
