"""The object preview pane: the head of an object, rendered by what it holds.

Only a ranged read of the head is ever fetched (`HEAD_BYTES`). Everything shown is data: text goes
through rich's Syntax (which never reads markup) after control characters are made visible, CSV cells
and hex dumps are plain `Text`.
"""
from __future__ import annotations

import codecs
import csv
import io
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from ..formatting import human_bytes
from .safe_text import visible, visible_lines

if TYPE_CHECKING:
    from textual.app import ComposeResult

HEAD_BYTES = 64 * 1024
HEX_BYTES = 512
CSV_ROWS = 30
CSV_COLUMNS = 12

_LEXERS = {
    "json": "json", "jsonl": "json", "ndjson": "json", "yaml": "yaml", "yml": "yaml",
    "toml": "toml", "ini": "ini", "cfg": "ini", "py": "python", "sh": "bash", "md": "markdown",
    "xml": "xml", "html": "html", "js": "javascript", "ts": "typescript", "sql": "sql",
    "r": "r", "ipynb": "json", "dockerfile": "docker",
}
_CSV = {"csv": ",", "tsv": "\t"}


def _extension(name: str) -> str:
    base = name.rsplit("/", 1)[-1].lower()
    return base.rsplit(".", 1)[-1] if "." in base else base


def decode_head(data: bytes) -> str | None:
    """The head as text, or None when it looks binary (a NUL byte, or not UTF-8)."""
    if b"\x00" in data[:8192]:
        return None
    try:
        # Incremental: a multi-byte character cut by the ranged read is not an error.
        return codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return None


def hex_row_bytes(width: int | None, offset_digits: int = 4) -> int:
    """Bytes per hex-dump row that fit `width` cells with the ASCII column: 16, 8 or 4."""
    if width is None:
        return 16
    for n in (16, 8):
        # offset, 2 spaces, "xx " per byte less one, 2 spaces, |ascii|
        if offset_digits + 2 + 3 * n - 1 + 2 + n + 2 <= width:
            return n
    return 4


def hex_dump(data: bytes, limit: int = HEX_BYTES, width: int | None = None) -> Text:
    """Offset, hex bytes and their ASCII, in rows as wide as `width` allows (never cut)."""
    shown = data[:limit]
    digits = 4 if len(shown) <= 0x10000 else 8
    per_row = hex_row_bytes(width, digits)
    out = Text(no_wrap=True, end="")
    for offset in range(0, len(shown), per_row):
        chunk = shown[offset : offset + per_row]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        out.append(f"{offset:0{digits}x}  ", style="dim")
        out.append(f"{hexes:<{3 * per_row - 1}}  ")
        out.append(f"|{ascii_}|\n", style="dim")
    return out


def csv_table(text: str, delimiter: str) -> Table:
    # The last line may be cut by the ranged read: drop it unless the head is the whole object.
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold", expand=False)
    rows = []
    try:
        for i, row in enumerate(reader):
            if i > CSV_ROWS:
                break
            rows.append(row)
    except csv.Error:
        pass
    if not rows:
        return table
    header, body = rows[0], rows[1:]
    for cell in header[:CSV_COLUMNS]:
        table.add_column(Text(visible(cell)), no_wrap=True, overflow="ellipsis", max_width=24)
    for row in body:
        table.add_row(*(Text(visible(c)) for c in row[:CSV_COLUMNS]))
    return table


def render_head(
    name: str, data: bytes, size: int | None, background: str | None = None, width: int | None = None
) -> RenderableType:
    """What the pane shows for an object whose first bytes are `data` (of `size` in all)."""
    ext = _extension(name)
    truncated = size is not None and size > len(data)
    note = Text(
        f"first {human_bytes(len(data))} of {human_bytes(size)}" if truncated else "", style="dim"
    )
    if not data:
        return Text("(empty object)", style="dim")
    text = decode_head(data)
    if text is None:
        return Group(Text(f"binary, {human_bytes(size)}; first bytes:", style="dim"), hex_dump(data, width=width))
    if truncated and "\n" in text:
        text = text[: text.rfind("\n")]  # a cut line would mislead
    if ext in _CSV:
        return Group(csv_table(text, _CSV[ext]), note)
    lexer = _LEXERS.get(ext, "text")
    syntax = Syntax(
        visible_lines(text),
        lexer,
        theme="ansi_dark",
        background_color=background,
        line_numbers=False,
        word_wrap=False,
        code_width=400,
    )
    return Group(syntax, note) if truncated else syntax


class Preview(VerticalScroll):
    """A scrollable pane; the screen feeds it renderables and it never fetches anything itself.

    Focused (enter on an object), it says so in its border and answers the list's keys: j/k and the
    arrows scroll it, g/G go to its ends, esc goes back to the list (the screen's `back`).
    """

    DEFAULT_CSS = """
    Preview { border: round $panel-lighten-2; border-title-color: $text-muted; padding: 0 1;
              border-subtitle-color: $accent; }
    Preview:focus-within, Preview:focus { border: round $accent; border-title-color: $accent; }
    Preview > #preview-body { width: auto; min-width: 100%; }
    """
    BINDINGS = [
        Binding("j,down", "scroll_down", "Scroll", id="preview.down"),
        Binding("k,up", "scroll_up", "Up", show=False, id="preview.up"),
        Binding("g,home", "scroll_home", "Top", show=False, id="preview.top"),
        Binding("G,end", "scroll_end", "Bottom", show=False, id="preview.bottom"),
        Binding("space,pagedown", "page_down", "Page down", show=False, id="preview.page_down"),
        Binding("b,pageup", "page_up", "Page up", show=False, id="preview.page_up"),
    ]
    FOCUSED_HINT = "j/k scroll · esc back to the list"

    def compose(self) -> ComposeResult:
        yield Static("", id="preview-body", markup=False)

    shown: RenderableType | None = None  # what the pane shows now (tests and the screen read it)
    _object: tuple[str, bytes, int | None] | None = None  # re-laid out when the pane is resized

    def on_mount(self) -> None:
        self.border_title = "preview"

    def on_focus(self) -> None:
        self.border_subtitle = self.FOCUSED_HINT

    def on_descendant_focus(self) -> None:
        self.border_subtitle = self.FOCUSED_HINT

    def on_blur(self) -> None:
        self.border_subtitle = ""

    def on_resize(self) -> None:
        if self._object is not None:
            self._render_object()

    def show_message(self, message: str, title: str = "preview") -> None:
        self._object = None
        self.border_title = visible(title)
        self.shown = Text(message, style="dim")
        self.query_one("#preview-body", Static).update(self.shown)
        self.scroll_home(animate=False)

    def show_object(self, name: str, data: bytes, size: int | None) -> None:
        self.border_title = visible(name)
        self._object = (name, data, size)
        self._render_object()
        self.scroll_home(animate=False)

    def _render_object(self) -> None:
        assert self._object is not None
        name, data, size = self._object
        # The pane's own colour behind the code, so highlighting fits every theme.
        background = self.background_colors[1].hex
        width = self.scrollable_content_region.width or None
        self.shown = render_head(name, data, size, background, width=width)
        self.query_one("#preview-body", Static).update(self.shown)
