"""Key bindings: every user-facing Binding has an id, and the config's `[keys]` table remaps them.

    [keys]
    "runs.halt" = "ctrl+k"
    "log.follow" = "f"

`describe()` lists the bindings a screen answers to (for `?`), read from the live binding chain,
so help always shows the keys in force, remapped ones included.
"""
from __future__ import annotations

from dataclasses import dataclass

from textual.actions import parse as parse_action
from textual.app import App
from textual.screen import Screen


@dataclass(frozen=True)
class KeyHelp:
    keys: str
    description: str
    binding_id: str
    owner: str


def format_key(key: str) -> str:
    names = {
        "question_mark": "?",
        "colon": ":",
        "slash": "/",
        "escape": "esc",
        "less_than_sign": "<",
        "greater_than_sign": ">",
        "space": "space",
    }
    return names.get(key, key)


def apply_keymap(app: App, keys: dict[str, str]) -> None:
    """Remap bindings by id; keys are comma-separated (`"ctrl+k,x"`)."""
    if keys:
        app.set_keymap({binding_id: value for binding_id, value in keys.items()})


# Actions a read-only profile (or `--read-only`) refuses: their keys are hidden from the footer, and
# pressing one says why rather than doing nothing.
WRITE_ACTIONS = frozenset({"halt", "resume", "delete", "new", "new_run", "submit", "halt_rest", "upload",
                           "new_bucket", "priority"})


def refusal(screen: Screen, key: str, read_only: bool) -> str | None:
    """What pressing `key` on `screen` should say when none of its bindings there may run: that the
    profile is read-only, or why the action does not apply now (the screen's `why_not(action)`, e.g.
    halting a finished run). None when a binding takes the key, or none has it."""
    said = None
    for node, bindings in screen._modal_binding_chain:
        for binding in bindings.key_to_bindings.get(key, ()):
            try:
                _target, action, params = parse_action(binding.action)
            except Exception:
                continue
            if node.check_action(action, params) is not False:
                return None  # this binding takes the key
            if said is not None or not binding.description:
                continue
            if action in WRITE_ACTIONS and read_only:
                said = f"Read-only: {binding.description.lower()} is not allowed (read_only profile or --read-only)"
            elif callable(why := getattr(node, "why_not", None)):
                said = why(action)
    return said


def describe(screen: Screen) -> list[KeyHelp]:
    """Every binding `screen` answers to now, its focused widget's and the app's included, and the run
    keys (halt, resume, priority) its profile allows that do not apply to the selected run now."""
    seen: dict[tuple[str, str], KeyHelp] = {}
    for node, bindings in screen._modal_binding_chain:
        owner = type(node).__name__
        for key, binding_list in bindings.key_to_bindings.items():
            for binding in binding_list:
                # Only our own bindings carry ids; Textual's built-ins (scrolling, copy) do not.
                if not binding.description or binding.system or not binding.id:
                    continue
                ident = binding.id
                if (ident, owner) in seen:
                    seen[(ident, owner)] = KeyHelp(
                        f"{seen[(ident, owner)].keys}, {format_key(key)}", binding.description, ident, owner
                    )
                    continue
                try:
                    _target, action, params = parse_action(binding.action)
                    enabled = node.check_action(action, params)
                except Exception:
                    enabled = True
                # Not now (the selected run has finished, say) but on this profile: `?` still lists it.
                offered = getattr(node, "offers", None)
                if enabled is False and not (callable(offered) and offered(action)):
                    continue
                description = binding.description
                is_home = getattr(screen.app, "is_home", None)
                if binding.action == "back_or_quit" and is_home is not None and not is_home(screen):
                    description = "Back (quits from the runs table)"
                seen[(ident, owner)] = KeyHelp(format_key(key), description, ident, owner)
    return list(seen.values())
