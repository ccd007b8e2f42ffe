"""Telling the user in the TUI that runs or a whole sweep ended: a toast, and a signal from the terminal.

The signal is the terminal bell, or a desktop notification through OSC 9 (iTerm2, WezTerm, ghostty,
kitty) or OSC 777 (foot, urxvt) where the terminal is known to show one, picked from TERM_PROGRAM /
TERM (config `[notify] terminal = "auto" | "osc9" | "osc777" | "bell" | "off"`). Inside tmux or screen
only the bell is sent (they pass unknown OSCs on unreliably). Escapes go out only when the app draws
on a real terminal: never into a pipe, a headless test or a browser (there, only the bell, which
Textual itself sends). Run names are data: every control character is removed before they go into
an escape sequence or a toast.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.facade import controls_to_spaces

if TYPE_CHECKING:
    from textual.app import App

    from backend.facade import Run

OSC9_PROGRAMS = frozenset({"iTerm.app", "WezTerm", "ghostty"})
MANY = 3  # more runs than this ending at once make one toast, not one each
SEVERITY = {"COMPLETED": "information", "HALTED": "warning", "FAILED": "error"}


@dataclass(frozen=True)
class Notice:
    title: str
    body: str
    severity: str = "information"


def clean(text: str, limit: int = 200) -> str:
    """One line of plain text, safe inside an OSC string and a toast."""
    return controls_to_spaces(text)[:limit]


def terminal_kind(setting: str, env: Mapping[str, str]) -> str:
    """Which signal to send: "osc9", "osc777", "bell" or "off"."""
    if setting != "auto":
        return setting
    if env.get("TMUX") or env.get("STY"):
        return "bell"
    term = env.get("TERM", "")
    if env.get("TERM_PROGRAM") in OSC9_PROGRAMS or term == "xterm-kitty" or env.get("KITTY_WINDOW_ID"):
        return "osc9"
    if term.startswith(("foot", "rxvt-unicode")):
        return "osc777"
    return "bell"


def sequence(kind: str, title: str, body: str) -> str:
    if kind == "osc9":
        return f"\x1b]9;{clean(title)}: {clean(body)}\x07"
    if kind == "osc777":  # fields are separated by ';'
        return f"\x1b]777;notify;{clean(title).replace(';', ',')};{clean(body).replace(';', ',')}\x07"
    if kind == "bell":
        return "\x07"
    return ""


def run_ends(previous: Mapping[str, Run], runs: Iterable[Run]) -> list[Run]:
    """The runs that were active in `previous` and are finished now."""
    return [r for r in runs if r.state.terminal and (p := previous.get(r.id)) is not None and not p.state.terminal]


def sweep_ends(mirror: Mapping[str, Run], ended: Iterable[Run]) -> dict[str, dict[str, int]]:
    """The experiments of `ended` whose runs (all of them in `mirror`) have all finished, with counts."""
    out: dict[str, dict[str, int]] = {}
    for experiment in {r.experiment for r in ended if r.experiment}:
        members = [r for r in mirror.values() if r.experiment == experiment]
        if members and all(r.state.terminal for r in members):
            counts: dict[str, int] = {}
            for r in members:
                counts[r.state.value] = counts.get(r.state.value, 0) + 1
            out[experiment] = counts
    return out


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def notices(ended: list[Run], sweeps: Mapping[str, Mapping[str, int]]) -> list[Notice]:
    out: list[Notice] = []
    if len(ended) > MANY:
        counts: dict[str, int] = {}
        for r in ended:
            counts[r.state.value] = counts.get(r.state.value, 0) + 1
        worst = "error" if "FAILED" in counts else "warning" if "HALTED" in counts else "information"
        out.append(Notice(f"{len(ended)} runs ended", _counts(counts), worst))
    else:
        for r in ended:
            detail = f" {r.error_code}" if r.error_code else ""
            out.append(Notice(f"Run {r.state.value.lower()}", clean(f"{r.id} ({r.name}){detail}"),
                              SEVERITY.get(r.state.value, "information")))
    for experiment, counts in sorted(sweeps.items()):
        failed = "FAILED" in counts
        out.append(Notice("Sweep ended", clean(f"{experiment}: {_counts(counts)}"), "warning" if failed else "information"))
    return out


def writes_to_terminal(app: App) -> bool:
    """True when escapes from us reach a real terminal (not a pipe, a test, or a browser)."""
    if app.is_headless or app.is_web:
        return False
    driver = getattr(app, "_driver", None)
    stream = getattr(driver, "_file", None)
    try:
        return bool(stream is not None and stream.isatty())
    except (ValueError, OSError):
        return False


def announce(app: App, items: list[Notice], setting: str, env: Mapping[str, str]) -> str:
    """Toast every notice and send one terminal signal for the lot; returns the signal sent ("" none)."""
    if not items:
        return ""
    for item in items:
        app.notify(item.body, title=item.title, severity=item.severity, timeout=8, markup=False)  # type: ignore[arg-type]
    kind = terminal_kind(setting, env)
    if kind == "off":
        return ""
    if app.is_web:  # a browser tab: the bell is all xterm.js would take from us
        app.bell()
        return "bell"
    if not writes_to_terminal(app):
        return ""
    if kind == "bell":
        app.bell()
        return "bell"
    first = items[0] if len(items) == 1 else Notice(f"dlaas-tui: {len(items)} notices", items[0].body)
    app._driver.write(sequence(kind, first.title, first.body))  # type: ignore[union-attr]
    return kind
