"""Data shown in the TUI (log lines, object keys, run names) is text, never markup or escapes.

`visible()` (backend/text.py, shared with the CLI) maps every control character - C0, C1, DEL and
the Unicode bidirectional controls - to a printable stand-in, so an ESC from a log line or an object
key can never reach the terminal (ANSI colours, OSC 8 links, OSC 52 clipboard writes, title
changes) and a U+202E cannot make a name display reversed. `data_text()` wraps the result in a rich
`Text`, which Rich never parses as markup, so `[bold red]` and `[link=…]` in data are shown as typed.
"""
from __future__ import annotations

from rich.style import Style
from rich.text import Text

from backend.facade import NEEDS_VISIBLE, visible

# The one escaping the CLI shares (backend/text.py): the same characters never reach the terminal.
# NEEDS_VISIBLE: a widget's one search before mapping several cells (run_table).
__all__ = ["NEEDS_VISIBLE", "data_text", "visible", "visible_lines"]


def data_text(text: str, style: str | Style = "") -> Text:
    """A rich Text of data: literal, single-line-safe, never interpreted as markup."""
    return Text(visible(text), style=style, no_wrap=False, end="")


def visible_lines(text: str) -> str:
    """Like `visible()` but keeps line breaks, for multi-line documents (a manifest)."""
    return "\n".join(visible(line) for line in text.replace("\r\n", "\n").split("\n"))
