"""A small app, store and engine to drive the buckets, editor and GPUs screens in tests.

`MemoryStore` is an honest in-memory ObjectStore: one-level listings in key order, real page tokens,
ranged reads, transfers that report progress chunk by chunk and stop on cancel (with a gate a test
can hold closed). `MiniEngine` records submissions and serves a fixed inventory. Both are built into
a real `backend.facade.Backend`, so screens see exactly what they see in the app.
"""
from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from textual.app import App
from textual.screen import Screen
from textual.worker import WorkerCancelled, WorkerFailed

from backend.config import Config, Profile
from backend.errors import BadInput, NotFound, StoreError
from backend.facade import (
    Backend,
    BucketInfo,
    Device,
    Inventory,
    ListPage,
    ObjectInfo,
    Run,
    RunState,
    SubmitRequest,
    Transfer,
    get_paths,
    validate_key,
)

T0 = datetime(2026, 11, 27, 9, 30, tzinfo=timezone.utc)
CHUNK = 4096


class MemoryStore:
    def __init__(self, kind: str = "local") -> None:
        self.kind = kind
        self.buckets: dict[str, dict[str, tuple[bytes, datetime]]] = {}
        self.lists: list[tuple[str, str, int, str | None]] = []  # every list() call, for asserts
        self.reads: list[tuple[str, str, int, int | None]] = []
        self.gate = threading.Event()  # transfers move a chunk only while this is set
        self.gate.set()
        self.chunk_moved = threading.Event()
        self.pause_after: int | None = None  # close the gate after this many chunks have moved

    # -- building test data --------------------------------------------------------------------
    def add(self, bucket: str, key: str, data: bytes | str, minutes: int = 0) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.buckets.setdefault(bucket, {})[key] = (data, T0 + timedelta(minutes=minutes))

    # -- the protocol --------------------------------------------------------------------------
    def describe(self) -> str:
        return "memory"

    def list_buckets(self) -> list[BucketInfo]:
        return [BucketInfo(name, T0) for name in sorted(self.buckets)]

    def bucket_exists(self, bucket: str) -> bool:
        return bucket in self.buckets

    def make_bucket(self, bucket: str) -> None:
        if bucket in self.buckets:
            raise BadInput(f"bucket {bucket!r} already exists")
        self.buckets[bucket] = {}

    def remove_bucket(self, bucket: str) -> None:
        if self._objects(bucket):
            raise StoreError(f"bucket {bucket!r} is not empty")
        del self.buckets[bucket]

    def _objects(self, bucket: str) -> dict[str, tuple[bytes, datetime]]:
        if bucket not in self.buckets:
            raise NotFound(f"no such bucket: {bucket!r}")
        return self.buckets[bucket]

    def _level(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        items: dict[str, ObjectInfo] = {}
        for key, (data, when) in self._objects(bucket).items():
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            if "/" in rest:
                sub = prefix + rest.split("/", 1)[0] + "/"
                items[sub] = ObjectInfo(sub, is_prefix=True)
            else:
                items[key] = ObjectInfo(key, len(data), when, None)
        return [items[k] for k in sorted(items)]

    def list(self, bucket, prefix="", *, page_size=1000, token=None, start_after=None) -> ListPage:
        self.lists.append((bucket, prefix, page_size, token))
        level = self._level(bucket, prefix)
        after = base64.urlsafe_b64decode(token).decode() if token else start_after
        if after is not None:
            level = [o for o in level if o.key > after]
        page = level[:page_size]
        more = len(level) > page_size
        next_token = base64.urlsafe_b64encode(page[-1].key.encode()).decode() if more else None
        return ListPage(bucket, prefix, page, next_token)

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        for key in sorted(self._objects(bucket)):
            if key.startswith(prefix):
                data, when = self.buckets[bucket][key]
                yield ObjectInfo(key, len(data), when)

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        try:
            data, when = self._objects(bucket)[key]
        except KeyError:
            raise NotFound(f"no such object: {bucket}/{key}") from None
        return ObjectInfo(key, len(data), when)

    def read_range(self, bucket, key, offset=0, length=None) -> bytes:
        self.reads.append((bucket, key, offset, length))
        data, _ = self._objects(bucket)[key]
        return data[offset : None if length is None else offset + length]

    def put_bytes(self, bucket, key, data) -> ObjectInfo:
        self.add(bucket, validate_key(key), data)
        return self.stat(bucket, key)

    def _move(self, data: bytes, transfer: Transfer | None) -> bytes:
        out = bytearray()
        for i in range(0, len(data), CHUNK):
            waited = 0.0
            while not self.gate.wait(0.02):
                waited += 0.02
                if transfer is not None:
                    transfer.check()
                if waited > 10:  # a failed test must not leave a worker waiting forever
                    raise StoreError("test gate stayed closed")
            if transfer is not None:
                transfer.check()
            out += data[i : i + CHUNK]
            if transfer is not None:
                transfer.advance(len(data[i : i + CHUNK]))
            self.chunk_moved.set()
            if self.pause_after is not None:
                self.pause_after -= 1
                if self.pause_after <= 0:
                    self.pause_after = None
                    self.gate.clear()
        return bytes(out)

    def put_file(self, src: Path, bucket, key, *, transfer=None) -> ObjectInfo:
        data = Path(src).read_bytes()
        if transfer is not None:
            transfer.add_total(len(data))
        moved = self._move(data, transfer)  # raises TransferCancelled before anything is stored
        self.add(bucket, validate_key(key), moved)
        if transfer is not None:
            transfer.file_done()
        return self.stat(bucket, key)

    def get_file(self, bucket, key, dest: Path, *, transfer=None) -> Path:
        data, _ = self._objects(bucket)[key]
        if transfer is not None:
            transfer.add_total(len(data))
        moved = self._move(data, transfer)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        tmp.write_bytes(moved)
        tmp.replace(dest)
        if transfer is not None:
            transfer.file_done()
        return dest

    def put_folder(self, src: Path, bucket, prefix, *, transfer=None) -> int:
        files = sorted(p for p in Path(src).rglob("*") if p.is_file())
        for p in files:
            self.put_file(p, bucket, prefix + p.relative_to(src).as_posix(), transfer=transfer)
        return len(files)

    def get_prefix(self, bucket, prefix, dest: Path, *, transfer=None) -> int:
        objs = list(self.iter_objects(bucket, prefix))
        for o in objs:
            rel = validate_key(o.key[len(prefix) :])
            self.get_file(bucket, o.key, Path(dest) / rel, transfer=transfer)
        return len(objs)

    def delete(self, bucket, keys: Iterable[str]) -> int:
        objects = self._objects(bucket)
        n = 0
        for key in list(keys):
            if objects.pop(key, None) is not None:
                n += 1
        return n

    def url(self, bucket, key, *, expires_s=3600) -> str:
        if self.kind == "s3":
            return f"https://s3.test.invalid/{bucket}/{key}?X-Amz-Expires={expires_s}&X-Amz-Signature=abc"
        return f"file:///store/{bucket}/{key}"

    def uri(self, bucket, key="") -> str:
        scheme = "s3" if self.kind == "s3" else "local"
        return f"{scheme}://{bucket}/{key}"


class MiniEngine:
    name = "mini"

    def __init__(self, inventory: Inventory | None = None) -> None:
        self.inventory_value = inventory or Inventory((), False, "NVML not found")
        self.submitted: list[SubmitRequest] = []
        self.fail_with: Exception | None = None

    def submit(self, request: SubmitRequest) -> list[Run]:
        if self.fail_with is not None:
            raise self.fail_with
        self.submitted.append(request)
        n = len(self.submitted)
        return [Run(id=f"training-test{n:04d}", name="run", state=RunState.QUEUED, submitted_at=T0)]

    def inventory(self) -> Inventory:
        return self.inventory_value

    def list_runs(self, *, states=None, experiment=None, limit=None) -> list[Run]:
        return []

    def close(self) -> None:
        pass


def sample_inventory() -> Inventory:
    gib = 1024**3
    return Inventory(
        devices=(
            Device(0, "GPU-0aa1", "NVIDIA H100 80GB HBM3", "H100", 80 * gib, 61 * gib, 97, 71, 612.4,
                   (4121, 4122), "training-a1b2c3d4"),
            Device(1, "GPU-1bb2", "NVIDIA H100 80GB HBM3", "H100", 80 * gib, 2 * gib, 12, 45, 130.0,
                   (), None),
            Device(2, "GPU-2cc3", "NVIDIA A100-SXM4-40GB", "A100", 40 * gib, None, None, None, None,
                   (999,), None, busy_foreign=True),
        ),
        nvml_available=True,
        node="gpu-box-1",
        tier_gpus=8,
    )


def make_backend(
    store: MemoryStore | None = None,
    engine: MiniEngine | None = None,
    *,
    read_only: bool = False,
    prices: dict[str, float] | None = None,
) -> Backend:
    config = Config(prices=prices or {})
    profile = Profile(name="test", scheduler="fake", read_only=read_only)
    return Backend(config=config, profile=profile, paths=get_paths(),
                   _engine=engine or MiniEngine(), _store=store or MemoryStore())


class HarnessApp(App[None]):
    """Holds a backend and shows one screen on top of a blank home screen (so `esc` can go back)."""

    def __init__(self, backend: Backend, screen_factory) -> None:
        super().__init__()
        self.backend = backend
        self._screen_factory = screen_factory

    def on_mount(self) -> None:
        self.push_screen(self._screen_factory())

    @property
    def top(self) -> Screen:
        return self.screen


async def wait_for(pilot, predicate, timeout: float = 20.0, what: str = "") -> None:
    """Pause the pilot until `predicate()` holds (workers post from threads, feeds poll).

    The deadline is generous on purpose: it only bounds a hang, it never decides a pass, so a loaded
    machine takes longer but does not fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            label = what or getattr(predicate, "__doc__", None) or "condition"
            raise AssertionError(f"{label} not reached within {timeout:g} s")
        await pilot.pause(0.05)  # how often to look, not how long to wait


async def wait_preview(pilot, name: str) -> None:
    """Until the bucket browser's preview shows object `name` (after its debounce and its read)."""
    from dlaas_tui.widgets.preview import Preview

    pane = pilot.app.screen.query_one(Preview)
    await wait_for(pilot, lambda: pane._object is not None and pane._object[0] == name,
                   what=f"the preview of {name!r}")
    await settle(pilot)


async def settle(pilot, rounds: int = 3) -> None:
    """Let the workers of the screen on top finish and their messages be handled (the app's own
    long-running feeds, such as the runs table's, are left alone)."""
    app = pilot.app
    for _ in range(rounds):
        mine = [w for w in app.workers if not w.is_finished and _belongs(w.node, app.screen)]
        for worker in mine:
            try:
                await asyncio.wait_for(worker.wait(), 10)
            except (WorkerCancelled, WorkerFailed):
                pass  # an exclusive worker replaced by a newer one, or one whose error was shown
        await pilot.pause()


def _belongs(node, screen) -> bool:
    try:
        return node is screen or node.screen is screen
    except Exception:
        return False


def demo_store(kind: str = "local") -> MemoryStore:
    """The data the bucket tests and snapshots browse."""
    import json

    s = MemoryStore(kind)
    s.add("datasets", "digits/train.csv", "pixel0,pixel1,label\n0,3,7\n12,0,1\n5,5,4\n", 1)
    s.add("datasets", "digits/meta.json", json.dumps({"rows": 1797, "classes": 10}, indent=2), 2)
    s.add("datasets", "digits/config.yaml", "lr: 0.01\nepochs: 5\n", 3)
    s.add("datasets", "models/net.pt", bytes(range(256)) * 4, 4)
    s.add("datasets", "README.md", "# Digits\n\n8x8 images of handwritten digits.\n", 5)
    s.add("results", "training-a1b2c3d4/run.json", "{}", 6)
    s.buckets.setdefault("empty-bucket", {})
    return s


def screen_text(app) -> str:
    """Everything the screen shows now, as plain text lines."""
    return "\n".join(
        "".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()
    )
