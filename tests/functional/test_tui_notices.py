"""TUI notices when runs and sweeps end: which terminal signal, safe escapes, toasts from the feed,
and nothing written where there is no terminal (a pipe, a headless test)."""
from __future__ import annotations

import os
from types import SimpleNamespace

from backend.facade import RunState
from dlaas_tui import notices as nt
from dlaas_tui.screens.runs import RunsScreen
from dlaas_tui.widgets.run_table import RunTable

from .tui_fixtures import SAMPLE_MANIFEST, make_app, wait_for


def test_terminal_kind_follows_the_terminal_and_the_setting():
    assert nt.terminal_kind("auto", {"TERM_PROGRAM": "iTerm.app"}) == "osc9"
    assert nt.terminal_kind("auto", {"TERM_PROGRAM": "WezTerm"}) == "osc9"
    assert nt.terminal_kind("auto", {"TERM": "xterm-kitty"}) == "osc9"
    assert nt.terminal_kind("auto", {"TERM": "foot"}) == "osc777"
    assert nt.terminal_kind("auto", {"TERM": "rxvt-unicode-256color"}) == "osc777"
    assert nt.terminal_kind("auto", {"TERM": "xterm-256color"}) == "bell"
    assert nt.terminal_kind("auto", {"TERM_PROGRAM": "iTerm.app", "TMUX": "/tmp/tmux-0/default,1,0"}) == "bell"
    assert nt.terminal_kind("osc777", {"TERM_PROGRAM": "iTerm.app"}) == "osc777"
    assert nt.terminal_kind("off", {}) == "off"


def test_sequences_carry_no_escapes_from_run_names():
    evil = "x\x1b]0;owned\x07\x1b[2J;y"
    for kind in ("osc9", "osc777"):
        seq = nt.sequence(kind, "Run failed", evil)
        inner = seq[2:-1]  # between ESC ] and the closing BEL
        assert seq.startswith("\x1b]") and seq.endswith("\x07")
        assert "\x1b" not in inner and "\x07" not in inner
    assert nt.sequence("osc777", "a;b", "c;d") == "\x1b]777;notify;a,b;c,d\x07"
    assert nt.sequence("osc9", "Run completed", "training-x") == "\x1b]9;Run completed: training-x\x07"
    assert nt.sequence("bell", "t", "b") == "\x07" and nt.sequence("off", "t", "b") == ""


class _Driver:
    def __init__(self, stream) -> None:
        self._file = stream
        self.written: list[str] = []

    def write(self, data: str) -> None:
        self.written.append(data)


def _stub_app(stream, *, web: bool = False):
    rings: list[int] = []
    app = SimpleNamespace(is_headless=False, is_web=web, _driver=_Driver(stream), toasts=[])
    app.notify = lambda body, **kw: app.toasts.append((kw["title"], body))
    app.bell = lambda: rings.append(1)
    app.rings = rings
    return app


def test_announce_writes_osc_only_to_a_real_terminal():
    items = [nt.Notice("Run completed", "training-abcd1234 (digits)")]
    master, slave = os.openpty()
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty, os.fdopen(write_end, "w", closefd=False) as pipe:
            on_tty = _stub_app(tty)
            assert nt.announce(on_tty, items, "auto", {"TERM_PROGRAM": "WezTerm"}) == "osc9"
            assert on_tty._driver.written == ["\x1b]9;Run completed: training-abcd1234 (digits)\x07"]
            assert on_tty.toasts == [("Run completed", "training-abcd1234 (digits)")]
            assert nt.announce(on_tty, items, "auto", {"TERM": "xterm"}) == "bell" and on_tty.rings == [1]

            piped = _stub_app(pipe)
            assert nt.announce(piped, items, "osc9", {}) == ""
            assert nt.announce(piped, items, "bell", {}) == ""
            assert piped._driver.written == [] and piped.rings == [] and len(piped.toasts) == 2

            web = _stub_app(pipe, web=True)
            assert nt.announce(web, items, "osc9", {}) == "bell" and web._driver.written == []
            assert nt.announce(on_tty, items, "off", {}) == ""
    finally:
        for fd in (master, slave, read_end, write_end):
            os.close(fd)


def test_many_ends_make_one_toast_and_a_sweep_its_own():
    from backend.engines.fake.engine import FakeEngine

    engine = FakeEngine()
    runs = [engine.submit_manifest(SAMPLE_MANIFEST, experiment="sw") for _ in range(5)]
    before = {r.id: r for r in runs}
    for r in runs:
        engine.halt(r.id)
    now = [engine.get_run(r.id) for r in runs]
    ended = nt.run_ends(before, now)
    assert len(ended) == 5
    said = nt.notices(ended, nt.sweep_ends({r.id: r for r in now}, ended))
    assert [(n.title, n.body) for n in said] == [("5 runs ended", "5 HALTED"), ("Sweep ended", "sw: 5 HALTED")]
    assert nt.run_ends({r.id: r for r in now}, now) == []  # already finished: not news


async def test_feed_toasts_a_run_that_ends_and_stays_quiet_in_a_test_terminal():
    app, clock, engine = make_app(0)
    run = engine.submit_manifest(SAMPLE_MANIFEST, name="digits \x1b[31mred")
    written: list[str] = []
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(RunTable).row_count)
        app._driver.write = written.append  # whatever reaches the (headless) driver
        clock.advance(400)
        await wait_for(pilot, lambda: engine.get_run(run.id).state is RunState.COMPLETED)
        app.screen.poke()
        await wait_for(pilot, lambda: any(n.title == "Run completed" for n in app._notifications), timeout=10)
        toast = next(n for n in app._notifications if n.title == "Run completed")
        assert run.id in str(toast.message) and "\x1b" not in str(toast.message)
    assert written == []  # headless: no bell, no OSC
