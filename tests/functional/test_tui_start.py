"""Start-up: the app draws its first frame, then opens the backend in a worker; a bad config ends it."""
from __future__ import annotations

import functools
import threading

import pytest
from textual.app import App

from backend.config import Config, Profile
from backend.engines.fake.clock import FakeClock
from backend.engines.fake.engine import FakeEngine
from backend.facade import Backend, ConfigError, get_paths
from dlaas_tui.app import DlaasApp
from dlaas_tui.cli import main
from dlaas_tui.screens.run_detail import RunDetailScreen
from dlaas_tui.screens.runs import RunsScreen
from dlaas_tui.widgets.run_table import RunTable

from .tui_fixtures import wait_for


def fake_backend(**config) -> Backend:
    engine = FakeEngine(FakeClock(), devices=2, gpu_type="H100")
    engine.seed(12)
    profile = Profile(name="fake", scheduler="fake")
    return Backend(config=Config(**config), profile=profile, paths=get_paths(), _engine=engine)


async def test_first_frame_comes_before_the_backend_which_opens_in_a_worker():
    release = threading.Event()
    opened_in: list[threading.Thread] = []

    def opener() -> Backend:
        opened_in.append(threading.current_thread())
        assert release.wait(10), "the test never let the backend open"
        return fake_backend(keys={"runs.logs": "o"})

    started: list[bool] = []
    app = DlaasApp(opener=opener, poll_interval=0.25, on_started=lambda: started.append(app.backend_ready))
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_for(pilot, lambda: bool(opened_in))
        # Drawn, and answering, while the config is still being read (nothing waits for it).
        assert isinstance(app.screen, RunsScreen) and not app.backend_ready
        assert app.screen.check_action("halt", ()) is False  # no writes until the profile is known
        await pilot.press("slash")
        await pilot.press("escape")
        assert opened_in[0] is not threading.main_thread()
        assert started == []
        release.set()
        table = app.screen.query_one(RunTable)
        await wait_for(pilot, lambda: table.row_count == 12)
        assert app.backend_ready and app.screen.check_action("halt", ()) is True
        assert app.open_error is None
        await pilot.press("o")  # the config's [keys] apply once it has been read
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen))
    assert started == [True]  # once, when both the frame and the backend were there


async def test_an_opener_that_fails_ends_the_app_with_its_exit_code():
    def opener() -> Backend:
        raise ConfigError("config.toml:3: unknown key 'sheduler'")

    app = DlaasApp(opener=opener)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.open_error is not None)
        await wait_for(pilot, lambda: app.return_code is not None, what="the app's exit")
    assert isinstance(app.open_error, ConfigError)
    assert app.return_code == 2


def test_app_needs_a_backend_or_an_opener():
    with pytest.raises(TypeError):
        DlaasApp()


@pytest.fixture
def headless(monkeypatch):
    monkeypatch.setattr(DlaasApp, "run", functools.partialmethod(App.run, headless=True))


def test_plain_dlaas_tui_with_a_bad_config_says_so_in_one_line(headless, dlaas_home, capsys):
    (dlaas_home / "config.toml").write_text('default_profile = "fake"\n[profiles.fake]\nsheduler = "fake"\n')
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlaas-tui: ") and "sheduler" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_plain_dlaas_tui_opens_the_profile_after_starting(headless, dlaas_home, monkeypatch):
    (dlaas_home / "config.toml").write_text('default_profile = "fake"\n[profiles.fake]\nscheduler = "fake"\n')
    seen: list[str] = []
    opened = DlaasApp._backend_opened

    def then_quit(self):
        opened(self)
        seen.append(self.backend.profile.name)
        self.exit()

    monkeypatch.setattr(DlaasApp, "_backend_opened", then_quit)
    assert main([]) == 0
    assert seen == ["fake"]


async def test_a_key_that_needs_the_backend_before_it_is_open_opens_it_or_ends_cleanly(monkeypatch):
    monkeypatch.setattr(DlaasApp, "_open_in_background", lambda self: None)  # as if the worker were slow
    app = DlaasApp(opener=lambda: fake_backend())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("colon", *"profile", "escape")
        assert not app.backend_ready
        await pilot.press("colon", *"new", "enter")  # the editor needs the profile: opened there and then
        await wait_for(pilot, lambda: app.backend_ready)

    def broken() -> Backend:
        raise ConfigError("config.toml: bad")

    app = DlaasApp(opener=broken)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("colon", *"profile", "enter")
        await wait_for(pilot, lambda: app.return_code is not None, what="the app's exit")
    assert isinstance(app.open_error, ConfigError) and app.return_code == 2
    assert not app._exit_renderables  # no traceback: the CLI prints the one-line error


@pytest.mark.parametrize("theme", ["dark", "light", "high-contrast", "textual-light"])
async def test_a_theme_chosen_at_start_styles_as_one_switched_to_later(theme):
    from dlaas_tui.ui_state import UiState

    async def styled(app: DlaasApp) -> tuple:
        async with app.run_test(size=(80, 24)) as pilot:
            if app.theme != theme:
                app.theme = theme
            # The switch restyles on the next turn of the message loop (call_next), then draws.
            await pilot.pause()
            await pilot.wait_for_scheduled_animations()
            await pilot.pause()
            return (sorted(app.classes), dict(app.stylesheet._variables), app.screen.styles.background,
                    app.screen.query_one(RunTable).styles.color)

    ui_state = UiState(get_paths().ui_state_file)
    ui_state.set_theme("textual-ansi" if theme == "textual-light" else "textual-light")
    later = await styled(DlaasApp(fake_backend()))
    ui_state.set_theme(theme)
    at_start = DlaasApp(fake_backend())
    assert at_start.theme == theme
    assert await styled(at_start) == later
