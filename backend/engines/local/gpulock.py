"""Host-wide locks, one per device, so two users' agents never hand out the same GPU.

Each device has a lock file named after its UUID in a shared folder (default /tmp/dlaas-gpu-locks,
or `DLAAS_GPU_LOCK_DIR`), created world-writable with the sticky bit like /tmp itself: anyone can
take a lock, nobody can delete another user's file. The lock is `flock(LOCK_EX)` on an open file:
the kernel drops it when the holder exits or crashes, so a dead agent never strands a GPU, and no
lock file is ever removed (removing one would let two holders lock two different files).
The file's contents say who holds it (pid, user, run), for `dlaas-tui gpus` and error messages.
"""
from __future__ import annotations

import fcntl
import getpass
import json
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from backend import clock

DEFAULT_LOCK_DIR = "/tmp/dlaas-gpu-locks"


def lock_dir() -> Path:
    return Path(os.environ.get("DLAAS_GPU_LOCK_DIR") or DEFAULT_LOCK_DIR)


def _ensure_dir(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=False)
        os.chmod(folder, 0o1777)  # mkdir's mode is cut by the umask; the sticky bit must be set
    except FileExistsError:
        mode = folder.stat().st_mode
        if not stat.S_ISDIR(mode):
            raise NotADirectoryError(f"{folder}: the GPU lock folder is not a folder") from None
        if folder.stat().st_uid == os.getuid() and stat.S_IMODE(mode) != 0o1777:
            os.chmod(folder, 0o1777)
    return folder


def lock_path(uuid: str, folder: Path | None = None) -> Path:
    # UUIDs are GPU-…/MIG-…/cpu:N; anything else is made safe for a file name.
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", uuid)
    return (folder or lock_dir()) / f"{safe}.lock"


def _open(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        # Another user's file that is not writable to us: flock works on a read-only fd too.
        return os.open(path, os.O_RDONLY)
    try:
        if os.fstat(fd).st_uid == os.getuid():
            os.fchmod(fd, 0o666)  # the umask trimmed it; other users must be able to open it
    except OSError:
        pass
    return fd


@dataclass
class GpuLock:
    """A held lock; `release()` (or the process ending) lets it go."""

    uuid: str
    path: Path
    fd: int | None
    # Held for runs sharing the device (gpu_memory + share): each run has its own duplicate of
    # one open file, and releasing only closes it; the kernel lets the lock go when the last
    # duplicate (the agent's or a run process's inherited one) is closed.
    shared: bool = False

    @property
    def held(self) -> bool:
        return self.fd is not None

    def join(self) -> GpuLock:
        """Another hold on this lock for a run that shares the device (see `shared`)."""
        if self.fd is None:
            raise ValueError(f"{self.uuid}: the lock is not held")
        fd = os.dup(self.fd)
        os.set_inheritable(fd, True)
        self.shared = True
        return GpuLock(self.uuid, self.path, fd, shared=True)

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        if self.shared:
            os.close(fd)
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> GpuLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def try_acquire(uuid: str, *, owner: str = "", folder: Path | None = None) -> GpuLock | None:
    """Take the device's lock without waiting; None when someone (any user, any process) holds it."""
    folder = _ensure_dir(folder or lock_dir())
    path = lock_path(uuid, folder)
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    info = {
        "uuid": uuid,
        "pid": os.getpid(),
        "uid": os.getuid(),
        "user": _user(),
        "owner": owner,
        "since": clock.time(),
    }
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
    except OSError:
        pass  # a read-only fd on another user's file: the lock holds, the note is not written
    return GpuLock(uuid, path, fd)


def hold_device(uuid: str, state_dir: Path, owner: str = "") -> GpuLock | None:
    """A held lock on a device for a run (its fd inheritable, so the run's processes keep it if the
    agent dies), or None when anyone holds it. GPUs lock host-wide; cpu slots stand for this user's
    own CPU share, so they lock in the state dir and two users never block each other."""
    folder = state_dir / "slot-locks" if uuid.startswith("cpu:") else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    lock = try_acquire(uuid, owner=owner, folder=folder)
    if lock is not None and lock.fd is not None:
        os.set_inheritable(lock.fd, True)
    return lock


def held_by(uuid: str, *, folder: Path | None = None) -> dict[str, Any] | None:
    """Who holds the device's lock ({pid, user, owner, since, ...}), or None when it is free."""
    path = lock_path(uuid, folder)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = os.pread(fd, 4096, 0)
            try:
                info = json.loads(raw.decode())
            except (UnicodeDecodeError, json.JSONDecodeError):
                info = {}
            return info if isinstance(info, dict) else {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def claim_devices(
    uuids: Sequence[str], count: int, *, owner: str = "", folder: Path | None = None
) -> list[GpuLock] | None:
    """Lock `count` of the candidate devices, in order, all or none (a run never starts on part of
    what it asked for). The caller passes only devices it considers free; a lock taken meanwhile
    by another agent just moves on to the next candidate."""
    taken: list[GpuLock] = []
    for uuid in uuids:
        if len(taken) == count:
            break
        lock = try_acquire(uuid, owner=owner, folder=folder)
        if lock is not None:
            taken.append(lock)
    if len(taken) < count:
        for lock in taken:
            lock.release()
        return None
    return taken


def locked_elsewhere(uuids: Iterable[str], *, folder: Path | None = None) -> dict[str, dict[str, Any]]:
    """The devices whose lock another process holds (another user's agent), with who holds it."""
    out = {}
    for uuid in uuids:
        info = held_by(uuid, folder=folder)
        if info is not None and info.get("pid") != os.getpid():
            out[uuid] = info
    return out


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
