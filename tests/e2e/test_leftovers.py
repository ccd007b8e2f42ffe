"""Leftovers after faults: temp files of killed writers, cut-off multipart uploads, runs' working copies.

Each test injects the fault for real: a writer killed with SIGKILL mid-write, a network path to a
real S3 server severed mid-upload (a TCP proxy that drops every connection and refuses new ones),
runs that complete or fail on the real agent.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.fixtures.s3server import make_store, s3_server  # noqa: F401

from .local_helpers import manifest, seed_home, stop_everything, wait_for

pytestmark = [pytest.mark.e2e]

WRITER = textwrap.dedent("""
    import sys
    from backend.store.local import LocalStore
    LocalStore(sys.argv[1]).put_file(sys.argv[2], sys.argv[3], sys.argv[4])
""")


def _parts(bucket_dir: Path) -> dict[str, int]:
    tmp = bucket_dir / ".dlaas-tmp"
    return {p.name: p.stat().st_size for p in tmp.glob("*.part")} if tmp.is_dir() else {}


def _state(pid: int) -> str:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rfind(")") + 2]


def _start_writer(store: Path, fifo: Path, bucket: str, key: str, bucket_dir: Path):
    """A put whose source is a FIFO: it writes what we send, then waits for more."""
    os.mkfifo(fifo)
    before = set(_parts(bucket_dir))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(store), str(fifo), bucket, key])
    feed = open(fifo, "wb")  # noqa: SIM115 - held open: the writer blocks on it
    feed.write(b"x" * (1 << 20))
    feed.flush()
    name = wait_for(lambda: next((n for n, size in _parts(bucket_dir).items()
                                  if n not in before and size >= 1 << 20), None), 30)
    assert name, "the writer never filled its temp file"
    return proc, feed, name


def test_a_killed_writers_temp_file_is_reclaimed_when_the_agent_starts(dlaas_home: Path, tmp_path, cli):
    seed_home(dlaas_home)
    store = dlaas_home / "store"
    bucket_dir = store / "dlaas-results"
    bucket_dir.mkdir(parents=True, exist_ok=True)
    killed, feed1, killed_part = _start_writer(store, tmp_path / "f1", "dlaas-results", "cut.bin", bucket_dir)
    live, feed2, live_part = _start_writer(store, tmp_path / "f2", "dlaas-results", "live.bin", bucket_dir)
    try:
        os.kill(killed.pid, signal.SIGKILL)  # as `kill -9` of an agent in STORING
        # Not reaped yet, as a detached agent's parent may leave it: a zombie is not a live writer.
        assert wait_for(lambda: _state(killed.pid) == "Z")
        assert killed_part in _parts(bucket_dir)  # the fault: a leftover
        assert cli("agent", "start").returncode == 0
        assert wait_for(lambda: killed_part not in _parts(bucket_dir)), _parts(bucket_dir)
        # A write still in progress (its writer alive) is never taken from under it.
        assert live_part in _parts(bucket_dir)
        killed.wait(10)
        feed1.close()
        feed2.write(b"y" * 10)
        feed2.close()
        assert live.wait(30) == 0
        assert (bucket_dir / "live.bin").stat().st_size == (1 << 20) + 10
        assert not (bucket_dir / "cut.bin").exists()
        assert _parts(bucket_dir) == {}
        log = (dlaas_home / "state" / "agent.log").read_text()
        assert "removed 1 temp file(s) (1048576 bytes)" in log
    finally:
        for proc in (killed, live):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for feed in (feed1, feed2):
            try:
                feed.close()
            except BrokenPipeError:
                pass
        stop_everything(dlaas_home)


@pytest.mark.parametrize("outcome", ["completed", "failed", "halted"])
def test_an_ended_run_keeps_its_logs_but_no_working_copies(dlaas_home: Path, tmp_path, cli, outcome):
    seed_home(dlaas_home)
    command = {"completed": None, "failed": "python train.py --epochs 1 && exit 3",
               "halted": "python train.py --epochs 1 && sleep 120"}[outcome]
    try:
        res = cli("submit", str(manifest(tmp_path, f"wc-{outcome}", command=command)), "--json")
        assert res.returncode == 0, res.stderr
        rid = json.loads(res.stdout)[0]["id"]
        if outcome == "halted":
            log = dlaas_home / "state" / "runs" / rid / "logs" / "learner-1" / "training-log.txt"
            assert wait_for(lambda: log.exists() and "epoch=1" in log.read_text())
            assert cli("halt", rid).returncode == 0
        cli("wait", rid, "--timeout", "120")
        shown = json.loads(cli("show", rid, "--json").stdout)
        assert shown["state"] == outcome.upper(), shown
        wd = dlaas_home / "state" / "runs" / rid
        assert wait_for(lambda: not (wd / "model").exists())
        for gone in ("model", "model.zip", "data", "results"):
            assert not (wd / gone).exists() and not (wd / gone).is_symlink(), gone
        assert "epoch=1" in (wd / "logs" / "learner-1" / "training-log.txt").read_text()
        # What the run produced is in the bucket, and the data bucket is untouched.
        stored = dlaas_home / "store" / "tiny-results" / rid
        assert (stored / "learner-1" / "training-log.txt").is_file()
        assert (stored / "_submitted_code" / "model.zip").is_file()
        if outcome == "completed":
            assert (stored / "model.txt").read_text().startswith("sum=6.0")
        assert (dlaas_home / "store" / "tiny-data" / "numbers.txt").read_text() == "1 2 3\n"
        assert "epoch=1" in cli("logs", rid).stdout  # logs still read after the copies went
    finally:
        stop_everything(dlaas_home)


class CutProxy:
    """127.0.0.1 TCP proxy to a server; after `cut_after` bytes upstream it severs every connection
    and refuses new ones (the server "went away") until heal()."""

    def __init__(self, port: int, cut_after: int) -> None:
        self.target = port
        self.cut_after: int | None = cut_after
        self.sent = 0
        self.severed = threading.Event()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.severed.is_set():
                conn.close()
                continue
            up = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.conns += [conn, up]
            threading.Thread(target=self._pump, args=(conn, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, conn, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while data := src.recv(65536):
                if self.severed.is_set():
                    break
                dst.sendall(data)
                if upstream:
                    with self.lock:
                        self.sent += len(data)
                        cut = self.cut_after is not None and self.sent >= self.cut_after
                    if cut:
                        self.sever()
                        break
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def sever(self) -> None:
        self.severed.set()
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def heal(self) -> None:
        self.cut_after = None
        self.severed.clear()

    def close(self) -> None:
        self.closed = True
        self.sever()
        self.sock.close()


PUTTER = textwrap.dedent("""
    import json, sys
    from backend.config import S3Settings
    from backend.errors import StoreError
    from backend.store.s3 import S3Store
    cfg = json.loads(sys.argv[1])
    store = S3Store(S3Settings(**cfg))
    try:
        store.put_file(sys.argv[2], sys.argv[3], "big.bin")
    except StoreError as exc:
        print("put failed:", exc)
        sys.exit(3)
    sys.exit(0)
