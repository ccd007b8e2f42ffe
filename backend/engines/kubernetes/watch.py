"""A list-then-watch cache of one resource kind: the client-go reflector pattern, small.

`list()` reads every object and the list's resourceVersion; `watch_once()` streams changes from that
version (with bookmarks, which only move the version on); a 410 Gone, as an HTTP status or as an
ERROR event, means the version has been compacted away, so the cache lists again and reports the
difference as events. Objects are filtered client-side too, so a server that ignores the label
selector cannot leak foreign objects in.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .client import KubeApi, KubeGone

Event = tuple[str, dict[str, Any]]  # ("ADDED" | "MODIFIED" | "DELETED", object)


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


@dataclass
class WatchStats:
    lists: int = 0
    watches: int = 0
    bookmarks: int = 0
    gone: int = 0


class Reflector:
    def __init__(
        self,
        api: KubeApi,
        path: str,
        *,
        label_selector: str | None = None,
        keep: Callable[[dict[str, Any]], bool] | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.api = api
        self.path = path
        self.label_selector = label_selector
        self.keep = keep or (lambda obj: True)
        self.on_event = on_event or (lambda kind, obj: None)
        self.objects: dict[str, dict[str, Any]] = {}
        self.resource_version: str | None = None
        self.stats = WatchStats()

    def _emit(self, kind: str, obj: dict[str, Any]) -> None:
        self.on_event(kind, obj)

    def list(self) -> list[Event]:
        """Read everything; returns (and emits) what changed since the cache's last view."""
        listing = self.api.request("GET", self.path, query={"labelSelector": self.label_selector})
        self.stats.lists += 1
        self.resource_version = (listing.get("metadata") or {}).get("resourceVersion")
        fresh = {_key(o): o for o in listing.get("items") or [] if self.keep(o)}
        events: list[Event] = []
        for key, obj in fresh.items():
            old = self.objects.get(key)
            if old is None:
                events.append(("ADDED", obj))
            elif old != obj:
                events.append(("MODIFIED", obj))
        for key, obj in self.objects.items():
            if key not in fresh:
                events.append(("DELETED", obj))
        self.objects = fresh
        for kind, obj in events:
            self._emit(kind, obj)
        return events

    def watch_once(self, timeout_seconds: int = 60) -> list[Event]:
        """One watch request from the current resourceVersion, until the server ends it."""
        if self.resource_version is None:
            return self.list()
        query = {
            "watch": "true",
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds,
            "labelSelector": self.label_selector,
        }
        self.stats.watches += 1
        events: list[Event] = []
        try:
            for line in self.api.stream_lines(self.path, query=query, read_timeout=timeout_seconds + 15):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise KubeGone("watch: resource version too old", status=410)
                    continue
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if kind == "BOOKMARK":
                    self.stats.bookmarks += 1
                    if rv:
                        self.resource_version = rv
                    continue
                if rv:
                    self.resource_version = rv
                if not self.keep(obj):
                    continue
                key = _key(obj)
                if kind == "DELETED":
                    self.objects.pop(key, None)
                elif kind in ("ADDED", "MODIFIED"):
                    self.objects[key] = obj
                else:
                    continue
                events.append((kind, obj))
                self._emit(kind, obj)
        except KubeGone:
            self.stats.gone += 1
            events.extend(self.list())
        return events
