"""The Textual application: a shell that shows the profile and quits on `q`."""
from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Static

if TYPE_CHECKING:
    from backend.facade import Backend


class DlaasApp(App[None]):
    TITLE = "dlaas-tui"
    BINDINGS = [Binding("q", "quit", "Quit", id="quit")]

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend

    def compose(self) -> ComposeResult:
        yield Header()
        profile = self.backend.profile
        yield Static(
            f"profile {profile.name}  scheduler {profile.scheduler}  store {profile.store}",
            id="profile",
            markup=False,
        )
        yield Footer()
