"""backend.facade re-exports its pydantic-backed names lazily: same objects, loaded on first use."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import backend.facade as facade


def test_importing_the_facade_loads_neither_pydantic_nor_yaml():
    code = (
        "import sys, backend.facade\n"
        "print(' '.join(m for m in ('pydantic', 'yaml', 'backend.config', 'backend.manifest')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_lazy_name_is_the_backend_modules_own_object():
    for module_name, names in facade._LAZY.items():
        module = importlib.import_module(module_name, "backend")
        for name in names:
            assert getattr(facade, name) is getattr(module, name), name
    from backend.facade import Config, parse_manifest  # a from-import takes the same door

    assert Config is importlib.import_module("backend.config").Config
    assert parse_manifest is importlib.import_module("backend.manifest").parse_manifest


def test_lazy_names_are_listed_and_unknown_names_still_fail():
    assert {"Config", "Manifest", "spend", "ensure_sample_data"} <= set(dir(facade))
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        facade.NoSuchThing  # noqa: B018
    with pytest.raises(ImportError):
        from backend.facade import NoSuchThing  # noqa: F401
