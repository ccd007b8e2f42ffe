"""The whole-object CRC32 of s3_checksum: pieces combine into the CRC of the whole, in any split."""
from __future__ import annotations

import concurrent.futures
import os
import zlib

import pytest

from backend.store import s3_checksum


@pytest.mark.parametrize("split", [0, 1, 4095, 65536, 100_000])
def test_crcs_of_two_pieces_combine_into_the_crc_of_both(split):
    data = os.urandom(100_000)
    a, b = data[:split], data[split:]
    assert s3_checksum.combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(data)


def test_a_file_is_summed_in_pieces_on_a_pool(tmp_path, monkeypatch):
    monkeypatch.setattr(s3_checksum, "PIECE", 1000)
    monkeypatch.setattr(s3_checksum, "BLOCK", 300)
    data = os.urandom(10_007)
    (tmp_path / "f").write_bytes(data)
    (tmp_path / "empty").write_bytes(b"")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        assert s3_checksum.file_crc32(tmp_path / "f", len(data), pool).result() == zlib.crc32(data)
        assert s3_checksum.file_crc32(tmp_path / "empty", 0, pool).result() == 0
        with pytest.raises(OSError, match="shrank"):
            s3_checksum.file_crc32(tmp_path / "f", len(data) + 5, pool).result()
        with pytest.raises(FileNotFoundError):
            s3_checksum.file_crc32(tmp_path / "gone", 10, pool).result()
        with pytest.raises(concurrent.futures.CancelledError):
            s3_checksum.file_crc32(tmp_path / "f", len(data), pool, lambda: True).result()


def test_the_metadata_value_round_trips_and_anything_else_is_ignored():
    assert s3_checksum.parse(s3_checksum.encode(0x0123ABCD)) == 0x0123ABCD
    assert s3_checksum.encode(5) == "00000005"
    for junk in (None, "", "xyz", "0123456789", "zzzzzzzz"):
        assert s3_checksum.parse(junk) is None
