"""The key footer of every screen: Textual's Footer, rebuilt once per burst of binding changes, with
the way out, `? Help` and `: Command` kept in view.

At start-up the bindings change several times before the first refresh (the screen mounts, the
table takes focus, the backend opens); Textual's Footer schedules a whole recompose of its keys for
each, and styling ~15 keys several times over was a tenth of the time to the first rows.

Textual's Footer lists keys left to right and cuts what does not fit, and the app's keys come last,
so at 80 columns `q` and `?` went first. One rule on every screen decides what shows when space is
short:

- the way out (`q Quit` on the runs table, `q Back` on a screen it leaves, `esc Back` in the
  editor), `? Help` (`f1 Help` where `?` is typed into a text) and `: Command` sit in a group docked
  on the right that never gives way;
- the other keys give way in the order of `GIVE_WAY` (binding ids: view tweaks first, the screen's
  main actions never), then, if still short, from the right. A key is shown whole or not at all.

Every key left out is still listed by `?` and answers when pressed.
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
        """A key that does not fit whole is not shown at all (rather than `^k H` or a lone `^d`); which
        keys give way is `keys_to_hide`'s rule."""
        if not self.is_attached:
            return  # its screen closed before this call came round (after a refresh, or a timer)
        pinned = next(iter(self.query(".pinned-keys")), None)
        if any(key.display and not key.region.width for key in self.query(FooterKey)):
            # Not laid out yet (a screen under a modal one is laid out later): look again soon.
            if tries and self.is_attached:
                self.set_timer(0.05, lambda: self._hide_cut_keys(tries - 1))
            return
        limit = pinned.region.x if pinned is not None and pinned.region.width else self.region.right
        keys = [key for key in self.query(FooterKey) if key.display and (pinned is None or key.parent is not pinned)]
        for key in keys_to_hide(keys, limit - self.content_region.x, self.screen):
            key.display = False


PINNED = ("back_or_quit", "back", "help", "command")  # the actions whose keys are always shown, in order

# Binding ids of the keys that give way first when the footer is short, first to go first: how a view
# looks (sort, wrap), saving and copying, filtering and searching, starting something new, refreshing.
# A screen's own actions (open, halt, resume, priority, delete, upload...) are not here: they go last.
GIVE_WAY = (
    "table.sort", "log.wrap", "preview.down",
    "log.save", "buckets.copy_uri", "buckets.training_data",
    "runs.filter", "buckets.filter", "detail.search",
    "runs.new", "buckets.new", "editor.new", "editor.next_problem",
    "experiments.refresh", "gpus.refresh", "log.follow",
)


def keys_to_hide(keys: list[FooterKey], room: int, screen: Screen) -> list[FooterKey]:
    """Of the (unpinned) `keys`, laid out left to right, those to leave out so that the rest fit in
    `room` cells: by `GIVE_WAY` first, then from the right."""
    ids = {key: binding.binding.id for key, binding in screen.active_bindings.items()}
    width = {key: key.outer_size.width for key in keys}
    hidden: list[FooterKey] = []
    for binding_id in GIVE_WAY:
        if sum(width[k] for k in keys if k not in hidden) <= room:
            return hidden
        hidden += [k for k in keys if k not in hidden and ids.get(k.key) == binding_id]
    used = 0
    for key in keys:
        if key in hidden:
            continue
        used += width[key]
        if used > room:
            hidden.append(key)
    return hidden


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
            if isinstance(widget, FooterKey) and widget.action == "back_or_quit" and not on_home:
                widget.description = "Back"
            if isinstance(widget, FooterKey) and widget.action in PINNED and widget.action not in pinned:
                pinned[widget.action] = widget
                continue
            yield widget
        if pinned:
            with HorizontalGroup(classes="pinned-keys"):  # a class: recomposes may overlap
                for action in PINNED:
                    if action in pinned:
                        yield pinned[action]
