"""The theme cache gives what the YAML gives, and reads the YAML again when a theme file changes."""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

import dlaas_tui.theme_cache as theme_cache
from backend.facade import resource_dir
from dlaas_tui.themes import load_themes


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    dest = tmp_path / "themes"
    shutil.copytree(resource_dir("themes"), dest)
    (dest / "broken.yaml").write_text("primary: [unclosed\n")
    return dest


def no_yaml(monkeypatch):
    def refuse(folder):
        raise AssertionError("the YAML was read although the cache was good")

    monkeypatch.setattr(theme_cache, "load_themes", refuse)


def test_cached_themes_equal_the_yaml_and_the_cache_file_is_private(folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "themes.json"
    expected = load_themes(folder)
    assert theme_cache.cached_themes(folder, cache) == expected
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    no_yaml(monkeypatch)
    themes, errors = theme_cache.cached_themes(folder, cache)
    assert (themes, errors) == expected
    assert errors and "broken.yaml" in errors[0]  # a bad file is still reported on every start


def test_an_edited_added_or_removed_theme_is_read_again(folder, tmp_path):
    cache = tmp_path / "themes.json"
    theme_cache.cached_themes(folder, cache)
    dark = folder / "dark.yaml"
    dark.write_text(dark.read_text().replace('primary: "#5FA8F5"', 'primary: "#112233"'))
    os.utime(dark, ns=(1, 1))  # a different mtime even on a coarse clock
    themes, _ = theme_cache.cached_themes(folder, cache)
    assert next(t for t in themes if t.name == "dark").primary == "#112233"
    (folder / "light.yaml").unlink()
    themes, _ = theme_cache.cached_themes(folder, cache)
    assert "light" not in {t.name for t in themes}


def test_a_damaged_or_unwritable_cache_falls_back_to_the_yaml(folder, tmp_path):
    cache = tmp_path / "themes.json"
    cache.write_text("{not json")
    assert theme_cache.cached_themes(folder, cache) == load_themes(folder)
    blocked = tmp_path / "a-file" / "themes.json"
    (tmp_path / "a-file").write_text("")
    assert theme_cache.cached_themes(folder, blocked) == load_themes(folder)
