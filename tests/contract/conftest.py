"""Contract suites run against every implementation of a protocol.

`store` is parametrized over the object stores (the folder store, and S3 against a real server on
127.0.0.1 started by tests/fixtures/s3server.py); `engine_harness` over the schedulers (see
tests/contract/engines.py). An implementation that is not importable yet is skipped, not passed.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "local":
        from backend.store.local import LocalStore

        yield LocalStore(tmp_path / "store")
        return
    try:
        importlib.import_module("backend.store.s3")
        s3server = importlib.import_module("tests.fixtures.s3server")
    except ImportError as exc:
        pytest.skip(f"S3 store not available: {exc}")
    server = request.getfixturevalue("s3_server")
    yield s3server.make_store(server)


try:  # the session-scoped real S3 server fixture, when it exists
    from tests.fixtures.s3server import s3_server  # noqa: F401
except ImportError:  # pragma: no cover - until the S3 store lands
    pass

from tests.contract.engines import engine_factory, engine_harness  # noqa: E402,F401
