"""The store a local run reads and writes: its profile's, or (FfDL's way) the S3 endpoint and keys
its manifest's `connection` names; and the folder behind a key on a folder store."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...store.base import LocalFolders


def run_store(backend: Any, connection: dict | None = None) -> Any:
    """The profile's store, or an S3 store on the manifest's own `connection`."""
    if not connection:
        return backend.store
    from ...config import S3Settings
    from ...store.s3 import S3Store

    settings = S3Settings(
        endpoint_url=connection.get("auth_url") or backend.profile.s3.endpoint_url,
        region=connection.get("region") or backend.profile.s3.region,
        access_key_id=connection.get("user_name"), secret_access_key=connection.get("password"),
    )
    return S3Store(settings, profile_name=f"{backend.profile.name} (manifest connection)")


def connection_of(manifest: Any) -> dict | None:
    """A manifest's `connection` as plain data for the run's spec (kept in the 0600 state db)."""
    conn = manifest.data_store.connection
    if conn is None:
        return None
    reveal = lambda v: v.reveal() if hasattr(v, "reveal") else v  # noqa: E731
    return {"auth_url": conn.auth_url, "user_name": reveal(conn.user_name),
            "password": reveal(conn.password), "region": conn.region}


def folder_of(store: Any, bucket: str, prefix: str = "") -> Path | None:
    """The folder behind bucket/prefix on a folder store (None on a remote store)."""
    if not isinstance(store, LocalFolders):
        return None
    return Path(store.local_path(bucket, prefix))
