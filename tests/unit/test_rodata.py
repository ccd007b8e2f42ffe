"""The read-only data helper and the private-copy fallback (backend/engines/local/rodata.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.engines.local import rodata


def _data(root: Path) -> Path:
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha")
    (data / "sub" / "b.bin").write_bytes(os.urandom(70_000))
    return data


def test_the_helper_refuses_writes_deletes_remounts_and_keeps_the_pid(tmp_path):
    ok, why = rodata.probe()
    if not ok:
        pytest.skip(f"read-only mounts are not possible here: {why}")
    data = _data(tmp_path)
    view = tmp_path / "view"
    view.mkdir()
    script = (
        "import errno, os, sys\n"
        "v, d = sys.argv[1], sys.argv[2]\n"
        "out = []\n"
        "for fn in (lambda: open(v + '/a.txt', 'w'), lambda: os.remove(v + '/sub/b.bin'),\n"
        "           lambda: open(v + '/new', 'w'), lambda: open(d + '/a.txt', 'a')):\n"
        "    try:\n"
        "        fn(); out.append('ok')\n"
        "    except OSError as e:\n"
        "        out.append(errno.errorcode[e.errno])\n"
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"  # MS_REMOUNT | MS_BIND, no MS_RDONLY: writable
        "r = libc.mount(None, v.encode(), None, 32 | 4096, None)\n"
        "out.append('remount-ok' if r == 0 else 'remount-refused')\n"
        "print(os.getpid(), open(v + '/a.txt').read(), ' '.join(out))\n"
    )
    proc = subprocess.Popen(rodata.helper_argv(data, view, [sys.executable, "-c", script, str(view), str(data)]),
                            stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=60)
    pid, content, *results = out.split()
    assert int(pid) == proc.pid  # the helper execs: the learner's pid is the one the agent tracks
    assert content == "alpha"
    assert results == ["EROFS", "EROFS", "EROFS", "EROFS", "remount-refused"]
    assert (data / "a.txt").read_text() == "alpha" and (data / "sub" / "b.bin").exists()
    assert os.listdir(view) == []  # outside the run's namespace nothing was mounted


def test_private_copy_copies_the_tree_and_never_follows_links_out(tmp_path):
    data = _data(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("not data")
    (data / "leak.txt").symlink_to(secret)
    (data / "inside.txt").symlink_to(data / "a.txt")
    (data / "outdir").symlink_to(tmp_path, target_is_directory=True)
    files, size = rodata.private_copy(data, tmp_path / "copy")
    copy = tmp_path / "copy"
    assert (copy / "a.txt").read_text() == "alpha"
    assert (copy / "sub" / "b.bin").read_bytes() == (data / "sub" / "b.bin").read_bytes()
    assert (copy / "inside.txt").read_text() == "alpha" and not (copy / "inside.txt").is_symlink()
    assert not (copy / "leak.txt").exists() and not (copy / "outdir").exists()
    assert (files, size) == (3, 5 + 70_000 + 5)
    (copy / "a.txt").write_text("changed")
    assert (data / "a.txt").read_text() == "alpha"
