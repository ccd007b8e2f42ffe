"""The home screen: the live runs table, fed once a second by `engine.changes(cursor)`.

A thread worker asks the engine what changed, keeps its own copy of every run to work out the
header (queued, running, spend today) off the UI thread, and hands the ChangeSet to the UI, which
only merges and renders. Backend errors become notifications; the feed keeps trying.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.app import SystemCommand
from textual.screen import Screen
from textual.worker import get_current_worker

from backend.facade import (
    ACTIVE_STATES,
    RESUMABLE_STATES,
    TERMINAL_STATES,
    ChangeSet,
    QueueHead,
    Run,
    RunState,
    set_priority,
    spending,
)

from ..error_text import describe_error
from ..notices import announce, notices, run_ends, sweep_ends
from ..widgets.footer import KeysFooter
from ..widgets.command_bar import CommandBar
from ..widgets.filter_line import FilterLine
from ..widgets.header import HeaderStats, StatusHeader
from ..widgets.run_table import DEFAULT_SORT, Prepared, RunTable, prepare
from ..widgets.safe_text import visible
from . import run_actions
from .confirm import RESUME_DETAILS, ConfirmScreen

if TYPE_CHECKING:
    from backend.facade import Backend, Inventory

    from ..screen_host import ScreenHost


# Engines whose listing is a cheap local read: the first screenful is read and shown before all runs.
FIRST_PAGE_ENGINES = frozenset({"local", "fake"})
FIRST_PAGE = 120  # rows of each kind (queued, finished) when the screen's height is not known


def first_page(engine, rows: int = FIRST_PAGE) -> list[Run]:
    """The top of the table's default order without reading every run: what is running, the head
    of the queue, and the newest finished runs (`rows` of each: a screen shows no more)."""
    live = [s for s in ACTIVE_STATES if s is not RunState.QUEUED]
    runs = engine.list_runs(states=live)
    runs += engine.queue_head(rows) if isinstance(engine, QueueHead) else engine.list_runs(
        states=[RunState.QUEUED])
    runs += engine.list_runs(states=sorted(TERMINAL_STATES), limit=rows)
    return runs


def read_first_page(backend, sort_key: str | None = None, rows: int = FIRST_PAGE) -> tuple[list[Run], Prepared] | None:
    """The first screenful and its prepared rows, for engines whose listing is a cheap local read;
    None otherwise or on any error (the feed's full read then says what is wrong)."""
    try:
        engine = backend.engine
        if getattr(engine, "name", "") not in FIRST_PAGE_ENGINES:
            return None
        page = first_page(engine, rows)
        return page, prepare(page, sort_key or DEFAULT_SORT[0])
    except Exception:
        return None


def screen_rows(app) -> int:
    """Rows of each kind a first screenful needs: the terminal's height (not yet known: FIRST_PAGE)."""
    height = app.size.height
    return min(FIRST_PAGE, max(24, height)) if height > 0 else FIRST_PAGE


def halt_then_delete(engine, run_id: str, wait_s: float = 15.0) -> None:
    """Engines delete only finished runs; the user confirmed deleting a running one, so halt it."""
    if not engine.get_run(run_id).state.terminal:
        engine.halt(run_id)
        deadline = time.monotonic() + wait_s
        while not engine.get_run(run_id).state.terminal and time.monotonic() < deadline:
            time.sleep(0.2)  # a real process takes a moment to stop
    engine.delete(run_id)


class RunsScreen(Screen):
    app: ScreenHost

    BINDINGS = [
        Binding("slash", "filter", "Filter", id="runs.filter"),
        Binding("l", "logs", "Logs", id="runs.logs"),
        # The selected run's actions: only those that apply to it are in the footer (check_action).
        Binding("ctrl+k", "halt", "Halt", id="runs.halt"),
        Binding("ctrl+e", "resume", "Resume", id="runs.resume"),
        Binding("p", "priority", "Priority", id="runs.priority"),
        Binding("n", "new", "New run", id="runs.new"),
        Binding("ctrl+d", "delete", "Delete", id="runs.delete"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="runs.clear_filter"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._wake = threading.Event()
        self._loaded = False
        self._offered_for: tuple | None = None  # (run id, state, priority offered) the footer was built for
        self._feeds = 0  # restarts so far: a feed start deferred past a newer restart is dropped

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        yield RunTable(clock=self.app.clock, id="runs")
        yield FilterLine(noun="runs", id="filter-line")
        yield KeysFooter()

    def on_mount(self) -> None:
        self._table = self.query_one(RunTable)  # the feed thread reads its sort key
        self._table.focus()
        self.query_one(StatusHeader).set_where("runs")
        if self.app.backend_ready:
            self.restart_feed()  # else the app starts it once its backend is open (after this frame)

    # ------------------------------------------------------------ the feed
    def restart_feed(self) -> None:
        """(Re)start reading runs from the app's current backend, e.g. after `:profile`."""
        self._loaded = False
        self._feeds += 1
        table = self.query_one(RunTable)
        # The app reads the first screenful in the thread that opened the backend: shown at once.
        page, self.app.first_page = self.app.first_page, None
        if page is None:
            table.apply([], full=True)
            self._feed(self.app.backend, self.app.poll_interval, True)
            return
        table.apply(page[0], full=True, prepared=page[1])
        # The full read (10,000 runs: half a second of a thread that holds the GIL most of the time)
        # starts once this screenful is on the screen, not while it is being drawn.
        self.call_after_refresh(self._start_feed, self._feeds, self.app.backend)

    def _start_feed(self, feeds: int, backend: Backend) -> None:
        if feeds == self._feeds:  # no newer restart (a profile switch) since
            self._feed(backend, self.app.poll_interval, False)

    def poke(self) -> None:
        """Ask the feed for changes now rather than at the next tick."""
        self._wake.set()

    @work(thread=True, exclusive=True, group="runs-feed", exit_on_error=False)
    def _feed(self, backend: Backend, interval: float, first: bool = True) -> None:
        worker = get_current_worker()
        cursor: int | None = None
        mirror: dict[str, Run] = {}
        inventory: Inventory | None = None
        inventory_at = 0.0
        last_error = ""
        table = self._table
        if first:  # 10,000 runs take a while to read and build: the first screenful is shown first
            page = read_first_page(backend, table.sort_key, screen_rows(self.app))
            if page is not None and not worker.is_cancelled:
                self.app.call_from_thread(self._apply_page, *page)
        while not worker.is_cancelled:
            try:
                engine = backend.engine
                changes = engine.changes(cursor)
                cursor = changes.cursor
                ended = run_ends(mirror, changes.runs)  # empty on the first load: no mirror yet
                if changes.full:
                    mirror.clear()
                for run in changes.runs:
                    mirror[run.id] = run
                for run_id in changes.deleted:
                    mirror.pop(run_id, None)
                said = notices(ended, sweep_ends(mirror, ended)) if ended else []
                if inventory is None or time.monotonic() - inventory_at > 5:
                    inventory_at = time.monotonic()
                    try:
                        inventory = engine.inventory()
                    except Exception:  # the table matters more than the GPU count
                        inventory = None
                prepared = prepare(changes.runs, table.sort_key) if changes.full else None
                if prepared is not None and not worker.is_cancelled:
                    self.app.call_from_thread(self._apply, changes, None, prepared)  # rows before figures
                stats = self._stats(backend, mirror.values(), inventory)
                if worker.is_cancelled:
                    return
                self.app.call_from_thread(self._apply, changes if prepared is None else None, stats)
                if said:
                    self.app.call_from_thread(self._announce, said)
                last_error = ""
            except Exception as exc:  # never let the feed die: say what is wrong and keep trying
                message = describe_error(exc)
                if message != last_error and not worker.is_cancelled:
                    last_error = message
                    try:
                        self.app.call_from_thread(self.app.report_error, message)
                    except RuntimeError:
                        return  # the app is closing
            # Short waits, so a cancelled feed (screen gone, app closing) ends within 0.1 s.
            deadline = time.monotonic() + interval
            while not worker.is_cancelled and not self._wake.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
                if time.monotonic() >= deadline:
                    break
            self._wake.clear()

    def _stats(self, backend: Backend, runs, inventory: Inventory | None) -> HeaderStats:
        runs = list(runs)
        queued = sum(1 for r in runs if r.state is RunState.QUEUED)
        running = sum(1 for r in runs if r.state.billed)
        profile = backend.profile
        budget = spending(backend, runs, self.app.clock())
        total = None
        tier_gpus = None
        label = "GPUs"
        if inventory is not None:
            if inventory.devices and all(d.is_cpu_slot for d in inventory.devices):
                label = "CPU slots"
            total = inventory.gpu_count
            tier_gpus = inventory.tier_gpus
            if inventory.tier_gpus:
                total = min(total, inventory.tier_gpus) if total else inventory.tier_gpus
        return HeaderStats(
            profile=profile.name,
            engine=profile.scheduler if profile.store == "local" else f"{profile.scheduler}+{profile.store}",
            tier=profile.tier,
            tier_gpus=tier_gpus,
            gpus_in_use=inventory.in_use if inventory is not None else None,
            gpus_total=total,
            devices_label=label,
            queued=queued,
            running=running,
            spend_today_usd=budget.spent_today,
            committed_usd=budget.committed,
            read_only=backend.read_only,
            budget_daily_usd=profile.budget.daily_usd,
            budget_warning=budget.warning,
        )

    def _apply_page(self, runs: list[Run], prepared: Prepared) -> None:
        if not self._loaded:  # the full read may have come first
            self.query_one(RunTable).apply(runs, full=True, prepared=prepared)

    def _apply(self, changes: ChangeSet | None, stats: HeaderStats | None, prepared: Prepared | None = None) -> None:
        table = self.query_one(RunTable)
        if changes is not None and (changes.runs or changes.deleted or changes.full or not self._loaded):
            table.apply(changes.runs, changes.deleted, full=changes.full, prepared=prepared)
            self._loaded = True
        if stats is not None:
            table.tick()
            self.app.publish_header_stats(stats)  # every screen's header, not only this one's
        if self.query_one(FilterLine).query_text:
            self.query_one(FilterLine).set_counts(table.row_count, table.total_count)
        self._sync_bindings()

    def _announce(self, said) -> None:
        """Runs or sweeps ended: a toast each, and the bell or a desktop notification ([notify] terminal)."""
        import os

        try:
            setting = self.app.backend.config.notify.terminal
        except Exception:  # a config without the table (an older one in memory): the default
            setting = "auto"
        announce(self.app, said, setting, os.environ)

    # ------------------------------------------------------------ keys
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("halt", "resume", "delete", "new", "priority") and self.app.read_only:
            return False
        if action in run_actions.RUN_ACTIONS:  # only what applies to the selected run
            return run_actions.available(self.app, action, self._current())
        return True

    def offers(self, action: str) -> bool:
        """`?` lists a run key the profile allows even while the selected run is past it."""
        return action in run_actions.RUN_ACTIONS and run_actions.offers(self.app, action)

    def why_not(self, action: str) -> str | None:
        """Why a run key does nothing for the selected run (said when it is pressed)."""
        return run_actions.why_not(self.app, action, self._current())

    def _sync_bindings(self) -> None:
        """The footer and the palette follow the selected run: another run, or a new state."""
        run = self._current()
        offered = (run.id if run else None, run.state if run else None, run_actions.priority_offered(self.app))
        if offered != self._offered_for:
            self._offered_for = offered
            self.refresh_bindings()

    def _current(self) -> Run | None:
        """The selected run (None before the table is there, or while it is empty)."""
        try:
            return self.query_one(RunTable).selected_run
        except NoMatches:
            return None

    def on_run_table_cursor_moved(self, event: RunTable.CursorMoved) -> None:
        self._sync_bindings()

    def palette_commands(self):
        """The command palette's entries for the selected run: the actions that apply to it now."""
        run = self._current()
        if run is None:
            return
        entries = (
            ("logs", f"Logs of {run.id}", "The selected run's log"),
            ("halt", f"Halt {run.id}", "Stop the selected run; its results so far are kept (asks first)"),
            ("resume", f"Resume {run.id}", "Queue the selected run's next attempt from its checkpoints (asks first)"),
            ("priority", f"Priority of {run.id}", "Move the selected queued run in the queue"),
            ("delete", f"Delete {run.id}", "Remove the selected run's record and logs (asks first)"),
        )
        for action, title, help_text in entries:
            if self.check_action(action, ()):
                yield SystemCommand(title, help_text, getattr(self, f"action_{action}"))

    def action_filter(self) -> None:
        self.query_one(FilterLine).edit()

    def _filter(self, query: str) -> bool:
        table = self.query_one(RunTable)
        ok = table.set_filter(query)
        self.query_one(FilterLine).set_query(query, table.row_count, table.total_count)
        self._sync_bindings()  # the selected run may be another one now
        return ok

    def on_command_bar_typed(self, event: CommandBar.Typed) -> None:
        if event.mode == "/":
            self._filter(event.value)

    def on_command_bar_entered(self, event: CommandBar.Entered) -> None:
        if not self._filter(event.value) and event.value:
            self.notify("Not a valid regex: filtering on the text as typed", severity="warning", markup=False)
        self.query_one(RunTable).focus()

    def on_command_bar_cancelled(self, event: CommandBar.Cancelled) -> None:
        self._filter("")
        self.query_one(RunTable).focus()

    def action_clear_filter(self) -> None:
        if self.query_one(FilterLine).query_text:
            self._filter("")

    def _selected(self) -> Run | None:
        run = self.query_one(RunTable).selected_run
        if run is None:
            self.notify("No run selected", severity="warning", markup=False)
        return run

    def on_run_table_selected(self, event: RunTable.Selected) -> None:
        self.app.open_run(event.run.id, tab="events")

    def action_logs(self) -> None:
        run = self._selected()
        if run is not None:
            self.app.open_run(run.id, tab="logs")

    def action_new(self) -> None:
        self.app.action_new_run()

    def action_halt(self) -> None:
        run = self._selected()
        if run is None or not self._writable("halt"):
            return
        if run.state.terminal:
            self.notify(f"{run.id} has already finished ({run.state.value})", markup=False)
            return
        details = f"{visible(run.name)}\nstate {run.state.value}, {run.gpus} GPU(s). Its results so far are kept."
        self.app.push_screen(
            ConfirmScreen(f"Halt {run.id}?", details, confirm_label="Halt", danger=True),
            callback=lambda ok: self._halt(run.id) if ok else None,
        )

    def action_resume(self) -> None:
        run = self._selected()
        if run is None or not self._writable("resume"):
            return
        if run.state not in RESUMABLE_STATES:
            self.notify(f"{run.id} is {run.state.value}: only a halted or failed run can be resumed", markup=False)
            return
        self.app.push_screen(
            ConfirmScreen(f"Resume {run.id}?", f"{visible(run.name)}\n{RESUME_DETAILS}", confirm_label="Resume"),
            callback=lambda ok: self._resume(run.id) if ok else None,
        )

    @work(thread=True, group="runs-actions", exit_on_error=False)
    def _resume(self, run_id: str) -> None:
        self._engine_call(f"Resuming {run_id}", lambda e: e.resume(run_id), f"Resumed {run_id}", "resume")

    def action_priority(self) -> None:
        run = self._selected()
        if run is None or not self._writable("priority"):
            return
        why = run_actions.why_not(self.app, "priority", run)
        if why:
            self.notify(why, markup=False)
            return
        self.app.push_screen(run_actions.priority_prompt(self.app, run),
                             callback=lambda value: self._set_priority(run.id, value) if value else None)

    @work(thread=True, group="runs-actions", exit_on_error=False)
    def _set_priority(self, run_id: str, value: str) -> None:
        try:
            run = set_priority(self.app.backend, run_id, value)
        except Exception as exc:
            self.app.call_from_thread(self.app.report_error, run_actions.priority_error(run_id, exc))
            return
        self.app.call_from_thread(self.notify, run_actions.priority_done(run), markup=False)
        self.poke()

    def action_delete(self) -> None:
        run = self._selected()
        if run is None or not self._writable("delete"):
            return
        active = "" if run.state.terminal else " It is still running and will be halted first."
        details = f"{visible(run.name)}\nIts record and logs go; its results bucket is left as it is.{active}"
        self.app.push_screen(
            ConfirmScreen(f"Delete {run.id}?", details, confirm_label="Delete", danger=True),
            callback=lambda ok: self._delete(run.id) if ok else None,
        )

    def _writable(self, what: str) -> bool:
        if self.app.backend.read_only:
            self.notify(f"Read-only: {what} is not allowed", severity="error", markup=False)
            return False
        return True

    @work(thread=True, group="runs-actions", exit_on_error=False)
    def _halt(self, run_id: str) -> None:
        self._engine_call(f"Halting {run_id}", lambda e: e.halt(run_id), f"Halted {run_id}", "halt")

    @work(thread=True, group="runs-actions", exit_on_error=False)
    def _delete(self, run_id: str) -> None:
        self._engine_call(f"Deleting {run_id}", lambda e: halt_then_delete(e, run_id), f"Deleted {run_id}", "delete")

    def _engine_call(self, doing: str, call, done: str, what: str) -> None:
        backend = self.app.backend
        try:
            backend.require_writable(what)
            call(backend.engine)
        except Exception as exc:
            self.app.call_from_thread(self.app.report_error, f"{doing}: {describe_error(exc)}")
            return
        self.app.call_from_thread(self.notify, done, markup=False)
        self.poke()
