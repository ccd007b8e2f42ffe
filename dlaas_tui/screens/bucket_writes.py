"""The bucket browser's writes: upload, download, delete, new bucket, with progress and cancel.

A mixin of BucketsScreen, kept apart so each file stays readable. Every store call runs in a thread
worker and reports back by message; a transfer's progress comes through `watch_transfer`.
"""
from __future__ import annotations

from pathlib import Path

from textual import work
from textual.message import Message

from ..error_text import describe_error
from ..widgets.safe_text import visible
from ..widgets.object_list import Entry
from .prompts import InputPrompt
from .confirm import ConfirmScreen
from ..widgets.transfer_bar import TransferBar, TransferProgress, watch_transfer


class StoreFailed(Message):
    def __init__(self, message: str, gen: int | None = None) -> None:
        super().__init__()
        self.message, self.gen = message, gen


class StoreChanged(Message):
    """A write finished: say so and reload the level."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


class TransferEnded(Message):
    def __init__(self, message: str, severity: str = "information") -> None:
        super().__init__()
        self.message, self.severity = message, severity


class BucketWrites:
    """Upload (`u`), download (`d`), delete (`x`) and new bucket (`b`) for BucketsScreen."""

    def _refuse_if_read_only(self, what: str) -> bool:
        from backend.facade import ReadOnly

        try:
            self.backend.require_writable(what)
        except ReadOnly as exc:
            self.notify(str(exc), title="read-only", severity="warning", markup=False)
            return True
        return False

    def _refuse_if_busy(self) -> bool:
        if self._transfer is not None:
            self.notify("a transfer is running: wait for it or press esc to cancel it", markup=False)
            return True
        return False

    def action_upload(self) -> None:
        if self._refuse_if_read_only("upload") or self._refuse_if_busy():
            return
        if self.bucket is None:
            self.notify("open a bucket first: uploads go into the folder you are in", markup=False)
            return
        target = self.store.uri(self.bucket, self.prefix)

        def chosen(path: str | None) -> None:
            if path:
                self._start_upload(Path(path).expanduser())

        self.app.push_screen(
            InputPrompt(f"Upload a file or folder into {visible(target)}", paths=True,
                        hint="tab completes · enter uploads · esc cancels"),
            chosen,
        )

    def _start_upload(self, src: Path) -> None:
        if not src.exists():
            self.notify(f"no such file or folder: {visible(str(src))}", severity="error", markup=False)
            return
        from backend.facade import Transfer

        transfer = Transfer()
        watch_transfer(transfer, self)
        self._transfer = transfer
        self.query_one(TransferBar).start(f"↑ {src.name}", transfer)
        self._upload(transfer, src, self.bucket, self.prefix)

    @work(thread=True, group="transfer")
    def _upload(self, transfer, src: Path, bucket: str, prefix: str) -> None:
        from backend.facade import TransferCancelled

        try:
            if src.is_dir():
                count = self.store.put_folder(src, bucket, f"{prefix}{src.name}/", transfer=transfer)
                msg = f"uploaded {count} files from {src.name}/"
            else:
                self.store.put_file(src, bucket, prefix + src.name, transfer=transfer)
                msg = f"uploaded {src.name}"
        except TransferCancelled:
            self.post_message(TransferEnded("upload cancelled; nothing half-written was kept", "warning"))
            return
        except Exception as exc:
            self.post_message(TransferEnded(describe_error(exc), "error"))
            return
        self.post_message(TransferEnded(msg))

    def action_download(self) -> None:
        if self._refuse_if_busy():
            return
        entry = self.objects.selected
        if entry is None or entry.kind == "bucket":
            self.notify("select an object or a folder to download", markup=False)
            return
        default = str(Path.cwd() / entry.name.rstrip("/"))

        def chosen(dest: str | None) -> None:
            if dest:
                self._start_download(entry, Path(dest).expanduser())

        self.app.push_screen(
            InputPrompt(f"Download {visible(entry.name)} to", value=default, paths=True,
                        hint="tab completes · enter downloads · esc cancels"),
            chosen,
        )

    def _start_download(self, entry: Entry, dest: Path) -> None:
        from backend.facade import Transfer

        transfer = Transfer()
        watch_transfer(transfer, self)
        self._transfer = transfer
        self.query_one(TransferBar).start(f"↓ {entry.name}", transfer)
        self._download(transfer, entry, self.bucket, dest)

    @work(thread=True, group="transfer")
    def _download(self, transfer, entry: Entry, bucket: str, dest: Path) -> None:
        from backend.facade import TransferCancelled

        try:
            if entry.kind == "prefix":
                count = self.store.get_prefix(bucket, entry.key, dest, transfer=transfer)
                msg = f"downloaded {count} files to {dest}"
            else:
                self.store.get_file(bucket, entry.key, dest, transfer=transfer)
                msg = f"downloaded to {dest}"
        except TransferCancelled:
            self.post_message(TransferEnded("download cancelled; nothing half-written was kept", "warning"))
            return
        except Exception as exc:
            self.post_message(TransferEnded(describe_error(exc), "error"))
            return
        self.post_message(TransferEnded(msg))

    def on_transfer_progress(self, message: TransferProgress) -> None:
        if self._transfer is not None:
            self.query_one(TransferBar).show_progress(
                message.done, message.total, message.files_done, message.files_total
            )

    def on_transfer_ended(self, message: TransferEnded) -> None:
        self._transfer = None
        self.query_one(TransferBar).stop()
        self.notify(visible(message.message), severity=message.severity, markup=False)
        self.action_refresh()

    def action_delete(self) -> None:
        if self._refuse_if_read_only("delete") or self._refuse_if_busy():
            return
        entry = self.objects.selected
        if entry is None:
            return
        bucket = self.bucket
        if entry.kind == "bucket":
            question = f"Delete the empty bucket {visible(entry.name)}?"
        elif entry.kind == "prefix":
            question = f"Delete EVERY object under {visible(self.store.uri(bucket, entry.key))}?"
        else:
            question = f"Delete {visible(self.store.uri(bucket, entry.key))}?"

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(entry, bucket)

        self.app.push_screen(ConfirmScreen(question, confirm_label="Delete", danger=True), answered)

    @work(thread=True, group="write")
    def _delete(self, entry: Entry, bucket: str | None) -> None:
        try:
            if entry.kind == "bucket":
                self.store.remove_bucket(entry.name)
                msg = f"deleted bucket {entry.name}"
            elif entry.kind == "prefix":
                keys = (o.key for o in self.store.iter_objects(bucket, entry.key))
                msg = f"deleted {self.store.delete(bucket, keys)} objects under {entry.name}"
            else:
                self.store.delete(bucket, [entry.key])
                msg = f"deleted {entry.name}"
        except Exception as exc:
            self.post_message(StoreFailed(describe_error(exc)))
            return
        self.post_message(StoreChanged(msg))

    def action_new_bucket(self) -> None:
        if self._refuse_if_read_only("creating a bucket"):
            return

        def chosen(name: str | None) -> None:
            if name:
                self._make_bucket(name)

        self.app.push_screen(
            InputPrompt("New bucket name", hint="3-63 lowercase letters, digits, '.' and '-'"),
            chosen,
        )

    @work(thread=True, group="write")
    def _make_bucket(self, name: str) -> None:
        from backend.facade import validate_bucket_name

        try:
            self.store.make_bucket(validate_bucket_name(name))
        except Exception as exc:
            self.post_message(StoreFailed(describe_error(exc)))
            return
        self.post_message(StoreChanged(f"created bucket {name}"))

    def on_store_changed(self, message: StoreChanged) -> None:
        self.notify(visible(message.message), markup=False)
        self.action_refresh()
