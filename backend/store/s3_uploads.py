"""A journal of this machine's open multipart uploads, so one cut off mid-way is aborted later.

s3transfer aborts a failed multipart upload itself, but when the server (or the network) has gone
away the abort cannot reach it either, and the parts stay on the server, billed, until a lifecycle
rule (if any) removes them. So every CreateMultipartUpload this process makes is written down
(`state/s3-uploads/<digest>.json`: endpoint, bucket, key, upload id, our pid) and crossed out when
its Complete or Abort succeeds. `reclaim()` aborts what is left of writers that are gone (a dead
pid, or this process when it has no upload in flight): the agent calls it at start and every put
calls it first, so the next contact with a server that is back tidies it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from .files import process_alive

log = logging.getLogger("dlaas.store")


def journal_dir() -> Path:
    from ..paths import get_paths

    return get_paths().state_dir / "s3-uploads"


def _entry_path(root: Path, endpoint: str, bucket: str, key: str, upload_id: str) -> Path:
    digest = hashlib.sha256(f"{endpoint}\0{bucket}\0{key}\0{upload_id}".encode()).hexdigest()[:32]
    return root / f"{digest}.json"



class UploadJournal:
    """Hooks on one store's client, and the reclaiming of what failed writers left."""

    def __init__(self, endpoint_url: str, root: Path | None = None) -> None:
        self.endpoint = endpoint_url  # the configured URL: entries of other servers are not ours
        self.root = root or journal_dir()
        self._lock = threading.Lock()
        self.active = 0  # puts of this store in flight

    # -- the client's events ---------------------------------------------------------------------
    def attach(self, client: Any) -> None:
        events = client.meta.events
        events.register("after-call.s3.CreateMultipartUpload", self._created)
        for op in ("CompleteMultipartUpload", "AbortMultipartUpload"):
            events.register(f"before-parameter-build.s3.{op}", self._remember)
            events.register(f"after-call.s3.{op}", self._ended)

    def _created(self, parsed: dict, **_: Any) -> None:
        upload_id, bucket, key = parsed.get("UploadId"), parsed.get("Bucket"), parsed.get("Key")
        if not (upload_id and bucket and key):
            return
        entry = {"endpoint": self.endpoint, "bucket": bucket, "key": key, "upload_id": upload_id,
                 "pid": os.getpid()}
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = _entry_path(self.root, self.endpoint, bucket, key, upload_id)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(entry))
            os.replace(tmp, path)
        except OSError as exc:  # the upload itself goes on; only its tidying is at risk
            log.warning("multipart upload of %s not journalled: %s", key, exc)

    @staticmethod
    def _remember(params: dict, context: dict, **_: Any) -> None:
        context["dlaas_upload"] = (params.get("Bucket"), params.get("Key"), params.get("UploadId"))

    def _ended(self, http_response: Any, parsed: dict, context: dict, **_: Any) -> None:
        got = context.get("dlaas_upload")
        if not got or not all(got):
            return
        status = getattr(http_response, "status_code", 0)
        code = (parsed.get("Error") or {}).get("Code")
        if (200 <= status < 300 and not code) or code == "NoSuchUpload":
            _entry_path(self.root, self.endpoint, *got).unlink(missing_ok=True)

    # -- reclaiming ------------------------------------------------------------------------------
    def stale(self) -> list[dict]:
        """Entries of this endpoint whose writer is gone or idle."""
        try:
            files = sorted(self.root.glob("*.json"))
        except OSError:
            return []
        out = []
        for path in files:
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if entry.get("endpoint") != self.endpoint:
                continue
            pid = int(entry.get("pid") or 0)
            if pid == os.getpid():
                if self.active:
                    continue
            elif pid and process_alive(pid):
                continue
            out.append(entry)
        return out

    def reclaim(self, client: Any) -> list[str]:
        """Abort every stale upload; returns the keys aborted. Errors propagate (try again later)."""
        done = []
        for entry in self.stale():
            try:
                client.abort_multipart_upload(Bucket=entry["bucket"], Key=entry["key"],
                                              UploadId=entry["upload_id"])
            except Exception as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                if code not in ("NoSuchUpload", "NoSuchBucket"):
                    raise
            _entry_path(self.root, self.endpoint, entry["bucket"], entry["key"],
                        entry["upload_id"]).unlink(missing_ok=True)
            done.append(f"{entry['bucket']}/{entry['key']}")
        return done
