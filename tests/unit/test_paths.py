"""backend/paths.py finds the app's folders as strs (`runs` imports no pathlib) and hands them out as
Paths: both spell the same path, as pathlib would, and the files it makes stay the user's alone."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from backend import paths
from backend.paths import Paths, clean, exists, get_paths, parent_of, private_dir, write_private

SPELLINGS = ["", ".", "..", "/", "//", "///", "a", "a/", "a//b", "./a", "a/./b", "a/../b", "/a/b/", "//a/b",
             "///a/b", "../a", "~", "~/x", "/a/.", "./", ".//", "a/b/c", "/a/b c/ d", "é/ü"]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_path_and_its_parent_are_spelled_as_pathlib_spells_them(spelling):
    assert clean(spelling) == str(Path(spelling))
    assert parent_of(spelling) == str(Path(spelling).parent)
    assert parent_of(Path(spelling)) == str(Path(spelling).parent)


@pytest.mark.parametrize("home", ["~", "~/x", "~/x/", "~//x/./y", "/abs/~x", "rel/~"])
@pytest.mark.parametrize("user_home", ["/home/ada", "/home/ada/", "/"])
def test_a_home_is_expanded_as_pathlib_expands_it(monkeypatch, home, user_home):
    monkeypatch.setenv("HOME", user_home)
    assert paths._expanduser(clean(home)) == str(Path(home).expanduser())


def test_an_unknown_users_home_is_the_error_pathlib_gives():
    name = "~no-such-user-dlaas"
    with pytest.raises(RuntimeError) as ours:
        paths._expanduser(name)
    with pytest.raises(RuntimeError) as theirs:
        Path(name).expanduser()
    assert str(ours.value) == str(theirs.value)


def test_exists_answers_as_pathlib_does(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for name in ("file", "nowhere", "loop", "dangling", "file/below", "a\x00b"):
        assert exists(str(tmp_path / name)) == (tmp_path / name).exists(), name
    assert exists(tmp_path) and exists(str(tmp_path))


def test_the_folders_as_strs_and_as_paths_are_the_same_paths():
    p = Paths(Path("/h"), "/h//state/", "/h/./store", Path("/h/cache"))
    assert (p.config_dir, p.state_dir, p.store_dir, p.cache_dir) == (
        Path("/h"), Path("/h/state"), Path("/h/store"), Path("/h/cache"))
    assert (p.config_dir_str, p.state_dir_str, p.store_dir_str, p.cache_dir_str) == (
        "/h", "/h/state", "/h/store", "/h/cache")
    assert p.db_file_str == str(p.db_file) == "/h/state/state.db"
    assert p.config_file_str == str(p.config_file) == "/h/config.toml"
    assert p.state_dir is p.state_dir  # made once
    same = Paths("/h", "/h/state", "/h/store", "/h/cache")
    assert p == same and hash(p) == hash(same) and p != Paths("/h", "/h/other", "/h/store", "/h/cache")
    assert p.replace(state_dir=Path("/x")).state_dir_str == "/x"
    assert repr(same) == ("Paths(config_dir=PosixPath('/h'), state_dir=PosixPath('/h/state'), "
                          "store_dir=PosixPath('/h/store'), cache_dir=PosixPath('/h/cache'))")
    with pytest.raises(AttributeError):
        p.state_dir = Path("/y")  # type: ignore[misc]
    with pytest.raises(AttributeError):
        p.state_dir_str = "/y"  # type: ignore[attr-defined]


@pytest.mark.parametrize("spelling", ["{root}/home", "{root}/home/", "{root}//home/./", "{root}/link/home",
                                      "rel/home", "~/home"])
def test_a_dlaas_home_is_resolved_and_made_private_as_before(monkeypatch, tmp_path, spelling):
    (tmp_path / "link").symlink_to(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    home = spelling.format(root=tmp_path)
    monkeypatch.setenv("DLAAS_HOME", home)
    got = get_paths()
    root = Path(home).expanduser().resolve()  # as pathlib found it
    assert got == Paths(root, root / "state", root / "store", root / "cache")
    assert got.state_dir_str == str(root / "state")
    made = tmp_path / ("rel" if spelling.startswith("rel") else "home")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700  # made by this call, nobody else's to list
    assert stat.S_IMODE((root).stat().st_mode) == 0o700


def test_a_dlaas_home_in_a_symlink_loop_is_the_error_pathlib_gives(monkeypatch, tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    monkeypatch.setenv("DLAAS_HOME", str(tmp_path / "loop" / "home"))
    with pytest.raises(RuntimeError) as ours:
        get_paths()
    with pytest.raises(RuntimeError) as theirs:
        (tmp_path / "loop" / "home").resolve()
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("as_str", [True, False])
def test_private_files_and_folders_from_a_str_or_a_path(tmp_path, as_str):
    target = tmp_path / "a" / "b" / "f.txt"
    given = str(target) if as_str else target
    write_private(given, "text")
    assert target.read_text() == "text"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    write_private(given, b"again")
    assert target.read_bytes() == b"again" and os.listdir(target.parent) == ["f.txt"]  # no temp file left
    folder = tmp_path / "c" / "d"
    assert private_dir(str(folder) if as_str else folder) == (str(folder) if as_str else folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_private_folder_relative_to_the_working_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    write_private("plain.txt", "x")  # its folder is "."
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o600
    private_dir("x/y")
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o700
