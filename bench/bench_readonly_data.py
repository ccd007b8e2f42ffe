"""Keeping a run's training data read-only: what each way costs on a 1 GB / 10,000-file data set.

The local engine must stop a run from changing the data behind DATA_DIR, root included, so file
modes are not enough. The three candidates, measured side by side on the same data:
(a) a read-only bind mount in the learner's own (user +) mount namespace (backend/engines/local/
    rodata.py): the extra cost of starting a learner through the helper, against starting it plainly;
(b) a reflink copy, `cp -a --reflink=auto` (shares blocks on btrfs/XFS; a full copy elsewhere);
(c) a private copy made while the run is DOWNLOADING (rodata.private_copy, copy_file_range),
    against shutil.copytree of the same tree.
Each copy also costs its size in disk per run; the mount costs none. The page cache is warm (the
data was just written), which favours the copies. Sizes: BENCH_RO_FILES (10000) files of
BENCH_RO_FILE_KB (100) KiB, in BENCH_DIR (else the system's temp folder).
Run: `.venv/bin/python bench/bench_readonly_data.py` (from the repository root).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import timed  # noqa: E402
from backend.engines.local import rodata  # noqa: E402

N_FILES = int(os.environ.get("BENCH_RO_FILES", "10000"))
FILE_KB = int(os.environ.get("BENCH_RO_FILE_KB", "100"))
FICLONE = 0x40049409


def make_data(root: Path) -> int:
    block = bytearray(os.urandom(FILE_KB * 1024))
    total = 0
    for i in range(N_FILES):
        folder = root / f"shard-{i % 100:02d}"
        if i < 100:
            folder.mkdir(parents=True)
        block[:8] = i.to_bytes(8, "little")  # every file differs
        with open(folder / f"sample-{i:05d}.bin", "wb") as fh:
            fh.write(block)
        total += len(block)
    return total


def reflinks_work(root: Path) -> bool:
    src, dst = root / "reflink-src", root / "reflink-dst"
    src.write_bytes(b"x" * 4096)
    try:
        with open(src, "rb") as fi, open(dst, "wb") as fo:
            fcntl.ioctl(fo.fileno(), FICLONE, fi.fileno())
        return True
    except OSError:
        return False
    finally:
        src.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)


def fs_type(path: Path) -> str:
    try:
        out = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def row(label: str, seconds: float, extra_disk: str, target: str, anchor: str) -> None:
    print(f"{label:<46} {seconds * 1000:10.1f} ms  disk +{extra_disk:<8} target {target:<12} anchor {anchor}")


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="bench-rodata-", dir=os.environ.get("BENCH_DIR")))
    try:
        data = base / "data"
        total = make_data(data)
        size_txt = f"{total / 1e9:.2f} GB"
        print(f"data set: {N_FILES} files, {size_txt}, on {fs_type(base)} "
              f"(reflinks {'work' if reflinks_work(base) else 'do not work'} here); uid {os.geteuid()}")
        dest = base / "dest"
        dest.mkdir()

        # (a) the read-only mount: per learner start, whatever the data's size.
        ok, why = rodata.probe(base)
        plain = timed(lambda: subprocess.run(["sh", "-c", "true"], check=True), repeat=10)
        anchor = f"plain start {plain * 1000:.1f} ms"
        if ok:
            argv = rodata.helper_argv(data, dest, ["sh", "-c", f"test -f {dest}/shard-00/sample-00000.bin"])
            mounted = timed(lambda: subprocess.run(argv, check=True), repeat=10)
            row("(a) read-only mount (namespace), per start", mounted, "0", "<= 0.1 s", anchor)
        else:
            print(f"(a) read-only mount: not possible here ({why})")

        # (b) cp --reflink=auto
        def cp_reflink() -> None:
            out = base / "cp"
            shutil.rmtree(out, ignore_errors=True)
            subprocess.run(["cp", "-a", "--reflink=auto", str(data), str(out)], check=True)
        t_cp = timed(cp_reflink, repeat=2)

        # (c) a private copy while DOWNLOADING, and copytree as its anchor
        def private() -> None:
            out = base / "copy"
            shutil.rmtree(out, ignore_errors=True)
            rodata.private_copy(data, out)
        t_priv = timed(private, repeat=2)

        def tree() -> None:
            out = base / "tree"
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(data, out)
        t_tree = timed(tree, repeat=2)
        tree_txt = f"copytree {t_tree * 1000:.0f} ms"
        row("(b) cp -a --reflink=auto, per run", t_cp, size_txt if not reflinks_work(base) else "~0",
            "(compared)", tree_txt)
        row("(c) private copy during DOWNLOADING, per run", t_priv, size_txt, "<= anchor", tree_txt)
        if ok:
            print(f"chosen: (a), {t_priv / mounted:.0f}x cheaper per run than a private copy and no disk; "
                  "(c) is the fallback where namespaces are not allowed")
        return 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
