"""The key footer of every screen: Textual's Footer, rebuilt once per burst of binding changes, with
`? Help` and `: Command` kept in view.

At start-up the bindings change several times before the first refresh (the screen mounts, the
table takes focus, the backend opens); Textual's Footer schedules a whole recompose of its keys for
each, and styling ~15 keys several times over was a tenth of the time to the first rows.

Textual's Footer lists keys left to right and cuts what does not fit, and the app's keys come last,
so at 80 columns `?` went first. `KeysFooter` keeps those two in a group docked on the right that
never gives way (`f1 Help` where `?` is typed into a text); `q` reads "Back" on a screen that it
leaves rather than quits.
"""
from __future__ import annotations

from collections.abc import Iterator

from textual.containers import HorizontalGroup
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer as TextualFooter
from textual.widgets._footer import FooterKey


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
        self.call_after_refresh(self._hide_cut_keys)

    def on_mount(self) -> None:
        self.call_after_refresh(self._hide_cut_keys)

    async def on_resize(self) -> None:
        if any(not key.display for key in self.query(FooterKey)):
            await self._recompose_once()  # wider: the keys hidden before may fit now
        else:
            self.call_after_refresh(self._hide_cut_keys)

    def _hide_cut_keys(self, tries: int = 20) -> None:
        """A key that does not fit whole is not shown at all (rather than `^k H` or a lone `^d`),
        nor are the keys after it."""
        pinned = next(iter(self.query(".pinned-keys")), None)
        if any(key.display and not key.region.width for key in self.query(FooterKey)):
            # Not laid out yet (a screen under a modal one is laid out later): look again soon.
            if tries and self.is_attached:
                self.set_timer(0.05, lambda: self._hide_cut_keys(tries - 1))
            return
        limit = pinned.region.x if pinned is not None and pinned.region.width else self.region.right
        cut = False
        for key in self.query(FooterKey):
            if pinned is not None and key.parent is pinned:
                continue
            if cut or key.region.right > limit:
                key.display = False
                cut = True


PINNED = ("help", "command")  # app actions whose keys are always shown


class KeysFooter(Footer):
    DEFAULT_CSS = """
    KeysFooter .pinned-keys { dock: right; width: auto; height: 1; padding-left: 1;
                              background: $footer-background; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(show_command_palette=False, **kwargs)

    def compose(self) -> Iterator[Widget]:
        pinned: dict[str, FooterKey] = {}
        on_home = getattr(self.app, "is_home", lambda screen: True)(self.screen)
        for widget in super().compose():
            if isinstance(widget, FooterKey) and widget.action in PINNED and widget.action not in pinned:
                pinned[widget.action] = widget
                continue
            if isinstance(widget, FooterKey) and widget.action == "back_or_quit" and not on_home:
                widget.description = "Back"
            yield widget
        if pinned:
            with HorizontalGroup(classes="pinned-keys"):  # a class: recomposes may overlap
                for action in PINNED:
                    if action in pinned:
                        yield pinned[action]
