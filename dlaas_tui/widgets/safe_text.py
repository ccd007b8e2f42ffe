"""Data shown in the TUI (log lines, object keys, run names) is text, never markup or escapes.

`visible()` maps every control character to a printable stand-in, so an ESC from a log line or an
object key can never reach the terminal (ANSI colours, OSC 8 links, OSC 52 clipboard writes,
title changes). `data_text()` wraps the result in a rich `Text`, which Rich never parses as markup,
so `[bold red]` and `[link=…]` in data are shown as typed.
"""
from __future__ import annotations

import re

from rich.style import Style
from rich.text import Text

TAB_WIDTH = 4


def _build_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(0x20):
        table[code] = chr(0x2400 + code)  # Unicode "control pictures": ESC -> ␛
    table[0x09] = " " * TAB_WIDTH
    table[0x7F] = "\u2421"  # ␡
    for code in range(0x80, 0xA0):  # C1 controls (CSI 0x9b, OSC 0x9d) act like ESC sequences
        table[code] = f"\\x{code:02x}"
    # Bidirectional overrides can make text display in an order other than its bytes.
    for code in (0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069):
        table[code] = f"\\u{code:04x}"
    return table


_TABLE = _build_table()
# Most lines hold no control character: a C-speed search first keeps 10 MB lines cheap.
_NEEDS_TRANSLATE = re.compile("[" + "".join(re.escape(chr(c)) for c in _TABLE) + "]")


def visible(text: str) -> str:
    """`text` with every control character replaced by a visible stand-in."""
    if _NEEDS_TRANSLATE.search(text) is None:
        return text
    return text.translate(_TABLE)


def data_text(text: str, style: str | Style = "") -> Text:
    """A rich Text of data: literal, single-line-safe, never interpreted as markup."""
    return Text(visible(text), style=style, no_wrap=False, end="")


def visible_lines(text: str) -> str:
    """Like `visible()` but keeps line breaks, for multi-line documents (a manifest)."""
    return "\n".join(visible(line) for line in text.replace("\r\n", "\n").split("\n"))
