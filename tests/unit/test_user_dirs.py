"""Without DLAAS_HOME, the folders are the user's XDG base directories: read by backend/paths.py
itself on Linux (no platformdirs import per command), and the same as platformdirs says."""
from __future__ import annotations

import sys
from pathlib import Path

import platformdirs
import pytest

from backend import paths

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG rules are read on Linux only")
XDG = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME")


def platformdirs_says() -> tuple[Path, Path, Path]:
    return (Path(platformdirs.user_config_dir(paths.APP_NAME)), Path(platformdirs.user_data_dir(paths.APP_NAME)),
            Path(platformdirs.user_cache_dir(paths.APP_NAME)))


@linux
@pytest.mark.parametrize("home", ["/home/ada", "/home/ada/", "/"])
@pytest.mark.parametrize("xdg", [None, "", "relative/dir", "/srv/xdg", "/srv/xdg/"])
def test_the_folders_are_the_ones_platformdirs_names(monkeypatch, home, xdg):
    monkeypatch.delenv("DLAAS_HOME", raising=False)
    monkeypatch.setenv("HOME", home)
    for i, var in enumerate(XDG):
        if xdg is None:
            monkeypatch.delenv(var, raising=False)
        else:  # each variable its own folder, so a mix-up between them shows
            monkeypatch.setenv(var, xdg if not xdg.startswith("/") else f"{xdg.rstrip('/')}{i}/")
    got = paths.get_paths()
    config, data, cache = platformdirs_says()
    assert (got.config_dir, got.state_dir, got.store_dir, got.cache_dir) == (config, data, data / "store", cache)


@linux
def test_the_defaults_and_the_variables_as_the_xdg_spec_words_them(monkeypatch):
    monkeypatch.delenv("DLAAS_HOME", raising=False)
    monkeypatch.setenv("HOME", "/home/ada")
    for var in XDG:
        monkeypatch.delenv(var, raising=False)
    got = paths.get_paths()
    assert got.config_dir == Path("/home/ada/.config/dlaas-tui")
    assert got.state_dir == Path("/home/ada/.local/share/dlaas-tui")
    assert got.cache_dir == Path("/home/ada/.cache/dlaas-tui")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/etc/ada")
    assert paths.get_paths().config_dir == Path("/etc/ada/dlaas-tui")


def test_without_an_absolute_home_platformdirs_answers(monkeypatch):
    monkeypatch.delenv("DLAAS_HOME", raising=False)
    monkeypatch.setenv("HOME", "not/absolute")
    assert paths._user_dirs() == platformdirs_says()
