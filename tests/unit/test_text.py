"""The one escaping (backend/text.py) the TUI and the CLI share."""
from __future__ import annotations

from backend.text import BIDI_CONTROLS, ESCAPED, controls_to_spaces, visible


def test_no_escaped_character_survives_either_rendering():
    every = "".join(chr(c) for c in sorted(ESCAPED))
    tui = visible(every)
    cli = visible(every, pictures=False)
    assert not any(ord(ch) in ESCAPED for ch in tui)
    assert not any(ord(ch) in ESCAPED and ch != "\t" for ch in cli)
    assert cli.isascii() and "\t" in cli  # the CLI keeps a tab and writes ASCII escapes


def test_the_tui_and_the_cli_use_the_same_function():
    from dlaas_tui.cli.output import safe_text
    from dlaas_tui.widgets import safe_text as widgets

    assert widgets.visible is visible
    trojan = "evil\x1b[31m\u202etxt.exe\x9b"
    assert safe_text(trojan) == visible(trojan, pictures=False) == "evil\\x1b[31m\\u202etxt.exe\\x9b"
    assert widgets.visible(trojan) == "evil\u241b[31m\\u202etxt.exe\\x9b"
    for code in BIDI_CONTROLS:
        assert f"\\u{code:04x}" in safe_text(chr(code)) and chr(code) not in widgets.visible(chr(code))


def test_plain_text_and_other_unicode_pass_untouched():
    for text in ("", "loss=0.25 épreuve 日本語 😀", "a\u00a0b"):
        assert visible(text) == text and visible(text, pictures=False) == text


def test_the_quick_check_finds_every_character_the_tui_rendering_changes():
    from backend.text import NEEDS_VISIBLE

    for code in sorted(ESCAPED):
        assert NEEDS_VISIBLE.search(chr(code)), hex(code)
    assert NEEDS_VISIBLE.search("plain text, épreuve, 日本語") is None


def test_where_no_stand_in_may_go_the_same_characters_become_spaces():
    every = "".join(chr(c) for c in sorted(ESCAPED))
    assert controls_to_spaces(f"a{every}b") == "a" + " " * len(ESCAPED) + "b"
    assert controls_to_spaces("plain name ✓") == "plain name ✓"

    from backend.store.s3_errors import clean
    from dlaas_tui.notices import clean as notice_text

    for shown in (clean("x\u202ey\x1b"), notice_text("x\u202ey\x1b")):
        assert not any(ord(ch) in ESCAPED for ch in shown)
