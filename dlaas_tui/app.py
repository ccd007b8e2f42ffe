"""The Textual application: screens, the `:` commands, themes, keys and error reporting.

Screens read `self.app.backend` (a `backend.facade.Backend`) and do backend calls in thread
workers. Screens built on other branches (buckets, editor, GPUs) are imported when first opened,
so a missing one is a notification, not a crash.
"""
from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from backend.facade import resource_dir, utcnow

from .keymap import apply_keymap
from .themes import DEFAULT_THEME, load_themes
from .ui_state import UiState
from .widgets.command_bar import CommandScreen, CommandSuggester
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


class DlaasApp(App[None]):
    TITLE = "dlaas-tui"
    CSS_PATH = "app.tcss"
    COMMAND_PALETTE_BINDING = "ctrl+p"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("colon", "command", "Command", id="app.command"),
        Binding("ctrl+t", "next_theme", "Theme", show=False, id="app.theme"),
        Binding("escape", "back", "Back", show=False, id="app.back"),
    ]

    def __init__(
        self,
        backend: Backend,
        *,
        clock: Callable[[], datetime] | None = None,
        poll_interval: float = 1.0,
        watch_files: bool = True,
    ) -> None:
        super().__init__()
        self.backend = backend
        self._fixed_clock = clock
        self.poll_interval = poll_interval
        self.watch_files = watch_files
        self.ui_state = UiState(backend.paths.ui_state_file)
        self.startup_errors: list[str] = []
        self.header_stats = None  # the runs feed's latest header figures, for other screens
        self._own_themes: list[str] = []
        self._load_themes()

    def clock(self) -> datetime:
        """Now, as the engine sees it: a fake engine's driven clock keeps ages and costs in step."""
        if self._fixed_clock is not None:
            return self._fixed_clock()
        engine_clock = getattr(getattr(self.backend, "_engine", None), "clock", None)
        now = getattr(engine_clock, "now", None)
        return now() if callable(now) else utcnow()

    # ------------------------------------------------------------ start
    def _load_themes(self) -> None:
        try:
            themes, errors = load_themes(resource_dir("themes"))
        except Exception as exc:  # a broken install must still open
            themes, errors = [], [f"themes not loaded: {exc}"]
        for theme in themes:
            self.register_theme(theme)
            self._own_themes.append(theme.name)
        self.startup_errors.extend(errors)
        # Chosen before the first stylesheet pass, so start-up styles the app once, not twice.
        wanted = self.ui_state.theme
        if wanted in self.available_themes:
            self.theme = wanted
        elif DEFAULT_THEME in self.available_themes:
            self.theme = DEFAULT_THEME

    def on_mount(self) -> None:
        from .screens.runs import RunsScreen

        try:
            apply_keymap(self, dict(self.backend.config.keys))
        except Exception as exc:
            self.startup_errors.append(f"[keys] not applied: {exc}")
        self.push_screen(RunsScreen())
        for message in self.startup_errors:
            self.report_error(message)

    # ------------------------------------------------------------ errors
    def report_error(self, message: str) -> None:
        """A backend or input problem, shown as a notification; the UI keeps going."""
        self.notify(visible(message), title="Error", severity="error", timeout=8, markup=False)

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
        suggester = CommandSuggester(self.command_names, self.command_arguments)
        self.push_screen(CommandScreen(suggester, self.ui_state.history), callback=self._command_entered)

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
            backend.engine  # fail here, in the worker, rather than in the feed
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
        yield SystemCommand("Runs", "The live table of runs", self.show_runs)
        for command, (_, _, description) in LAZY_SCREENS.items():
            if command == "new" and self.backend.read_only:
                continue
            yield SystemCommand(command.capitalize(), description, lambda c=command: self.open_lazy(c))
        for name in self.command_arguments("theme"):
            if name in self._own_themes:
                yield SystemCommand(f"Theme: {name}", "Switch the colour theme", lambda n=name: self.set_theme(n))
        for name in self.command_arguments("profile"):
            yield SystemCommand(f"Profile: {name}", "Switch profile", lambda n=name: self.switch_profile(n))
        yield SystemCommand("Keys", "Every key of this screen", self.action_help)
        yield SystemCommand("Quit", "Quit dlaas-tui", self.exit)

    async def action_quit(self) -> None:
        self.exit()
