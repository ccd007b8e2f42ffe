"""The app offers what its screens ask of it (dlaas_tui/screen_host.py), which they name instead of
importing the app, and its clock follows the engine's own where the engine has one."""
from __future__ import annotations

from datetime import timedelta

from dlaas_tui.screen_host import ScreenHost

from .tui_fixtures import make_app


def test_the_app_is_a_screen_host():
    app, _clock, _engine = make_app(0)
    assert isinstance(app, ScreenHost)


def test_the_app_clock_is_the_fake_engines_driven_clock():
    app, clock, _engine = make_app(0)
    before = app.clock()
    assert before == clock.now()
    clock.advance(3600)
    assert app.clock() - before == timedelta(hours=1)
