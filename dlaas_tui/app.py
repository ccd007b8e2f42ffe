"""The Textual application: screens, the `:` commands, themes, keys and error reporting.

Screens read `self.app.backend` (a `backend.facade.Backend`) and do backend calls in thread
workers. Screens built on other branches (buckets, editor, GPUs) are imported when first opened,
so a missing one is a notification, not a crash.

Started from the command line, the app gets an `opener` rather than a backend: reading the config
means importing pydantic, which would cost more than Textual's own start, so the first frame is
drawn first and the backend is opened in a thread worker right after it.
"""
from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen

from backend.facade import get_paths, resource_dir, utcnow

from .keymap import apply_keymap, refusal
from .theme_cache import cached_themes
from .themes import DEFAULT_THEME
from .ui_state import UiState
from .widgets.safe_text import visible

if TYPE_CHECKING:
    from backend.facade import Backend

# command -> (screen module, class, description)
LAZY_SCREENS = {
    "buckets": ("dlaas_tui.screens.buckets", "BucketsScreen", "Browse buckets and objects"),
    "gpus": ("dlaas_tui.screens.gpus", "GpusScreen", "GPUs, utilization and the runs holding them"),
    "new": ("dlaas_tui.screens.editor", "EditorScreen", "Write a manifest and submit it"),
    "experiments": ("dlaas_tui.screens.experiments", "ExperimentsScreen",
                    "Sweeps and grouped runs: leaderboards and metric curves"),
}
COMMANDS = ("runs", "buckets", "gpus", "new", "experiments", "profile", "theme", "help", "quit")
COMMAND_HINT = "command: " + " ".join(COMMANDS)


