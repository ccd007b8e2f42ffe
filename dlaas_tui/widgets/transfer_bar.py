"""A one-line progress bar for an upload or download, fed by `Transfer.on_update`.

The store calls `on_update` from its worker threads for every chunk; `watch_transfer` turns that into
at most ~10 messages a second so the UI thread only renders.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Label, ProgressBar

from ..formatting import human_bytes
from .safe_text import visible

if TYPE_CHECKING:
    from backend.facade import Transfer
    from textual.widget import Widget


class TransferProgress(Message):
    def __init__(self, done: int, total: int, files_done: int, files_total: int) -> None:
        super().__init__()
        self.done = done
        self.total = total
        self.files_done = files_done
        self.files_total = files_total


def watch_transfer(transfer: Transfer, target: Widget, interval: float = 0.1) -> None:
    """Make `transfer` post TransferProgress to `target`, throttled; safe from any thread."""
    last = [0.0]

    def on_update(t: Transfer) -> None:
        now = time.monotonic()
        finished = t.total and t.done >= t.total
        if now - last[0] >= interval or finished:
            last[0] = now
            target.post_message(TransferProgress(t.done, t.total, t.files_done, t.files_total))

    transfer.on_update = on_update


class TransferBar(Horizontal):
    DEFAULT_CSS = """
    TransferBar {
        height: 1;
        display: none;
        background: $boost;
    }
    TransferBar.-active { display: block; }
    TransferBar #transfer-what { width: 1fr; min-width: 10; padding: 0 1; }
    TransferBar ProgressBar { width: auto; }
    TransferBar #transfer-bytes { width: auto; padding: 0 1; }
    TransferBar #transfer-hint { width: auto; padding: 0 1; color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Label("", id="transfer-what", markup=False)
        yield ProgressBar(total=None, show_eta=False, id="transfer-progress")
        yield Label("", id="transfer-bytes", markup=False)
        yield Label("esc cancel", id="transfer-hint", markup=False)

    _transfer: Transfer | None = None
    _poll = None

    def start(self, description: str, transfer: Transfer | None = None) -> None:
        self.query_one("#transfer-what", Label).update(visible(description))
        self.query_one(ProgressBar).update(total=None, progress=0)
        self.query_one("#transfer-bytes", Label).update("")
        self.add_class("-active")
        self._transfer = transfer
        if transfer is not None and self._poll is None:
            # Throttled messages can leave the last chunk before a stall unshown: poll too.
            self._poll = self.set_interval(0.25, self._poll_transfer)

    def _poll_transfer(self) -> None:
        t = self._transfer
        if t is not None and t.total:
            self.show_progress(t.done, t.total, t.files_done, t.files_total)

    def show_progress(self, done: int, total: int, files_done: int = 0, files_total: int = 0) -> None:
        bar = self.query_one(ProgressBar)
        bar.update(total=max(total, 1), progress=min(done, max(total, 1)))
        files = f" {files_done}/{files_total} files" if files_total > 1 else ""
        self.query_one("#transfer-bytes", Label).update(
            f"{human_bytes(done)}/{human_bytes(total)}{files}"
        )

    def stop(self) -> None:
        self.remove_class("-active")
        self._transfer = None
        if self._poll is not None:
            self._poll.stop()
            self._poll = None

    @property
    def active(self) -> bool:
        return self.has_class("-active")
