"""What a user may do to one run (halt, resume, change its priority) and why not, for the runs table and
the run detail alike.

Both screens offer in their footer, command palette and bindings only what applies to the selected
run (`check_action`), list in `?` every run key the profile allows whatever the run (`offers`), and a
key pressed for an action that does not apply says why in one notice (`why_not`, read by the app).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from textual.suggester import SuggestFromList

from backend.facade import RESUMABLE_STATES, RunState, offers_priority, priority_choices, priority_numbers

from ..error_text import describe_error
from ..keymap import WRITE_ACTIONS
from ..widgets.safe_text import visible
from .prompts import InputPrompt

if TYPE_CHECKING:
    from backend.facade import Run

# The actions that depend on the selected run's state.
RUN_ACTIONS = frozenset({"halt", "resume", "priority"})


def priority_offered(app) -> bool:
    """Whether the open profile's engine can change a queued run's priority (never opens it)."""
    return bool(app.backend_ready and offers_priority(app.backend))


def offers(app, action: str) -> bool:
    """Whether a screen with run actions offers `action` at all on this profile, whatever the run."""
    if action in WRITE_ACTIONS and app.read_only:
        return False
    if action == "priority":
        return priority_offered(app)
    return True


def why_not(app, action: str, run: Run | None) -> str | None:
    """Why `action` does not apply to `run` now, in one short sentence naming the run; None if it does
    (or if it is not a run action). Read-only refusals are the app's to say."""
    if action not in RUN_ACTIONS:
        return None
    if action == "priority" and not priority_offered(app):
        engine = app.backend.profile.scheduler if app.backend_ready else "this"
        return f"The {engine} engine cannot change a queued run's priority"
    if run is None:
        return "No run selected"
    state = run.state.value
    if action == "halt" and run.state.terminal:
        return f"{run.id} has already finished ({state}): nothing to halt"
    if action == "resume" and run.state not in RESUMABLE_STATES:
        return f"{run.id} is {state}: only a halted or failed run can be resumed"
    if action == "priority" and run.state is not RunState.QUEUED:
        return f"{run.id} is {state}: only a queued run's priority can be changed"
    return None


def available(app, action: str, run: Run | None) -> bool:
    return offers(app, action) and why_not(app, action, run) is None


# ------------------------------------------------------------------ priority
def priority_prompt(app, run: Run) -> InputPrompt:
    """Ask for a priority: a name from the config's priorities (tab completes) or, where the engine
    takes one, a whole number."""
    choices = sorted(priority_choices(app.backend).items(), key=lambda kv: -kv[1])
    names = ", ".join(f"{name} ({value})" for name, value in choices)
    number = ", or a whole number" if priority_numbers(app.backend) else ""
    return InputPrompt(
        f"Priority of {run.id} ({visible(run.name)}), now {visible(run.priority)}",
        hint=f"Higher starts first: {names}{number}. tab completes, enter sets, esc cancels",
        suggester=SuggestFromList([name for name, _ in choices], case_sensitive=False),
    )


def priority_done(run: Run) -> str:
    """What a priority change did: the run's new place in the queue."""
    if run.state is RunState.QUEUED and run.queue_position is not None:
        approximate = "~" if run.queue_position_approximate else ""
        return f"{run.id}: priority {visible(run.priority)}, queue position {approximate}#{run.queue_position}"
    return f"{run.id}: priority {visible(run.priority)}; it is {run.state.value} now"


def priority_error(run_id: str, exc: BaseException) -> str:
    message = describe_error(exc)
    return message if run_id in message else f"Priority of {run_id}: {message}"