class DlaasApp(App[None]):
    TITLE = "dlaas-tui"
    CSS_PATH = "app.tcss"
    COMMAND_PALETTE_BINDING = "ctrl+p"
    BINDINGS = [
        # `q` leaves a sub-screen like esc does and quits only from the home screen (the runs).
        Binding("q", "back_or_quit", "Quit", id="app.quit"),
        Binding("question_mark", "help", "Help", id="app.help"),
        # Where `?` is typed into a text (the editor), the footer shows this one instead.
        Binding("f1", "help", "Help", id="app.help_f1"),
        Binding("colon", "command", "Command", id="app.command"),
        Binding("ctrl+t", "next_theme", "Theme", show=False, id="app.theme"),
        Binding("escape", "back", "Back", show=False, id="app.back"),
    ]

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        opener: Callable[[], Backend] | None = None,
        on_started: Callable[[], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        poll_interval: float = 1.0,
        watch_files: bool = True,
    ) -> None:
        """Give either an open `backend` or an `opener` that opens one (called after the first frame).

        `on_started` is called once, when the first frame is drawn and the backend is open (or failed).
        """
        super().__init__()
        if backend is None and opener is None:
            raise TypeError("DlaasApp needs a backend or an opener")
        self._backend = backend
        self._opener = opener
        self._on_started = on_started
        self._open_lock = threading.Lock()
        self.open_error: Exception | None = None  # why the opener failed; the app then exits
        self._fixed_clock = clock
        self.poll_interval = poll_interval
        self.watch_files = watch_files
        paths = backend.paths if backend is not None else get_paths()
        self.ui_state = UiState(paths.ui_state_file)
        self.startup_errors: list[str] = []
        self.header_stats = None  # the runs feed's latest header figures, for other screens
        self.first_page = None  # (runs, prepared rows) read right after the backend opened
        self._own_themes: list[str] = []
        self._load_themes(paths.cache_dir / "themes.json")

    def clock(self) -> datetime:
        """Now, as the engine sees it: a fake engine's driven clock keeps ages and costs in step."""
        if self._fixed_clock is not None:
            return self._fixed_clock()
        return self._backend.now() if self._backend is not None else utcnow()

    # ------------------------------------------------------------ start
    def _load_themes(self, cache_file: Path) -> None:
        try:
            themes, errors = cached_themes(resource_dir("themes"), cache_file)
        except Exception as exc:  # a broken install must still open
            themes, errors = [], [f"themes not loaded: {exc}"]
        for theme in themes:
            self.register_theme(theme)
            self._own_themes.append(theme.name)
        self.startup_errors.extend(errors)
        wanted = self.ui_state.theme
        if wanted in self.available_themes:
            self._start_theme(wanted)
        elif DEFAULT_THEME in self.available_themes:
            self._start_theme(DEFAULT_THEME)

    def _start_theme(self, name: str) -> None:
        """Choose the theme before anything is styled, so that start-up styles the app once, not twice.

        Assigning `self.theme` queues a whole-app CSS refresh (reparse, restyle every widget) for just
        after start-up; nothing has been styled yet, so the theme's variables and classes are set
        directly instead. A theme that needs another ANSI colour mapping takes the ordinary path.
        """
        before, theme = self.current_theme, self.get_theme(name)
        if theme is None or (theme.dark, theme.ansi) != (before.dark, before.ansi):
            self.theme = name
            return
        self.set_reactive(DlaasApp.theme, name)
        self.update_classes({f"-theme-{name}": True, "-dark-mode": theme.dark, "-light-mode": not theme.dark},
                            update=False)
        self.stylesheet.set_variables(self.get_css_variables())

    def on_mount(self) -> None:
        from .screens.runs import RunsScreen

        if self._backend is not None:
            self.startup_errors.extend(self._apply_keys())
        self.push_screen(RunsScreen())
        for message in self.startup_errors:
            self.report_error(message)
        self.call_after_refresh(self._after_first_frame)

    def _after_first_frame(self) -> None:
        if self._backend is None:
            self._open_in_background()
        else:
            self._started()

    def _started(self) -> None:
        callback, self._on_started = self._on_started, None
        if callback is not None:
            callback()

    def _apply_keys(self) -> list[str]:
        try:
            apply_keymap(self, dict(self.backend.config.keys))
        except Exception as exc:
            return [f"[keys] not applied: {exc}"]
        return []

    # ------------------------------------------------------------ the backend
    @property
    def backend(self) -> Backend:
        """The open backend. Asked for before the worker has opened it, it is opened here, now."""
        if self._backend is None:
            self._open()
            if self._backend is None:
                assert self.open_error is not None
                raise self.open_error
        return self._backend

    @backend.setter
    def backend(self, backend: Backend) -> None:
        self._backend = backend

    @property
    def backend_ready(self) -> bool:
        return self._backend is not None

    @property
    def read_only(self) -> bool:
        """Whether writes are refused; until the profile is known, they are (nothing is lost by waiting)."""
        return self._backend is None or self._backend.read_only

    def _open(self) -> None:
        # One opening, whichever thread asks first; the other waits for it on the lock.
        with self._open_lock:
            if self._backend is None and self.open_error is None and self._opener is not None:
                try:
                    self._backend = self._opener()
                except Exception as exc:
                    self.open_error = exc

    @work(thread=True, group="open-backend", exit_on_error=False)
    def _open_in_background(self) -> None:
        self._open()
        if self._backend is not None:  # the runs screen's first screenful, read in this same thread
            from .screens.runs import read_first_page, screen_rows

            self.first_page = read_first_page(self._backend, rows=screen_rows(self))
        try:
            self.call_from_thread(self._backend_opened)
        except RuntimeError:
            pass  # the app closed before the backend was open

    def _backend_opened(self) -> None:
        from .screens.runs import RunsScreen

        self._started()
        if self._backend is None:
            error = self.open_error
            # No half-working TUI on a bad config: leave, and the CLI prints the one-line error.
            self.exit(return_code=getattr(error, "exit_code", 1))
            return
        for message in self._apply_keys():
            self.report_error(message)
        for screen in self.screen_stack:
            if isinstance(screen, RunsScreen):
                screen.restart_feed()
        self.first_page = None
        self.call_after_refresh(self.screen.refresh_bindings)  # the rows first, then the footer

    def _handle_exception(self, error: Exception) -> None:
        # A handler asked for the backend and the config could not be opened: no traceback, the
        # CLI reports `open_error` in one line once the app has exited.
        if error is self.open_error:
            self.exit(return_code=getattr(error, "exit_code", 1))
            return
        super()._handle_exception(error)

    # ------------------------------------------------------------ errors
    def report_error(self, message: str) -> None:
        """A backend or input problem, shown as a notification; the UI keeps going."""
        self.notify(visible(message), title="Error", severity="error", timeout=8, markup=False)

    # ------------------------------------------------------------ the header
    def publish_header_stats(self, stats) -> None:
        """The runs feed's latest figures, shown at once by the header of every open screen."""
        from .widgets.header import StatusHeader

        self.header_stats = stats
        for screen in self.screen_stack:
            for header in screen.query(StatusHeader):
                header.update_stats(stats)

    def poke_runs(self) -> None:
        """Ask the runs feed for changes now (after a halt elsewhere), so every header catches up."""
        from .screens.runs import RunsScreen

        for screen in self.screen_stack:
            if isinstance(screen, RunsScreen):
                screen.poke()

    # ------------------------------------------------------------ screens
    def open_run(self, run_id: str, tab: str = "logs") -> None:
        from .screens.run_detail import RunDetailScreen

        self.push_screen(RunDetailScreen(run_id, tab=tab))

    def open_lazy(self, command: str) -> None:
        module_name, class_name, _ = LAZY_SCREENS[command]
        try:
            module = importlib.import_module(module_name)
            screen_class = getattr(module, class_name)
        except (ImportError, AttributeError):
            self.notify(f"The {command} screen is not in this build yet", severity="warning", markup=False)
            return
        if command == "new" and self.backend.read_only:
            self.report_error("Read-only: submitting runs is not allowed")
            return
        try:
            self.push_screen(screen_class())
        except Exception as exc:
            self.report_error(f"Could not open {command}: {exc}")

    def action_new_run(self) -> None:
        self.open_lazy("new")

    def show_runs(self) -> None:
        from .screens.runs import RunsScreen

        while len(self.screen_stack) > 1 and not isinstance(self.screen, RunsScreen):
            self.pop_screen()

    def action_back(self) -> None:
        if len(self.screen_stack) > 2:
            self.pop_screen()

    def is_home(self, screen: Screen) -> bool:
        """The screen `q` quits from: the runs table at the bottom of the stack."""
        from .screens.runs import RunsScreen

        return isinstance(screen, RunsScreen) or len(self.screen_stack) <= 2

    async def action_back_or_quit(self) -> None:
        screen = self.screen
        if self.is_home(screen):
            self.exit()
            return
        # The screen's own way back first: the editor asks before dropping changes, a dialog says no.
        for name in ("action_cancel", "action_back"):
            leave = getattr(screen, name, None)
            if callable(leave):
                result = leave()
                if hasattr(result, "__await__"):
                    await result
                return
        if isinstance(screen, ModalScreen):
            screen.dismiss(None)
        else:
            self.pop_screen()

    def on_key(self, event) -> None:
        """A key whose bindings are all disabled says why nothing happens, in one notice: a write key on
        a read-only profile, or a run key that does not apply to the selected run (halting a finished run)."""
        if self._backend is None:
            return
        said = refusal(self.screen, event.key, self._backend.read_only)
        if said:
            self.notify(visible(said), severity="warning", markup=False)

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    # ------------------------------------------------------------ themes
    def action_next_theme(self) -> None:
        names = self._own_themes or sorted(self.available_themes)
        i = names.index(self.theme) if self.theme in names else -1
        self.set_theme(names[(i + 1) % len(names)])

    def set_theme(self, name: str) -> None:
        if name not in self.available_themes:
            close = difflib.get_close_matches(name, list(self.available_themes), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.report_error(f"No theme {name!r}{hint}")
            return
        self.theme = name
        self.ui_state.set_theme(name)
        self.notify(f"Theme {name}", timeout=2, markup=False)

    # ------------------------------------------------------------ commands
    def command_names(self) -> list[str]:
        return list(COMMANDS)

    def command_arguments(self, command: str) -> list[str]:
        if command == "theme":
            return sorted(self.available_themes, key=lambda n: (n not in self._own_themes, n))
        if command == "profile":
            names = set(self.backend.config.profiles) | {self.backend.config.default_profile, "local"}
            return sorted(names)
        return []

    def action_command(self) -> None:
        from .screens.command import CommandScreen  # here: not needed for the first frame
        from .widgets.command_bar import CommandSuggester

        suggester = CommandSuggester(self.command_names, self.command_arguments)
        self.push_screen(CommandScreen(suggester, self.ui_state.history, hint=COMMAND_HINT),
                         callback=self._command_entered)

    def _command_entered(self, value: str | None) -> None:
        if value:
            self.ui_state.add_history(value)
            self.run_command(value)

    def run_command(self, text: str) -> None:
        command, _, arg = text.strip().lstrip(":").partition(" ")
        arg = arg.strip()
        if command in ("runs", "r"):
            self.show_runs()
        elif command in LAZY_SCREENS:
            self.open_lazy(command)
        elif command == "theme":
            if arg:
                self.set_theme(arg)
            else:
                self.notify(f"Themes: {', '.join(self.command_arguments('theme'))}", markup=False)
        elif command == "profile":
            if arg:
                self.switch_profile(arg)
            else:
                self.notify(f"Profile {self.backend.profile.name}", markup=False)
        elif command in ("help", "h"):
            self.action_help()
        elif command in ("quit", "q", "q!"):
            self.exit()
        else:
            close = difflib.get_close_matches(command, COMMANDS, n=1)
            hint = f" (did you mean :{close[0]}?)" if close else ""
            self.report_error(f"Unknown command :{command}{hint}")

    def switch_profile(self, name: str) -> None:
        self._open_profile(name, self.backend.read_only and not self.backend.profile.read_only)

    @work(thread=True, exclusive=True, group="profile", exit_on_error=False)
    def _open_profile(self, name: str, forced_read_only: bool) -> None:
        from backend.facade import open_backend

        try:
            backend = open_backend(name, read_only=forced_read_only or None)
            backend.engine  # noqa: B018 - fail here, in the worker, rather than in the feed
        except Exception as exc:
            self.call_from_thread(self.report_error, f"Profile {name}: {exc}")
            return
        self.call_from_thread(self._use_backend, backend)

    def _use_backend(self, backend: Backend) -> None:
        from .screens.runs import RunsScreen

        old, self.backend = self.backend, backend
        self.show_runs()
        if isinstance(self.screen, RunsScreen):
            self.screen.restart_feed()
        self.notify(f"Profile {backend.profile.name}", markup=False)
        self._close_backend(old)

    @work(thread=True, group="profile", exit_on_error=False)
    def _close_backend(self, backend: Backend) -> None:
        try:
            backend.close()
        except Exception:
            pass  # the old profile's engine going away badly must not disturb the new one

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        # The selected run's actions that apply to it now (halt, resume, priority, ...), first.
        run_commands = getattr(screen, "palette_commands", None)
        if callable(run_commands):
            yield from run_commands()
        yield SystemCommand("Runs", "The live table of runs", self.show_runs)
        for command, (_, _, description) in LAZY_SCREENS.items():
            if command == "new" and self.backend.read_only:
                continue
            title = {"gpus": "GPUs", "new": "New run"}.get(command, command.capitalize())
            yield SystemCommand(title, description, lambda c=command: self.open_lazy(c))
        for name in self.command_arguments("theme"):
            if name in self._own_themes:
                yield SystemCommand(f"Theme: {name}", "Switch the colour theme", lambda n=name: self.set_theme(n))
        for name in self.command_arguments("profile"):
            yield SystemCommand(f"Profile: {name}", "Switch profile", lambda n=name: self.switch_profile(n))
        yield SystemCommand("Keys", "Every key of this screen", self.action_help)
        yield SystemCommand("Quit", "Quit dlaas-tui", self.exit)

    async def action_quit(self) -> None:
        self.exit()
