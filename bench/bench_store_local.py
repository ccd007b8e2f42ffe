"""Folder-store speed: one page of a 100,000-entry folder, and folder transfers.

Figures, each next to its target and an anchor measured in the same run:
- first and last page (1000 entries) of a folder of 100,000 objects (+ 100 sub-folders), against a
  bare `sorted(os.listdir())` of the same folder: a page costs one scan + sort + 1000 stats.
- put_folder / get_prefix of 2,000 × 16 KiB files, against shutil.copytree of the same tree.
Run: `.venv/bin/python bench/bench_store_local.py` (from the repository root).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.store.base import Transfer  # noqa: E402
from backend.store import local_listing  # noqa: E402
from backend.store.local import LocalStore  # noqa: E402

N_OBJECTS = 100_000
N_FOLDERS = 100
PAGE_TARGET = "<= 3x anchor"  # ~0.1 s on an idle 2-core machine; relative, as load varies
N_FILES, FILE_SIZE = 2000, 16 * 1024


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def row(what: str, seconds: float, target: str, anchor: str) -> None:
    print(f"{what:<44} {seconds * 1000:9.1f} ms   target {target:<14} anchor {anchor}")


def bench_listing(root: Path) -> None:
    store = LocalStore(root / "store")
    store.make_bucket("big")
    folder = root / "store" / "big" / "huge"
    folder.mkdir()
    for i in range(N_OBJECTS):
        with open(folder / f"obj-{i:06d}.bin", "wb") as fh:
            fh.write(b"x")
    for i in range(N_FOLDERS):
        (folder / f"dir-{i:03d}").mkdir()
        (folder / f"dir-{i:03d}" / "f").write_bytes(b"y")
    total = N_OBJECTS + N_FOLDERS
    time.sleep(local_listing.STABLE_NS / 1e9 + 0.1)  # a data folder at rest, as users' datasets are

    anchor = best_of(3, lambda: sorted(os.listdir(folder)))
    anchor_txt = f"sorted(os.listdir) {anchor * 1000:.1f} ms"
    def first_page_cold():
        store._scans.clear()  # what a fresh process pays
        page = store.list("big", "huge/", page_size=1000)
        assert len(page.items) == 1000 and page.next_token

    t_first = best_of(3, first_page_cold)
    row(f"first page of {total:,} entries (cold)", t_first, PAGE_TARGET, anchor_txt)
    last_after = "huge/obj-099500.bin"
    store.list("big", "huge/", page_size=1000, start_after=last_after)
    t_last = best_of(3, lambda: store.list("big", "huge/", page_size=1000, start_after=last_after))
    row("a late page (start_after, scan kept)", t_last, PAGE_TARGET, anchor_txt)

    def walk_all() -> int:
        n, token = 0, None
        while True:
            page = store.list("big", "huge/", page_size=1000, token=token)
            n += len(page.items)
            token = page.next_token
            if token is None:
                return n

    t0 = time.perf_counter()
    assert walk_all() == total
    t_all = time.perf_counter() - t0
    row(f"all {total // 1000 + 1} pages, one by one", t_all, "<= 10x anchor", anchor_txt)
    # A folder that just changed is rescanned for every page: the worst case.
    (folder / "touch").write_bytes(b"z")
    t_changed = best_of(3, lambda: store.list("big", "huge/", page_size=1000, start_after=last_after))
    row("a late page of a folder changed just now", t_changed, PAGE_TARGET, anchor_txt)


def bench_transfers(root: Path) -> None:
    src = root / "tree"
    payload = os.urandom(FILE_SIZE)
    for i in range(N_FILES):
        sub = src / f"d{i % 20:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.bin").write_bytes(payload)
    mib = N_FILES * FILE_SIZE / 2**20
    t0 = time.perf_counter()
    shutil.copytree(src, root / "copy")
    anchor = time.perf_counter() - t0
    anchor_txt = f"shutil.copytree {anchor * 1000:.0f} ms"

    store = LocalStore(root / "store")
    store.make_bucket("xfer")
    up = Transfer()
    t0 = time.perf_counter()
    store.put_folder(src, "xfer", "tree/", transfer=up)
    t_up = time.perf_counter() - t0
    assert up.done == up.total == N_FILES * FILE_SIZE
    row(f"put_folder {N_FILES} x 16 KiB ({mib:.0f} MiB)", t_up, "<= 4x anchor", anchor_txt)
    down = Transfer()
    t0 = time.perf_counter()
    store.get_prefix("xfer", "tree/", root / "down", transfer=down)
    t_down = time.perf_counter() - t0
    assert down.done == down.total
    row(f"get_prefix {N_FILES} x 16 KiB ({mib:.0f} MiB)", t_down, "<= 4x anchor", anchor_txt)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        bench_listing(Path(tmp))
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        bench_transfers(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