""")


@pytest.mark.slow
@pytest.mark.s3
def test_a_put_cut_off_by_the_server_going_away_has_its_multipart_upload_aborted(
        dlaas_home: Path, tmp_path, s3_server):  # noqa: F811
    direct = make_store(s3_server)
    bucket = f"mpu-{os.urandom(3).hex()}"
    direct.make_bucket(bucket)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(24 << 20))
    port = int(s3_server.endpoint.rsplit(":", 1)[1])
    proxy = CutProxy(port, cut_after=9 << 20)  # a part or so in, the server is gone
    via = f"http://127.0.0.1:{proxy.port}"
    cfg = {"endpoint_url": via, "region": s3_server.region, "access_key_id": s3_server.access_key,
           "secret_access_key": s3_server.secret_key, "max_attempts": 1, "connect_timeout": 2,
           "read_timeout": 10, "multipart_threshold_mb": 5, "multipart_chunksize_mb": 5,
           "max_concurrency": 2}
    try:
        done = subprocess.run([sys.executable, "-c", PUTTER, json.dumps(cfg), str(big), bucket],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 3, done.stdout + done.stderr
        assert proxy.severed.is_set()
        # The fault: the upload is still open on the server (its abort could not reach it either).
        open_uploads = direct.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert [u["Key"] for u in open_uploads] == ["big.bin"], open_uploads
        journal = list((dlaas_home / "state" / "s3-uploads").glob("*.json"))
        assert len(journal) == 1
        # The server is back: the next put through that endpoint aborts the leftover first.
        proxy.heal()
        later = make_store(s3_server, endpoint_url=via)
        small = tmp_path / "small.txt"
        small.write_text("hello")
        later.put_file(small, bucket, "small.txt")
        assert direct.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        assert list((dlaas_home / "state" / "s3-uploads").glob("*.json")) == []
        assert sorted(o.key for o in direct.iter_objects(bucket)) == ["small.txt"]
        assert later.reclaim_leftovers() == ""  # nothing is left to do
        # A multipart put that completes is crossed out of the journal at once.
        later = make_store(s3_server, endpoint_url=via, multipart_threshold_mb=5, multipart_chunksize_mb=5)
        made: list[str] = []
        later.client.meta.events.register("after-call.s3.CreateMultipartUpload",
                                          lambda parsed, **_: made.append(parsed.get("UploadId")))
        later.put_file(big, bucket, "big.bin")
        assert len(made) == 1 and made[0]
        assert list((dlaas_home / "state" / "s3-uploads").glob("*.json")) == []
        assert direct.stat(bucket, "big.bin").size == 24 << 20
    finally:
        proxy.close()
        for key in ("small.txt", "big.bin"):
            try:
                direct.delete(bucket, [key])
            except Exception:
                pass


@pytest.mark.s3
def test_an_upload_whose_writer_lives_is_never_aborted(dlaas_home: Path, s3_server):  # noqa: F811
    """Agent start and other puts abort only uploads of writers that are gone."""
    store = make_store(s3_server)
    bucket = f"mpu-{os.urandom(3).hex()}"
    store.make_bucket(bucket)
    store.client.create_multipart_upload(Bucket=bucket, Key="live.bin")  # journalled by the hook
    journal = dlaas_home / "state" / "s3-uploads"
    entry, = journal.glob("*.json")
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        doc = json.loads(entry.read_text())
        entry.write_text(json.dumps({**doc, "pid": writer.pid}))  # another process's upload in flight
        other = make_store(s3_server)
        assert other.reclaim_leftovers() == ""
        assert [u["Key"] for u in store.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])] == ["live.bin"]
        writer.kill()
        writer.wait(10)
        assert "aborted 1 unfinished multipart upload(s)" in other.reclaim_leftovers()
        assert store.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        assert list(journal.glob("*.json")) == []
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(10)
