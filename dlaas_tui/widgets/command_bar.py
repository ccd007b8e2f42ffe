"""The bottom-line prompt: `:` commands (with completion and history) and `/` filters.

One Input serves both modes. It posts `CommandBar.Entered(mode, value)` on enter and
`CommandBar.Typed(mode, value)` as a filter is typed (so tables filter live); `esc` closes it and
posts `Cancelled`. Completion is inline (shown dimmed; `tab` or `→` takes it). History is per
mode, newest last, and is saved by whoever owns the UI state.
"""
from __future__ import annotations

from collections.abc import Callable

from textual.binding import Binding
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import Input


class CommandSuggester(Suggester):
    """Completes a command name, then its argument from `arguments(command)`."""

    def __init__(self, commands: Callable[[], list[str]], arguments: Callable[[str], list[str]]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self._commands = commands
        self._arguments = arguments

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        command, space, arg = value.partition(" ")
        if not space:
            for name in self._commands():
                if name.startswith(command) and name != command:
                    return name
            return None
        for option in self._arguments(command):
            if option.startswith(arg) and option != arg:
                return f"{command} {option}"
        return None


class CommandBar(Input):
    DEFAULT_CSS = """
    CommandBar { dock: bottom; height: 1; border: none; padding: 0 1; display: none;
                 background: $panel; }
    CommandBar.-open { display: block; }
    CommandBar:focus { border: none; }
    """
    BINDINGS = [
        Binding("escape", "close", "Close", show=False, id="command_bar.close"),
        Binding("up", "history(-1)", "Previous", show=False, id="command_bar.previous"),
        Binding("down", "history(1)", "Next", show=False, id="command_bar.next"),
        Binding("tab", "complete", "Complete", show=False, id="command_bar.complete"),
    ]

    class Entered(Message):
        def __init__(self, bar: CommandBar, mode: str, value: str) -> None:
            super().__init__()
            self.bar = bar
            self.mode = mode
            self.value = value

    class Typed(Message):
        def __init__(self, bar: CommandBar, mode: str, value: str) -> None:
            super().__init__()
            self.bar = bar
            self.mode = mode
            self.value = value

    class Cancelled(Message):
        def __init__(self, bar: CommandBar, mode: str) -> None:
            super().__init__()
            self.bar = bar
            self.mode = mode

    def __init__(self, suggester: Suggester | None = None, **kwargs) -> None:
        super().__init__(suggester=suggester, select_on_focus=False, **kwargs)
        self.mode = ":"
        self.histories: dict[str, list[str]] = {":": [], "/": []}
        self._history_pos = 0
        self._command_suggester = suggester

    def open(self, mode: str, value: str = "", *, hint: str | None = None) -> None:
        """Show the bar in `mode` (":" or "/") with `value`; `hint` is what it says while empty."""
        self.mode = mode
        # Only commands complete; a filter is free text.
        self.suggester = self._command_suggester if mode == ":" else None
        self.placeholder = hint if hint is not None else ("command" if mode == ":" else "filter (text or regex)")
        self.value = value
        self.cursor_position = len(value)
        self._history_pos = len(self.histories.setdefault(mode, []))
        self.add_class("-open")
        self.border_title = mode
        self.focus()
        self.call_after_refresh(self.focus)  # once it is displayed

    def close(self) -> None:
        self.remove_class("-open")
        self.value = ""

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    def action_close(self) -> None:
        mode = self.mode
        self.close()
        self.post_message(self.Cancelled(self, mode))

    def action_history(self, step: int) -> None:
        history = self.histories.get(self.mode, [])
        if not history:
            return
        self._history_pos = max(0, min(len(history), self._history_pos + step))
        self.value = history[self._history_pos] if self._history_pos < len(history) else ""
        self.cursor_position = len(self.value)

    def action_complete(self) -> None:
        if self._suggestion and self._suggestion.startswith(self.value):
            self.value = self._suggestion
            self.cursor_position = len(self.value)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self.is_open:
            self.post_message(self.Typed(self, self.mode, event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()

    async def action_submit(self) -> None:
        # A command is trimmed; a filter or search is kept as typed (`epoch=12 ` must not find 120).
        value = self.value.strip() if self.mode == ":" else self.value
        mode = self.mode
        if value.strip():
            history = self.histories.setdefault(mode, [])
            if value in history:
                history.remove(value)
            history.append(value)
        self.close()
        self.post_message(self.Entered(self, mode, value))

