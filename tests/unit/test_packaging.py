"""Model archives: what a submission carries, the size cap, and unzip that never escapes MODEL_DIR."""
from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from backend.packaging import ArchiveError, check_zip, safe_unzip, zip_model


def make_model(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("print('train')\n")
    (root / "pkg" / "net.py").write_text("X = 1\n")
    (root / "data.ckpt").write_bytes(b"\0" * 100)
    (root / "logs").mkdir()
    (root / "logs" / "a.txt").write_text("x")
    (root / ".gitignore").write_text("*.ckpt\nlogs/\n")
    for skipped in (".git", "__pycache__", ".venv", "pkg/__pycache__"):
        (root / skipped).mkdir(parents=True, exist_ok=True)
        (root / skipped / "junk").write_text("junk")
    return root


def test_zip_honours_gitignore_and_skips_environments(tmp_path):
    src = make_model(tmp_path / "model")
    dest = tmp_path / "model.zip"
    zip_model(src, dest, max_bytes=10**6)
    with zipfile.ZipFile(dest) as zf:
        assert sorted(zf.namelist()) == [".gitignore", "pkg/net.py", "train.py"]


def test_zip_over_the_cap_is_refused_and_leaves_nothing(tmp_path):
    src = tmp_path / "model"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(50_000))  # random bytes do not compress
    dest = tmp_path / "model.zip"
    with pytest.raises(ArchiveError) as err:
        zip_model(src, dest, max_bytes=10_000)
    assert err.value.code == "C102" and "cap" in err.value.message
    assert not dest.exists() and not list(tmp_path.glob(".model.zip*"))


@pytest.mark.parametrize("name", ["../evil.py", "/etc/evil", "a/../../evil", "..\\evil.py"])
def test_unsafe_entries_are_refused_before_anything_is_written(tmp_path, name):
    z = tmp_path / "bad.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok.py", "fine")
        zf.writestr(name, "evil")
    target = tmp_path / "out" / "model"
    with pytest.raises(ArchiveError) as err:
        safe_unzip(z, target)
    assert err.value.code == "C102"
    assert not (target / "ok.py").exists()
    assert not (tmp_path / "out" / "evil.py").exists() and not (tmp_path / "evil.py").exists()
    with pytest.raises(ArchiveError):
        check_zip(z, max_bytes=10**6)


def test_symlink_entries_are_refused(tmp_path):
    z = tmp_path / "link.zip"
    info = zipfile.ZipInfo("link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="symbolic link"):
        safe_unzip(z, tmp_path / "out")


def test_round_trip_keeps_files_and_exec_bits(tmp_path):
    src = make_model(tmp_path / "model")
    os.chmod(src / "train.py", 0o755)
    z = tmp_path / "m.zip"
    zip_model(src, z, max_bytes=10**6)
    out = tmp_path / "out"
    assert safe_unzip(z, out) == 3
    assert (out / "pkg" / "net.py").read_text() == "X = 1\n"
    assert os.stat(out / "train.py").st_mode & 0o100


def test_not_a_zip_and_zip_bomb_guard(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_text("not a zip")
    with pytest.raises(ArchiveError, match="not a zip"):
        safe_unzip(junk, tmp_path / "o")
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros", b"\0" * 1_000_000)
    with pytest.raises(ArchiveError, match="expands"):
        safe_unzip(z, tmp_path / "o2", max_bytes=1000)


def test_a_link_to_a_file_outside_the_model_folder_is_refused_naming_it(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0\n")
    src = make_model(tmp_path / "model")
    (src / "leak.txt").symlink_to(secret)
    dest = tmp_path / "model.zip"
    with pytest.raises(ArchiveError) as err:
        zip_model(src, dest, max_bytes=10**6)
    assert err.value.code == "C102" and err.value.exit_code == 2
    assert "'leak.txt'" in err.value.message and str(secret) in err.value.message
    assert not dest.exists()


def test_links_inside_the_folder_are_carried_and_an_ignored_outside_link_is_not_looked_at(tmp_path):
    src = make_model(tmp_path / "model")
    (src / "alias.py").symlink_to(src / "train.py")
    (tmp_path / "outside.txt").write_text("x")
    (src / "big.ckpt").symlink_to(tmp_path / "outside.txt")  # *.ckpt is in .gitignore
    linked = tmp_path / "linked-model"
    linked.symlink_to(src, target_is_directory=True)  # the folder itself may be a link
    dest = tmp_path / "m.zip"
    zip_model(linked, dest, max_bytes=10**6)
    with zipfile.ZipFile(dest) as zf:
        assert zf.read("alias.py") == b"print('train')\n"
        assert "big.ckpt" not in zf.namelist()


def test_the_unpacked_cap_is_the_size_cap_unless_set_higher(tmp_path):
    from backend.config import Profile
    from backend.packaging import unpacked_cap

    assert unpacked_cap(Profile(max_model_mb=3)) == 3 * 2**20
    assert unpacked_cap(Profile(max_model_mb=3, max_model_unpacked_mb=50)) == 50 * 2**20
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros", b"\0" * 200_000)  # ~200 KB that zips to a few hundred bytes
    assert bomb.stat().st_size < 10_000
    with pytest.raises(ArchiveError, match="expands to 200000 bytes"):
        check_zip(bomb, max_bytes=10_000)  # was accepted up to 20 x the cap
    check_zip(bomb, max_bytes=10_000, max_unpacked=300_000)
    with pytest.raises(ArchiveError, match="expands"):
        safe_unzip(bomb, tmp_path / "o", max_bytes=10_000)
    folder = tmp_path / "zeros"
    folder.mkdir()
    (folder / "zeros").write_bytes(b"\0" * 200_000)
    with pytest.raises(ArchiveError, match="unpacked cap"):
        zip_model(folder, tmp_path / "z.zip", max_bytes=10_000)
    assert zip_model(folder, tmp_path / "z.zip", max_bytes=10_000, max_unpacked=300_000) < 10_000
