"""Data shown to a person (log lines, object keys, run names, messages) is text, never terminal control.

`visible()` is the one escaping that the TUI and the CLI share: every character that can drive a
terminal or reorder what it shows is replaced by a visible stand-in - C0 controls and DEL (ESC starts
colours, OSC 8 links, OSC 52 clipboard writes, title changes), C1 controls (CSI 0x9b and OSC 0x9d act
like ESC sequences), and the Unicode bidirectional controls (U+202A-U+202E, U+2066-U+2069, and the
marks U+200E, U+200F, U+061C), which make text display in an order other than its characters
("Trojan Source"), plus the line and paragraph separators U+2028/U+2029.

Where not even a stand-in may go (the payload of a terminal escape, a one-line error message),
`controls_to_spaces()` turns the same set into spaces.

Two renderings of the same set: `pictures=True` (the TUI) shows C0 controls as Unicode control
pictures (ESC as ␛) and expands a tab; `pictures=False` (the CLI, whose output is piped and grepped)
writes ASCII escapes (`\\x1b`) and keeps a tab. Everything else in the set is `\\xNN` / `\\uNNNN` in both.
Standard library only: the TUI's first frame and `--help` import it.
"""
from __future__ import annotations

import re

TAB_WIDTH = 4

BIDI_CONTROLS = (0x061C, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E,
                 0x2066, 0x2067, 0x2068, 0x2069)
SEPARATORS = (0x2028, 0x2029)
# Every code point that never reaches a terminal as itself (but a tab, which the CLI keeps).
ESCAPED = frozenset([*range(0x20), 0x7F, *range(0x80, 0xA0), *BIDI_CONTROLS, *SEPARATORS])


def _table(pictures: bool) -> dict[int, str]:
    table: dict[int, str] = {}
    for code in sorted(ESCAPED):
        table[code] = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    if pictures:
        for code in range(0x20):
            table[code] = chr(0x2400 + code)  # Unicode "control pictures": ESC -> ␛
        table[0x7F] = "\u2421"  # ␡
        table[0x09] = " " * TAB_WIDTH
    else:
        del table[0x09]  # a tab moves the cursor right and nothing else: kept for scripts
    return table


_TABLES = {True: _table(True), False: _table(False)}
# Most lines hold none of these: a C-speed search first keeps 10 MB lines cheap. Compiled on first
# use: `dlaas-tui runs` escapes only when a cell is not printable, which is seldom.
_NEEDS: dict[bool, re.Pattern[str]] = {}
_ANY: list[re.Pattern[str]] = []


def _needs(pictures: bool) -> re.Pattern[str]:
    pattern = _NEEDS.get(pictures)
    if pattern is None:
        table = _TABLES[pictures]
        pattern = _NEEDS[pictures] = re.compile(
            "[" + "".join(re.escape(chr(c)) for c in table if chr(c) != table[c]) + "]")
    return pattern


def __getattr__(name: str) -> re.Pattern[str]:
    # NEEDS_VISIBLE: matches any character `visible()` (the TUI rendering) changes, a quick
    # "anything to do?" check.
    if name == "NEEDS_VISIBLE":
        return _needs(True)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def controls_to_spaces(text: str) -> str:
    """`text` with every character in ESCAPED (the tab too) replaced by a space."""
    if not _ANY:
        _ANY.append(re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(ESCAPED)) + "]"))
    return _ANY[0].sub(" ", text)


def visible(text: str, *, pictures: bool = True) -> str:
    """`text` with every character in ESCAPED replaced by a visible stand-in (see the module doc)."""
    if _needs(pictures).search(text) is None:
        return text
    return text.translate(_TABLES[pictures])
