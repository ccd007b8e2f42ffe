"""Copy text to the user's clipboard through OSC 52, so it reaches the laptop over SSH.

Textual's `App.copy_to_clipboard` already writes a plain OSC 52 sequence to the terminal. Inside tmux
that sequence only reaches the outer terminal when tmux has `set-clipboard on`; with the default
(`external`) tmux swallows it, so we also send it wrapped in tmux's DCS passthrough, which works when
`allow-passthrough` is on. A terminal that supports neither simply ignores both.
"""
from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.app import App

# Several terminals cap OSC 52 payloads (xterm's default is about 100 kB of base64).
MAX_BYTES = 74_000


def osc52_sequence(text: str, *, tmux: bool = False) -> str:
    """The escape sequence that puts `text` on the system clipboard (selection `c`)."""
    payload = base64.b64encode(text.encode("utf-8")).decode("ascii")
    seq = f"\x1b]52;c;{payload}\a"
    if tmux:
        # DCS passthrough: every ESC inside is doubled.
        seq = "\x1bPtmux;" + seq.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return seq


def copy(app: App, text: str) -> bool:
    """Copy `text`; False when it is too long for terminals to accept (nothing is sent then)."""
    if len(text.encode("utf-8")) > MAX_BYTES:
        return False
    app.copy_to_clipboard(text)
    driver = getattr(app, "_driver", None)
    if os.environ.get("TMUX") and driver is not None and not app.is_headless:
        driver.write(osc52_sequence(text, tmux=True))
    return True
