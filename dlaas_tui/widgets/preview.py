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
from textual.containers import VerticalScroll
from textual.widgets import Static

from ..cli.output import human_bytes
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


def hex_dump(data: bytes, limit: int = HEX_BYTES) -> Text:
    out = Text(no_wrap=True)
    for offset in range(0, min(len(data), limit), 16):
        chunk = data[offset : offset + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        out.append(f"{offset:08x}  ", style="dim")
        out.append(f"{hexes:<47}  ")
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
    name: str, data: bytes, size: int | None, background: str | None = None
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
        return Group(Text(f"binary, {human_bytes(size)}; first bytes:", style="dim"), hex_dump(data))
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
    """A scrollable pane; the screen feeds it renderables and it never fetches anything itself."""

    DEFAULT_CSS = """
    Preview { border: round $panel-lighten-2; border-title-color: $text-muted; padding: 0 1; }
    Preview:focus-within, Preview:focus { border: round $accent; }
    Preview > #preview-body { width: auto; min-width: 100%; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="preview-body", markup=False)

    shown: RenderableType | None = None  # what the pane shows now (tests and the screen read it)

    def on_mount(self) -> None:
        self.border_title = "preview"

    def show_message(self, message: str, title: str = "preview") -> None:
        self.border_title = visible(title)
        self.shown = Text(message, style="dim")
        self.query_one("#preview-body", Static).update(self.shown)
        self.scroll_home(animate=False)

    def show_object(self, name: str, data: bytes, size: int | None) -> None:
        self.border_title = visible(name)
        # The pane's own colour behind the code, so highlighting fits every theme.
        background = self.background_colors[1].hex
        self.shown = render_head(name, data, size, background)
        self.query_one("#preview-body", Static).update(self.shown)
        self.scroll_home(animate=False)
