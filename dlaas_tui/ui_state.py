"""Small UI choices remembered between sessions (theme, command history), in the state dir's ui.json.

Reading never fails: a missing or damaged file gives the defaults. Writes are atomic and 0600.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.facade import write_private

HISTORY_LIMIT = 200


class UiState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self.data = loaded
        except (OSError, ValueError):
            pass

    @property
    def theme(self) -> str | None:
        value = self.data.get("theme")
        return value if isinstance(value, str) else None

    @property
    def history(self) -> list[str]:
        value = self.data.get("command_history")
        return [h for h in value if isinstance(h, str)] if isinstance(value, list) else []

    def set_theme(self, name: str) -> None:
        self.data["theme"] = name
        self.save()

    def add_history(self, command: str) -> None:
        history = [h for h in self.history if h != command]
        history.append(command)
        self.data["command_history"] = history[-HISTORY_LIMIT:]
        self.save()

    def save(self) -> None:
        try:
            write_private(self.path, json.dumps(self.data, indent=2))
        except OSError:
            pass  # remembering a choice is a nicety; never fail the UI over it
