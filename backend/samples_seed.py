"""Put the bundled samples' data into the store, so a new user of the local profile sees real data.

Every `samples/<name>/data/**` becomes `dlaas-samples/<name>/**`, and the bucket `dlaas-results`
(where runs store their results) is created. A marker object records what the finished copy holds,
so a second call costs one small read and one bucket check; when the marker is missing or stale (an
interrupted first call, a sample added by an upgrade) objects already present with the same size are
skipped and only the rest is copied.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import NotFound
from .store.base import ObjectStore
from .store.files import folder_files

SAMPLES_BUCKET = "dlaas-samples"
RESULTS_BUCKET = "dlaas-results"
MARKER_KEY = ".dlaas-seeded.json"


def _sample_files(samples_root: Path) -> list[tuple[Path, str]]:
    """(file, key) for every sample's data; a sample without a `data/` folder has nothing to seed."""
    if not samples_root.is_dir():
        return []
    out = []
    for sample in sorted(p for p in samples_root.iterdir() if p.is_dir()):
        data = sample / "data"
        if data.is_dir():
            out.extend((path, f"{sample.name}/{rel}") for path, rel in folder_files(data))
    return out


def _fingerprint(files: list[tuple[Path, str]]) -> dict[str, int]:
    return {key: path.stat().st_size for path, key in files}


def ensure_sample_data(store: ObjectStore, samples_root: Path | None = None) -> int:
    """Seed the samples' data (idempotent); returns how many objects were copied this time."""
    if samples_root is None:
        from .paths import resource_dir

        samples_root = resource_dir("samples")
    files = _sample_files(samples_root)
    wanted = _fingerprint(files)
    try:  # NotFound also when the bucket is missing: the common case costs one read
        marker = json.loads(store.read_range(SAMPLES_BUCKET, MARKER_KEY))
    except (NotFound, ValueError):
        marker = None
    if marker == wanted and store.bucket_exists(RESULTS_BUCKET):
        return 0
    if not store.bucket_exists(SAMPLES_BUCKET):
        store.make_bucket(SAMPLES_BUCKET)
    if not store.bucket_exists(RESULTS_BUCKET):
        store.make_bucket(RESULTS_BUCKET)
    copied = 0
    for path, key in files:
        try:
            if store.stat(SAMPLES_BUCKET, key).size == wanted[key]:
                continue
        except NotFound:
            pass
        store.put_file(path, SAMPLES_BUCKET, key)
        copied += 1
    # Written last: its presence means every object above is in place.
    store.put_bytes(SAMPLES_BUCKET, MARKER_KEY, json.dumps(wanted, sort_keys=True).encode())
    return copied
