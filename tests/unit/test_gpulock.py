"""Host-wide GPU locks: one holder at a time across processes, freed when the holder dies."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from backend.engines.local.gpulock import held_by, lock_path, try_acquire

UUID = "GPU-11111111-1111-1111-1111-111111111111"

HOLDER = textwrap.dedent(
    """
    import sys
    from backend.engines.local.gpulock import try_acquire
    lock = try_acquire(sys.argv[1], owner="training-other01")
    print("held" if lock else "busy", flush=True)
    sys.stdin.readline()  # hold until told to go
    """
)


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    folder = tmp_path / "locks"
    monkeypatch.setenv("DLAAS_GPU_LOCK_DIR", str(folder))
    return folder


def test_acquire_release_and_folder_mode(lock_dir):
    lock = try_acquire(UUID, owner="training-mine0001")
    assert lock is not None and lock.held
    assert stat.S_IMODE(lock_dir.stat().st_mode) == 0o1777  # world-writable, sticky
    assert stat.S_IMODE(lock_path(UUID).stat().st_mode) == 0o666
    info = held_by(UUID)
    assert info["pid"] == os.getpid() and info["owner"] == "training-mine0001"
    assert try_acquire(UUID) is None  # a second open file in the same process is refused too
    lock.release()
    lock.release()  # twice is harmless
    assert held_by(UUID) is None
    with try_acquire(UUID) as again:
        assert again is not None
    assert held_by(UUID) is None
    assert lock_path(UUID).exists()  # never removed


def test_unknown_device_is_free(lock_dir):
    assert held_by("GPU-never-locked") is None
    assert lock_path("cpu:0").name == "cpu_0.lock"
    assert lock_path("../../etc/passwd").parent == lock_dir


def test_two_processes_never_share_a_device(lock_dir):
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, UUID], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "held"
        assert try_acquire(UUID) is None
        info = held_by(UUID)
        assert info["pid"] == child.pid and info["owner"] == "training-other01"
        other = try_acquire("GPU-22222222-2222-2222-2222-222222222222")
        assert other is not None  # other devices are unaffected
        other.release()
        # a second process asking for the same device is refused as well
        rival = subprocess.run(
            [sys.executable, "-c", HOLDER, UUID], input="\n", capture_output=True, text=True, timeout=60
        )
        assert rival.stdout.strip() == "busy"
    finally:
        child.communicate("\n", timeout=60)
    assert held_by(UUID) is None
    mine = try_acquire(UUID)
    assert mine is not None
    mine.release()


def test_a_killed_holder_frees_the_device(lock_dir):
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, UUID], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert child.stdout.readline().strip() == "held"
    child.kill()
    child.wait(timeout=30)
    child.stdin.close()
    child.stdout.close()
    lock = try_acquire(UUID)
    assert lock is not None
    lock.release()


def test_claim_is_all_or_none_and_skips_taken_devices(lock_dir):
    from backend.engines.local.gpulock import claim_devices, locked_elsewhere

    a, b, c = "GPU-a", "GPU-b", "GPU-c"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, b], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "held"
        assert set(locked_elsewhere([a, b, c])) == {b}
        assert locked_elsewhere([a, b, c])[b]["owner"] == "training-other01"
        assert claim_devices([a, b, c], 3) is None  # only two can be had: none are kept
        assert held_by(a) is None and held_by(c) is None
        locks = claim_devices([a, b, c], 2, owner="training-mine0002")
        assert [lock.uuid for lock in locks] == [a, c]
        assert locked_elsewhere([a, c]) == {}  # our own locks are not someone else's
        for lock in locks:
            lock.release()
    finally:
        child.communicate("\n", timeout=60)


def test_runs_sharing_a_gpu_hold_its_lock_until_the_last_lets_go(lock_dir):
    first = try_acquire(UUID, owner="training-share001")
    first.shared = True
    second = first.join()
    assert second.shared and second.fd != first.fd
    first.release()  # the first sharing run ends: the GPU stays locked for the second
    assert held_by(UUID) is not None
    assert try_acquire(UUID) is None
    second.release()  # the last one ends: the lock is free
    assert held_by(UUID) is None
    again = try_acquire(UUID)
    assert again is not None
    again.release()
