"""The bucket browser: buckets -> prefixes (folders) -> objects, with preview and transfers.

Every store call runs in a thread worker that posts a message; handlers only render. Listings are
one level and paged (`store.list(page_size, token)`): the first page shows at once and the next one
is fetched when the cursor nears the end, so a bucket is never listed whole.
"""
from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input, Static

from ..error_text import describe_error
from ..widgets.footer import KeysFooter
from ..widgets.header import StatusHeader
from ..widgets.safe_text import visible
from ..widgets import osc52
from ..widgets.object_list import Entry, ObjectList
from ..widgets.preview import HEAD_BYTES, Preview
from ..widgets.transfer_bar import TransferBar
from .bucket_writes import BucketWrites, StoreFailed

PAGE_SIZE = 200
WRITE_ACTIONS = {"upload", "delete", "new_bucket"}


class Listed(Message):
    def __init__(self, gen: int, entries: list[Entry], token: str | None, first: bool) -> None:
        super().__init__()
        self.gen, self.entries, self.token, self.first = gen, entries, token, first


class PreviewReady(Message):
    def __init__(self, gen: int, entry: Entry, data: bytes) -> None:
        super().__init__()
        self.gen, self.entry, self.data = gen, entry, data


class BucketsScreen(BucketWrites, Screen):
    DEFAULT_CSS = """
    BucketsScreen { layout: vertical; }
    #crumbs { height: 1; padding: 0 1; background: $panel; color: $text; }
    #browser { height: 1fr; layout: horizontal; }
    #browser ObjectList { width: 3fr; }
    #browser Preview { width: 2fr; }
    BucketsScreen.-narrow #browser { layout: vertical; }
    BucketsScreen.-narrow #browser ObjectList { width: 100%; height: 3fr; }
    BucketsScreen.-narrow #browser Preview { width: 100%; height: 2fr; }
    #status { height: 1; padding: 0 1; color: $text-muted; }
    #filter { display: none; }
    #filter.-active { display: block; }
    """
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]

    BINDINGS = [
        Binding("enter", "open", "Open", show=False, id="buckets.open"),
        Binding("backspace,h", "up", "Up", show=False, id="buckets.up"),
        Binding("escape", "back", "Back", show=False, id="buckets.back"),
        Binding("slash", "filter", "Filter", id="buckets.filter"),
        Binding("u", "upload", "Upload", id="buckets.upload"),
        Binding("d", "download", "Download", id="buckets.download"),
        Binding("x", "delete", "Delete", id="buckets.delete"),
        Binding("b,plus", "new_bucket", "New bucket", id="buckets.new"),
        Binding("y", "copy_uri", "Copy URI", id="buckets.copy_uri"),
        Binding("Y", "copy_url", "Copy URL", show=False, id="buckets.copy_url"),
        Binding("t", "training_data", "Train on", id="buckets.training_data"),
        Binding("r", "refresh", "Refresh", show=False, id="buckets.refresh"),
    ]

    def __init__(self, bucket: str | None = None, prefix: str = "") -> None:
        super().__init__()
        self.bucket: str | None = bucket
        self.prefix = prefix
        self._gen = 0
        self._token: str | None = None
        self._loading = False
        self._preview_timer: Timer | None = None
        self._transfer = None  # the Transfer in flight, if any
        self._select_after_load: str | None = None
        self._store_kind: str | None = None  # learnt in the first listing worker

    # -- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        yield Static("", id="crumbs")
        with Container(id="browser"):
            yield ObjectList(id="objects")
            yield Preview(id="preview")
        yield Input(placeholder="filter (esc clears)", id="filter", compact=True)
        yield TransferBar(id="transfer")
        yield Static("", id="status", markup=False)
        yield KeysFooter()

    @property
    def backend(self):
        return self.app.backend

    @property
    def store(self):
        return self.app.backend.store

    @property
    def objects(self) -> ObjectList:
        return self.query_one(ObjectList)

    def on_mount(self) -> None:
        self.query_one(StatusHeader).set_where("buckets")
        self.objects.focus()
        self._load_level()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in WRITE_ACTIONS and self.backend.read_only:
            return False  # hidden from the footer; the action itself also refuses
        if action == "copy_url":
            return self._store_kind == "s3"
        return True

    # -- listing -------------------------------------------------------------------------------
    def _load_level(self, select: str | None = None) -> None:
        self._gen += 1
        self._token = None
        self._loading = True
        self._select_after_load = select
        self.objects.set_filter("")
        self.query_one("#filter", Input).value = ""
        self.query_one("#filter", Input).remove_class("-active")
        self.objects.set_entries([])
        self._render_crumbs()
        self._set_status("loading…")
        self.query_one(Preview).show_message("")
        if self.bucket is None:
            self._list_buckets(self._gen)
        else:
            self._list_page(self._gen, self.bucket, self.prefix, None)

    @work(thread=True, group="list")
    def _list_buckets(self, gen: int) -> None:
        try:
            self._store_kind = self.store.kind
            buckets = self.store.list_buckets()
        except Exception as exc:  # a backend error is a notification, never a crash
            self.post_message(StoreFailed(describe_error(exc), gen))
            return
        entries = [Entry("bucket", b.name, "", None, b.created) for b in buckets]
        self.post_message(Listed(gen, entries, None, True))

    @work(thread=True, group="list")
    def _list_page(self, gen: int, bucket: str, prefix: str, token: str | None) -> None:
        try:
            self._store_kind = self.store.kind
            page = self.store.list(bucket, prefix, page_size=PAGE_SIZE, token=token)
        except Exception as exc:
            self.post_message(StoreFailed(describe_error(exc), gen))
            return
        entries = [
            Entry(
                "prefix" if o.is_prefix else "object",
                o.name,
                o.key,
                None if o.is_prefix else o.size,
                o.modified,
            )
            for o in page.items
        ]
        self.post_message(Listed(gen, entries, page.next_token, token is None))

    def on_listed(self, message: Listed) -> None:
        if message.gen != self._gen:
            return  # an answer for a level we already left
        self._loading = False
        self._token = message.token
        self._render_crumbs()
        self.refresh_bindings()  # `Y` shows once we know the store is S3
        if message.first:
            self.objects.set_entries(message.entries, select=self._select_after_load)
            self._show_selected_preview()
        else:
            self.objects.append_entries(message.entries)
        self._render_status()

    def on_object_list_need_more(self, _: ObjectList.NeedMore) -> None:
        if self._token and not self._loading and self.bucket is not None and self.objects.near_end():
            self._loading = True
            self._set_status(f"{self.objects.loaded} loaded, loading more…")
            self._list_page(self._gen, self.bucket, self.prefix, self._token)

    def on_store_failed(self, message: StoreFailed) -> None:
        if message.gen is not None and message.gen == self._gen:
            self._loading = False
            self._render_status()
        self.notify(message.message, title="store", severity="error", markup=False)

    # -- breadcrumbs and status ----------------------------------------------------------------
    def _render_crumbs(self) -> None:
        from rich.text import Text

        crumbs = Text(no_wrap=True, overflow="ellipsis", end="")
        crumbs.append(visible(self.store_label()), style="dim" if self.bucket is not None else "bold")
        if self.bucket is not None:
            crumbs.append(" › ", style="dim")
            crumbs.append(visible(self.bucket), style="bold")
            for part in [p for p in self.prefix.split("/") if p]:
                crumbs.append(" › ", style="dim")
                crumbs.append(visible(part))
        if self.backend.read_only:
            crumbs.append("  read-only", style="bold yellow")
        self.query_one("#crumbs", Static).update(crumbs)

    def store_label(self) -> str:
        """Whose buckets these are, in words: `buckets of the local store (profile local)`."""
        # The store is opened in a worker (S3 imports boto3): until then, say what the profile names.
        kind = self._store_kind or self.backend.profile.store
        shown = {"s3": "S3", "local": "local"}.get(kind, kind)
        return f"buckets of the {shown} store (profile {self.backend.profile.name})"

    def _render_status(self) -> None:
        objects = self.objects
        more = " · more below" if self._token else ""
        shown = len(objects.entries)
        if objects.filter_text:
            text = f"{shown} of {objects.loaded} loaded match {objects.filter_text!r}{more}"
        else:
            what = "buckets" if self.bucket is None else "entries"
            text = f"{objects.loaded} {what}{more}" if objects.loaded else f"no {what}"
        self._set_status(visible(text))

    def _set_status(self, text: str) -> None:
        self.query_one("#status", Static).update(text)

    # -- navigation ----------------------------------------------------------------------------
    def on_data_table_row_selected(self, event) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        entry = self.objects.selected
        if entry is None:
            return
        if entry.kind == "bucket":
            self.bucket, self.prefix = entry.name, ""
            self._load_level()
        elif entry.kind == "prefix":
            self.prefix = entry.key
            self._load_level()
        else:
            # Into the preview, to scroll it; its border and the status line say how to come back.
            self.query_one(Preview).focus()
            self._set_status(f"preview of {visible(entry.name)}: {Preview.FOCUSED_HINT}")

    def action_up(self) -> None:
        if self.bucket is None:
            return
        if not self.prefix:
            came_from, self.bucket = self.bucket, None
        else:
            parts = self.prefix.rstrip("/").split("/")
            came_from = parts[-1] + "/"
            self.prefix = "/".join(parts[:-1]) + "/" if len(parts) > 1 else ""
        self._load_level(select=came_from)

    def action_back(self) -> None:
        if self._transfer is not None:
            self._transfer.cancel()
            self._set_status("cancelling…")
        elif self.query_one("#filter", Input).has_class("-active") or self.objects.filter_text:
            self._close_filter(clear=True)
        elif isinstance(self.focused, Preview) or (
            self.focused is not None and self.focused.parent is self.query_one(Preview)
        ):
            self.objects.focus()
            self._render_status()
        elif self.bucket is not None:
            self.action_up()
        elif len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def action_refresh(self) -> None:
        selected = self.objects.selected
        self._load_level(select=selected.name if selected else None)

    # -- filter --------------------------------------------------------------------------------
    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.add_class("-active")
        field.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.objects.set_filter(event.value)
        self._render_status()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self._close_filter(clear=False)

    def _close_filter(self, clear: bool) -> None:
        field = self.query_one("#filter", Input)
        if clear:
            field.value = ""
            self.objects.set_filter("")
            self._render_status()
        if not field.value:
            field.remove_class("-active")
        self.objects.focus()

    # -- preview -------------------------------------------------------------------------------
    def on_data_table_row_highlighted(self, event) -> None:
        event.stop()
        if self._preview_timer is not None:
            self._preview_timer.stop()
        # Debounced: holding `j` through a listing must not fire a read per row.
        self._preview_timer = self.set_timer(0.15, self._show_selected_preview)

    def _show_selected_preview(self) -> None:
        entry = self.objects.selected
        preview = self.query_one(Preview)
        if entry is None:
            preview.show_message("")
        elif entry.kind == "bucket":
            preview.show_message("bucket · enter to open", title=entry.name)
        elif entry.kind == "prefix":
            preview.show_message("folder · enter to open", title=entry.name)
        else:
            preview.show_message("loading…", title=entry.name)
            self._read_head(self._gen, self.bucket, entry)

    @work(thread=True, exclusive=True, group="preview")
    def _read_head(self, gen: int, bucket: str, entry: Entry) -> None:
        try:
            length = min(HEAD_BYTES, entry.size) if entry.size is not None else HEAD_BYTES
            data = self.store.read_range(bucket, entry.key, 0, length) if length else b""
        except Exception as exc:
            self.post_message(StoreFailed(describe_error(exc)))
            return
        self.post_message(PreviewReady(gen, entry, data))

    def on_preview_ready(self, message: PreviewReady) -> None:
        if message.gen == self._gen and self.objects.selected == message.entry:
            self.query_one(Preview).show_object(message.entry.name, message.data, message.entry.size)

    # -- clipboard and training data -----------------------------------------------------------
    def _selected_location(self) -> tuple[str, str] | None:
        entry = self.objects.selected
        if entry is None:
            return (self.bucket, self.prefix) if self.bucket else None
        if entry.kind == "bucket":
            return entry.name, ""
        return self.bucket, entry.key

    def action_copy_uri(self) -> None:
        loc = self._selected_location()
        if loc is None:
            return
        self._copy(self.store.uri(*loc))

    def action_copy_url(self) -> None:
        if self.store.kind != "s3":
            self.notify("presigned URLs need an S3 store; `y` copies the URI", markup=False)
            return
        entry = self.objects.selected
        if entry is None or entry.kind != "object":
            self.notify("select an object to get its presigned URL", markup=False)
            return
        self._presign(self.bucket, entry.key)

    @work(thread=True, group="write")
    def _presign(self, bucket: str, key: str) -> None:
        try:
            url = self.store.url(bucket, key, expires_s=3600)
        except Exception as exc:
            self.post_message(StoreFailed(describe_error(exc)))
            return
        self.app.call_from_thread(self._copy, url, "presigned URL (1 h)")

    def _copy(self, text: str, what: str = "URI") -> None:
        if osc52.copy(self.app, text):
            self.notify(f"copied {what}: {visible(text)}", markup=False)
        else:
            self.notify(f"{what} too long for the terminal clipboard", severity="warning", markup=False)

    def action_training_data(self) -> None:
        loc = self._selected_location()
        if loc is None:
            self.notify("select a bucket or a folder to train on", markup=False)
            return
        bucket, key = loc
        entry = self.objects.selected
        prefix = key if (entry is None or entry.kind != "object") else self.prefix
        from .editor import EditorScreen, manifest_with_training_data, starter_manifest

        self.app.push_screen(EditorScreen(text=manifest_with_training_data(starter_manifest(), bucket, prefix)))
