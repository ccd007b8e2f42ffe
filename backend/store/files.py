"""File-side helpers every store's transfers share: safe destinations, folder walks, chunked copies.

Keys that come out of a bucket are data, not trusted paths: `safe_dest_path` is the one place that
turns a key into a local path, and it refuses anything that would land outside the destination.
"""
from __future__ import annotations

import os

from ..errors import BadInput

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~2.5 ms) on the CLI's path
if TYPE_CHECKING:  # the agent's pid check imports this module: not the store's types (nor pathlib) with it
    from pathlib import Path
    from typing import BinaryIO
    from .base import Transfer

CHUNK = 1 << 20


def process_alive(pid: int) -> bool:
    """Whether the process runs; a zombie (killed, not yet reaped by its parent) does not: a
    temp file or an upload whose writer is gone may be reclaimed."""
    try:
        raw = open(f"/proc/{pid}/stat", "rb").read()
    except FileNotFoundError:
        return False
    except OSError:
        raw = b""
    if raw:
        return raw[raw.rfind(b")") + 2 : raw.rfind(b")") + 3] not in (b"Z", b"X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def within(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def safe_dest_path(dest: Path, relative_key: str) -> Path:
    """Where `relative_key` lands under `dest`, refusing anything that would land outside it.

    Shared by every store's folder download: keys come from a bucket and are data, not trusted paths.
    """
    segments = relative_key.split("/")
    if (
        not relative_key
        or relative_key.startswith("/")
        or "\x00" in relative_key
        or any(seg in ("", ".", "..") for seg in segments)
    ):
        raise BadInput(f"object key {relative_key!r} cannot be written under {dest}: unsafe path")
    base = os.path.realpath(dest)
    target = os.path.realpath(os.path.join(base, *segments))
    if not within(target, base) or target == base:
        raise BadInput(f"object key {relative_key!r} would be written outside {dest}")
    from pathlib import Path

    return Path(target)


def copy_stream(src: BinaryIO, dst: BinaryIO, transfer: Transfer | None, md5=None) -> None:
    while True:
        if transfer is not None:
            transfer.check()
        chunk = src.read(CHUNK)
        if not chunk:
            return
        dst.write(chunk)
        if md5 is not None:
            md5.update(chunk)
        if transfer is not None:
            transfer.advance(len(chunk))


def folder_files(src: Path) -> list[tuple[Path, str]]:
    """(path, relative key) of the files under `src`; symlinked folders are not followed (loops)."""
    from pathlib import Path

    out = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(src).as_posix()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if not path.is_file():
                continue
            out.append((path, name if rel_dir == "." else f"{rel_dir}/{name}"))
    return out
