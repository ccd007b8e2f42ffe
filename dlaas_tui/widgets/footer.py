"""Textual's Footer, rebuilt once per burst of binding changes rather than once per change.

At start-up the bindings change several times before the first refresh (the screen mounts, the
table takes focus, the backend opens); Textual's Footer schedules a whole recompose of its keys for
each, and styling ~15 keys several times over was a tenth of the time to the first rows.
"""
from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer as TextualFooter


class Footer(TextualFooter):
    _recompose_pending = False

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._recompose_pending:
            self._recompose_pending = True
            self.call_after_refresh(self._recompose_once)

    async def _recompose_once(self) -> None:
        self._recompose_pending = False  # changes from here on schedule another
        await self.recompose()
