"""Memory sizes and durations as manifests write them."""
from __future__ import annotations

import pytest

from backend.manifest.units import format_duration, memory_to_kubernetes, parse_duration, parse_memory


@pytest.mark.parametrize("text, size", [
    ("512MB", 512 * 10**6), ("512MiB", 512 * 2**20), ("4GB", 4 * 10**9), ("4GiB", 4 * 2**30),
    ("1TB", 10**12), ("1TiB", 2**40), ("1Gb", 10**9), ("800Mb", 800 * 10**6), ("1.5GiB", 3 * 2**29),
    (".5GB", 5 * 10**8), ("2 GiB", 2 * 2**30), ("16GiB ", 16 * 2**30),
])
def test_memory_units(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text, message", [
    ("4Gi", "did you mean 4GiB?"), ("4g", "unknown memory unit 'g'"), ("4KB", "unknown memory unit 'KB'"),
    ("4", "has no unit"), ("-1GB", "cannot read"), ("GB", "cannot read"), ("0MB", "more than zero"),
    ("1e3MB", "cannot read"),
])
def test_memory_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_memory(text)


@pytest.mark.parametrize("text, quantity", [
    ("512MB", "512M"), ("512MiB", "512Mi"), ("4GiB", "4Gi"), ("1Gb", "1G"), ("2TiB", "2Ti"),
    ("2.0GiB", "2Gi"), ("1.5GiB", str(3 * 2**29)),
])
def test_kubernetes_quantities(text: str, quantity: str) -> None:
    assert memory_to_kubernetes(text) == quantity


@pytest.mark.parametrize("text, seconds", [
    ("90m", 5400), ("2h", 7200), ("30s", 30), ("1h30m", 5400), ("1d", 86400), ("1.5h", 5400),
    ("2h 15m", 8100),
])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("value, message", [
    (90, "has no unit"), ("90", "has no unit"), ("90 minutes", "cannot read"), ("0s", "at least 1s"),
    ("m", "cannot read"), (True, "expected a duration"),
])
def test_duration_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(value)
