"""The bucket browser's pieces on their own: OSC 52, the preview renderers, path completion."""
from __future__ import annotations

import base64
from pathlib import Path

from rich.console import Console

from dlaas_tui.widgets import osc52
from dlaas_tui.widgets.preview import decode_head, hex_dump, render_head
from dlaas_tui.screens.prompts import PathSuggester


def rendered(renderable, width: int = 100) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_osc52_sequence_and_tmux_passthrough():
    seq = osc52.osc52_sequence("s3://b/k")
    assert seq == "\x1b]52;c;" + base64.b64encode(b"s3://b/k").decode() + "\a"
    wrapped = osc52.osc52_sequence("s3://b/k", tmux=True)
    assert wrapped.startswith("\x1bPtmux;\x1b\x1b]52;c;") and wrapped.endswith("\a\x1b\\")


def test_osc52_refuses_what_terminals_would_drop():
    class FakeApp:
        is_headless = True
        copied = None

        def copy_to_clipboard(self, text):
            self.copied = text

    app = FakeApp()
    assert osc52.copy(app, "x" * 10) and app.copied == "x" * 10
    assert not osc52.copy(app, "y" * (osc52.MAX_BYTES + 1)) and app.copied == "x" * 10


def test_text_head_keeps_lines_and_shows_control_characters():
    out = rendered(render_head("notes.txt", b"[bold]not markup[/bold]\r\n\x1b]0;title\x07\n", 40))
    assert "[bold]not markup[/bold]\n" in out and "\u241b]0;title\u2407" in out


def test_utf8_cut_by_the_range_is_still_text_and_binary_is_hex():
    data = "héllo wörld".encode()
    assert decode_head(data[:2]) == "h"  # the cut é is not an error
    assert decode_head(b"\x00\x01") is None and decode_head(b"\xff\xfe\xfa") is None
    assert "0010  10 11" in hex_dump(bytes(range(32))).plain
    # Rows as wide as the pane allows, never cut: 8 bytes (with their ASCII) in 42 cells.
    narrow = hex_dump(bytes(range(32)), width=42).plain.splitlines()
    assert narrow[1] == "0008  08 09 0a 0b 0c 0d 0e 0f  |........|" and all(len(r) <= 42 for r in narrow)


def test_truncated_text_drops_the_cut_line_and_says_how_much():
    head = b"line one\nline two\nline th"
    out = rendered(render_head("log.txt", head, 1_000_000))
    assert "line two" in out and "line th" not in out
    assert "first 25 B of 976.6 KiB" in out


def test_csv_head_is_a_table_of_literal_cells():
    out = rendered(render_head("t.csv", b"a,b\n[red]x[/red],\x1b[2J\n", 20))
    assert "[red]x[/red]" in out and "\u241b[2J" in out


async def test_path_completion_from_disk(tmp_path: Path):
    (tmp_path / "data-train").mkdir()
    (tmp_path / "data.csv").write_text("x")
    (tmp_path / ".hidden").write_text("x")
    suggester = PathSuggester()
    assert await suggester.get_suggestion(str(tmp_path / "data-")) == str(tmp_path / "data-train") + "/"
    assert await suggester.get_suggestion(str(tmp_path / "data.")) == str(tmp_path / "data.csv")
    assert await suggester.get_suggestion(str(tmp_path) + "/") == str(tmp_path / "data-train") + "/"
    assert await suggester.get_suggestion(str(tmp_path / "nope")) is None
