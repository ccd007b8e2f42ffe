"""A run's training data is read-only to it: a read-only bind mount in the learner's own mount namespace.

Every learner is started through a small helper (`HELPER`, run by this Python with `-I -S`, so it
imports nothing of ours and costs one interpreter start) that, before it execs the learner's
wrapper:

1. unshares a mount namespace (root) or a user + mount namespace mapping the user to itself
   (anyone else), and makes every mount in it private, so nothing it does reaches the machine;
2. bind-mounts the data folder onto itself and onto `$DATA_DIR`, both read-only (and the data
   cache's objects, which DATA_DIR's hard links share, for data from S3);
3. as root, unshares once more (where allowed) into a user namespace that maps every id to itself: the mounts
   copied into it are locked, so the command (root in that namespace, not on the machine) cannot
   remount them writable or unmount them. A user's command never has the capabilities to.

Writes, deletes and new files under `$DATA_DIR` then fail with EROFS, for root too, and the bucket
behind it is untouched. The cost is measured in bench/bench_readonly_data.py: about the same for 1 file
or 10,000 (one mount), against a full copy of the data for the alternatives.

Where namespaces are not allowed (a container without CAP_SYS_ADMIN, user namespaces disabled),
`probe()` says why and the executor gives the run a private copy of its data instead (reflinked
where the file system can, via copy_file_range), so a write lands in the copy, never in the bucket.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# argv: helper SRC DEST [ALSO_READ_ONLY...] -- PROGRAM ARGS...; exits 126 with one line on stderr if it cannot.
HELPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
NEWNS, NEWUSER = 0x00020000, 0x10000000
RDONLY, NOSUID, NODEV, REMOUNT, BIND, REC, PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
def die(what):
    e = ctypes.get_errno()
    sys.stderr.write("dlaas: cannot make the training data read-only (%s: %s)\n" % (what, os.strerror(e)))
    sys.stderr.flush()
    os._exit(126)
def mount(src, dst, flags, what):
    if libc.mount(src and src.encode(), dst.encode(), None, flags, None) != 0:
        die(what)
def kept(path):
    # A remount must keep the flags the mount already has (a user namespace may not drop them).
    f, out = os.statvfs(path).f_flag, 0
    for st, ms in ((2, 2), (4, 4), (8, 8), (1024, 1024), (2048, 2048), (4096, 1 << 21)):
        if f & st:
            out |= ms
    return out
def read_only(src, dst):
    mount(src, dst, BIND | REC, "bind " + dst)
    mount(None, dst, REMOUNT | BIND | RDONLY | NOSUID | NODEV | kept(dst), "read-only " + dst)
def idmap(uid, gid):
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    for name, a in (("uid_map", uid), ("gid_map", gid)):
        with open("/proc/self/" + name, "w") as f:
            f.write("%d %d 1\n" % (a, a))
src, dest = sys.argv[1], sys.argv[2]
cut = sys.argv.index("--")
extra, prog = sys.argv[3:cut], sys.argv[cut + 1:]
assert prog
uid, gid = os.geteuid(), os.getegid()
if uid == 0:
    if libc.unshare(NEWNS) != 0:
        die("unshare mount namespace")
else:
    if libc.unshare(NEWUSER | NEWNS) != 0:
        die("unshare user namespace")
    try:
        idmap(uid, gid)
    except OSError:
        die("map ids")
mount(None, "/", REC | PRIVATE, "make mounts private")
read_only(src, src)
if dest != src:
    read_only(src, dest)
for other in extra:
    read_only(other, other)
if uid == 0:
    # Only a process outside the new namespace may map every id: a child writes our map.
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(w)
        ok = os.read(r, 1) == b"1"
        try:
            for name in ("uid_map", "gid_map") if ok else ():
                with open("/proc/%d/%s" % (os.getppid(), name), "w") as f:
                    f.write("0 0 4294967295\n")
        except OSError:
            os._exit(1)
        os._exit(0)
    os.close(r)
    split = libc.unshare(NEWUSER | NEWNS) == 0
    os.write(w, b"1" if split else b"0")
    os.close(w)
    _, status = os.waitpid(child, 0)
    if split and status != 0:
        die("map ids")
os.execvp(prog[0], prog)
"""

