"""What the runs and run-detail screens ask of the app they are pushed on.

`DlaasApp` provides it; the screens name this protocol rather than the app, so the app can import its
screens without the screens importing the app back. It is for type checkers and tests: an
`isinstance` check at run time would read `backend`, which opens the backend when it is not yet open.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from backend.facade import Backend


@runtime_checkable
class ScreenHost(Protocol):
    backend: Backend
    poll_interval: float
    first_page: Any  # (runs, prepared rows) read when the backend opened, taken by the runs screen

    @property
    def backend_ready(self) -> bool: ...

    @property
    def read_only(self) -> bool: ...

    def clock(self) -> datetime: ...

    def report_error(self, message: str) -> None: ...

    def publish_header_stats(self, stats: Any) -> None: ...

    def poke_runs(self) -> None: ...

    def open_run(self, run_id: str, tab: str = "logs") -> None: ...

    def action_new_run(self) -> None: ...

    # What every Textual app offers, used by the screens too.
    call_from_thread: Callable[..., Any]
    push_screen: Callable[..., Any]
    current_theme: Any

