"""The agent's Kubernetes part: for every kubernetes profile with a ledger in this DLAAS_HOME, a
thread that keeps the engine's watch loop going into that ledger, and on each agent pass the release
of held runs (sweeps `parallel` at a time).

A profile's ledger file appears when a CLI or TUI process first uses the profile, so the agent
watches exactly the clusters this user works with. Runs on the cluster go on while no agent runs;
a watcher that starts lists first and `apply` records what happened meanwhile, from the cluster's own
timestamps, in order.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from backend.ledger.files import ledger_path, profiles_with_ledgers

from .ledger import SYNCED
from .sqlite_ledger import SqliteLedger

log = logging.getLogger("dlaas.agent")
RETRY_SECONDS = 5.0


def resync_seconds() -> float:
    """How often the whole state is listed again beside the watch, in case a watch event was lost
    (a proxy that drops streams, a compacted history); DLAAS_K8S_RESYNC overrides it."""
    try:
        return max(0.1, float(os.environ.get("DLAAS_K8S_RESYNC", "30")))
    except ValueError:
        return 30.0


class _Watcher:
    """Two threads per profile: the engine's watch loop, and a tender that lists once at start,
    then releases held runs (at once when kicked, else every second) and relists every resync
    period. Releases live here, not in the agent's pass, so an unreachable cluster never stalls
    the local scheduler."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.stop = threading.Event()
        self.kick = threading.Event()
        name = engine.profile.name
        self.threads = [threading.Thread(target=self._watch, daemon=True, name=f"k8s-watch-{name}"),
                        threading.Thread(target=self._tend, daemon=True, name=f"k8s-tend-{name}")]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _try(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:  # the cluster unreachable, a token expired: the next round retries
            log.warning("kubernetes profile %s: %s failed: %s", self.engine.profile.name, what, exc)
            return None

    def _tend(self) -> None:
        # apply() runs under the engine's lock and diffs against the ledger, so a relist beside the
        # watch records nothing twice
        while self._try("first listing", self.engine.sync_once) is None and not self.stop.wait(RETRY_SECONDS):
            pass
        self.engine.ledger.mark("", SYNCED)
        every, last_sync = resync_seconds(), time.monotonic()
        while not self.stop.is_set():
            released = self._try("release", self.engine.release_held)
            if released:
                log.info("kubernetes profile %s: released %s", self.engine.profile.name, ", ".join(released))
            if time.monotonic() - last_sync >= every:
                self._try("resync", self.engine.sync_once)
                last_sync = time.monotonic()
            self.kick.wait(min(1.0, every))
            self.kick.clear()

    def _watch(self) -> None:
        while not self.stop.is_set():
            if self._try("watch", lambda: self.engine.watch_loop(self.stop)) is None:
                self.stop.wait(RETRY_SECONDS)


class KubeKeeper:
    """`open_backend(profile)` opens a profile's backend (the agent passes backend.facade's)."""

    def __init__(self, paths: Any, open_backend: Any) -> None:
        self.paths = paths
        self._open_backend = open_backend
        self.watchers: dict[str, _Watcher] = {}
        self._failed: dict[str, float] = {}

    def _engine(self, profile: str) -> Any:
        from .engine import KubernetesEngine

        backend = self._open_backend(profile)
        if backend.profile.scheduler != "kubernetes":
            return None
        engine = KubernetesEngine(None, backend.profile, backend.config,
                                  ledger=SqliteLedger(ledger_path(self.paths, profile), profile), backend=backend)
        return engine

    def tick(self) -> None:
        """Start watchers for profiles that gained a ledger; have each look for runs to release."""
        for profile in profiles_with_ledgers(self.paths):
            if profile in self.watchers or time.monotonic() - self._failed.get(profile, -1e9) < RETRY_SECONDS:
                continue
            try:
                engine = self._engine(profile)
            except Exception as exc:  # a profile removed from the config, a broken kubeconfig
                log.warning("kubernetes profile %s: not watched: %s", profile, exc)
                self._failed[profile] = time.monotonic()
                continue
            if engine is None:
                self._failed[profile] = time.monotonic()
                continue
            watcher = self.watchers[profile] = _Watcher(engine)
            watcher.start()
            log.info("kubernetes profile %s: watching namespace %s", profile, engine.ns)
        for watcher in self.watchers.values():
            watcher.kick.set()

    def stop(self) -> None:
        for watcher in self.watchers.values():
            watcher.stop.set()
        for watcher in self.watchers.values():
            # a watch blocks in a read for up to a minute; the threads are daemons and every ledger
            # write is one transaction, so the agent need not wait them out
            watcher.kick.set()
            for t in watcher.threads:
                t.join(timeout=0.2)