_probed: tuple[bool, str] | None = None
_probe_lock = threading.Lock()


def helper_argv(src: Path, dest: Path, program: list[str], also: tuple[Path, ...] = ()) -> list[str]:
    """The argv that runs `program` with `src` mounted read-only at itself and at `dest`, and the
    folders `also` (where DATA_DIR's hard links point: the data cache) read-only at themselves."""
    return [sys.executable, "-I", "-S", "-c", HELPER, str(src), str(dest), *map(str, also), "--", *program]


def check(src: Path, dest: Path, also: tuple[Path, ...] = ()) -> tuple[bool, str]:
    """(True, "") when these folders can be mounted read-only here (the helper runs `true`)."""
    try:
        done = subprocess.run(helper_argv(src, dest, ["true"], also), capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"the namespace helper did not run ({exc})"
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return False, why[0].removeprefix("dlaas: ")
    return True, ""


def probe(scratch: Path | None = None) -> tuple[bool, str]:
    """(True, "") when read-only mounts work here, else (False, why); tried once per process."""
    global _probed
    with _probe_lock:
        if _probed is None:
            _probed = _try(scratch)
        return _probed


def _try(scratch: Path | None) -> tuple[bool, str]:
    if not sys.platform.startswith("linux"):
        return False, f"read-only mounts need Linux (this is {sys.platform})"
    with tempfile.TemporaryDirectory(prefix="dlaas-ro-", dir=scratch) as tmp:
        src, dest = Path(tmp, "src"), Path(tmp, "dest")
        src.mkdir()
        dest.mkdir()
        (src / "f").write_text("x")
        # Inside: writing must fail with EROFS and the file must still read back.
        check = ("import errno,sys\ntry:\n open(sys.argv[1]+'/f','w')\nexcept OSError as e:\n"
                 " sys.exit(0 if e.errno==errno.EROFS else 3)\nsys.exit(4)")
        try:
            done = subprocess.run(helper_argv(src, dest, [sys.executable, "-I", "-S", "-c", check, str(dest)]),
                                  capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            return False, f"the namespace helper did not run ({exc})"
        if done.returncode != 0:
            why = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            return False, why[0].removeprefix("dlaas: ")
        if (src / "f").read_text() != "x":
            return False, "the probe's data changed through the read-only mount"
    return True, ""


def private_copy(src: Path, dest: Path) -> tuple[int, int]:
    """Copy the folder `src` to `dest` (new), reflinking where the file system can; (files, bytes).

    copy_file_range lets btrfs/XFS share the blocks (a reflink) and copies in the kernel elsewhere.
    Symlinks are copied as links only when they point inside `src`; others are skipped."""
    files = size = 0
    src = Path(src)
    root = os.path.realpath(src)
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        out = Path(dest, rel) if rel != "." else Path(dest)
        out.mkdir(parents=True, exist_ok=True)
        for name in filenames:
            s, d = os.path.join(dirpath, name), out / name
            if os.path.islink(s):
                real = os.path.realpath(s)
                if real != root and not real.startswith(root + os.sep):
                    continue
            size += _copy_file(s, d)
            files += 1
        for name in list(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                dirnames.remove(name)  # a linked folder is never followed out of the data
    return files, size


def _copy_file(src: str, dest: Path) -> int:
    with open(src, "rb") as fi, open(dest, "wb") as fo:
        n = os.fstat(fi.fileno()).st_size
        left = n
        try:
            while left > 0:
                got = os.copy_file_range(fi.fileno(), fo.fileno(), left)
                if got == 0:
                    break
                left -= got
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            import shutil

            fi.seek(n - left)
            shutil.copyfileobj(fi, fo, 1 << 20)
    return n
