"""The store command's pieces that need no subprocess (the command as a user runs it: tests/functional/test_store_cli.py)."""
from __future__ import annotations

import io


def test_progress_bar_shows_keys_as_text_not_markup(monkeypatch):
    from rich.console import Console

    from dlaas_tui.cli import output

    buf = io.StringIO()
    monkeypatch.setattr("rich.console.Console", lambda **kw: Console(file=buf, width=100, force_terminal=False))
    with output.transfer_progress("put [bold]x[/bold]", enabled=True) as transfer:
        transfer.add_total(10)
        transfer.advance(10)
    assert "[bold]x[/bold]" in buf.getvalue()


def test_parse_duration():
    from dlaas_tui.cli.store_cmd import parse_duration

    assert [parse_duration(t) for t in ("90", "90s", "15m", "1h", "7d")] == [90, 90, 900, 3600, 604800]
