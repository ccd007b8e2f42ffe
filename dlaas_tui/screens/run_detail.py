"""One run: Logs, Metrics, Manifest, Events and Cost, each loaded by a thread worker.

Logs always end up in a file the LogView tails: the engine's own log file when it has one
(`engine.log_path(run_id, learner)`, optional), else a private cache file that a worker fills from
`engine.logs()` (the tail first, then, for a finished run, the whole log in the background).
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.syntax import Syntax
from rich.text import Text
from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from backend.facade import RESUMABLE_STATES, LogFiles, MetricPoint, Run, RunEvent, RunState, private_dir, set_priority

from ..error_text import describe_error
from ..widgets.footer import KeysFooter
from ..widgets.command_bar import CommandBar
from ..widgets.header import StatusHeader
from ..widgets.log_view import LogView
from ..widgets.run_table import format_cost
from ..widgets.safe_text import data_text, visible, visible_lines
from . import run_actions
from .cost_view import cost_table

if TYPE_CHECKING:
    from ..screen_host import ScreenHost

TABS = ("logs", "metrics", "manifest", "events", "cost")
TAIL_FIRST = 5000
REFRESH_S = 2.0
SEARCH_HINT = "search (text or regex) · enter jumps, pausing follow · n/N next/prev"


def empty_log_note(run: Run) -> str:
    """What the Logs tab's status says while the run's log has no line, by the run's state."""
    if run.state == RunState.QUEUED:
        return "no log yet: the run has not started"
    if run.state.terminal:
        return "empty log" if run.admitted_at or run.started_at else "no log: the run never started"
    if run.state in (RunState.PENDING, RunState.DOWNLOADING):
        return "no log yet: the run is starting"
    return "empty log so far"


class RunDetailScreen(Screen):
    app: ScreenHost

    DEFAULT_CSS = """
    RunDetailScreen #summary { height: auto; padding: 0 1; background: $surface; }
    RunDetailScreen TabbedContent { height: 1fr; }
    RunDetailScreen TabPane { padding: 0; }
    RunDetailScreen #log-status { height: 1; padding: 0 1; background: $panel; color: $text-muted; }
    RunDetailScreen #log-box { height: 1fr; }
    RunDetailScreen LogView { height: 1fr; }
    RunDetailScreen #metrics-box { padding: 0 1; }
    RunDetailScreen .metric-plot { height: 14; min-height: 8; }
    RunDetailScreen .placeholder { color: $text-muted; padding: 1 2; }
    RunDetailScreen #manifest, RunDetailScreen #cost { padding: 0 1; }
    """
    BINDINGS = [
        Binding("1", "tab('logs')", "Logs", show=False, id="detail.logs"),
        Binding("2", "tab('metrics')", "Metrics", show=False, id="detail.metrics"),
        Binding("3", "tab('manifest')", "Manifest", show=False, id="detail.manifest"),
        Binding("4", "tab('events')", "Events", show=False, id="detail.events"),
        Binding("5", "tab('cost')", "Cost", show=False, id="detail.cost"),
        Binding("slash", "search", "Search", id="detail.search"),
        Binding("L", "next_learner", "Next learner", id="detail.learner"),
        # Only the run's actions that apply to it now are in the footer (check_action).
        Binding("ctrl+k", "halt", "Halt", id="detail.halt"),
        Binding("ctrl+e", "resume", "Resume", id="detail.resume"),
        Binding("p", "priority", "Priority", id="detail.priority"),
    ]

    def __init__(self, run_id: str, *, tab: str = "logs", learner: int = 0) -> None:
        super().__init__()
        self.run_id = run_id
        self.initial_tab = tab if tab in TABS else "logs"
        self.learner = learner
        self.run: Run | None = None
        self._metric_plots: dict[str, object] = {}
        # Held directly: TabbedContent mounts its panes after this screen's on_mount runs.
        self.log_view = LogView(save_name=f"{run_id}-learner-{learner}.log", id="log")
        self.events_table = DataTable(id="events-table", cursor_type="row", zebra_stripes=True)
        self.events_table.add_columns("TIME", "STATE", "CODE", "MESSAGE")
        self.summary = Static(Text(run_id), id="summary")
        self.log_status = Static("", id="log-status")
        self.search_bar = CommandBar(id="search-bar")
        self.manifest_view = Static("Loading…", id="manifest-text")
        self.cost_view = Static("Loading…", id="cost-text")
        self.metrics_box = VerticalScroll(id="metrics-box")
        self.metrics_empty = Static("No metrics reported yet.", classes="placeholder", id="metrics-empty")

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        yield self.summary
        with TabbedContent(initial=self.initial_tab):
            with TabPane("Logs", id="logs"):
                with Vertical(id="log-box"):
                    yield self.log_view
                    yield self.log_status
                    yield self.search_bar
            with TabPane("Metrics", id="metrics"):
                with self.metrics_box:
                    yield self.metrics_empty
            with TabPane("Manifest", id="manifest"):
                with VerticalScroll():
                    yield self.manifest_view
            with TabPane("Events", id="events"):
                yield self.events_table
            with TabPane("Cost", id="cost"):
                with VerticalScroll():
                    yield self.cost_view
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one(StatusHeader).set_where("run")  # its id is on the summary line below
        self.call_after_refresh(self._focus_tab, self.initial_tab)
        self._load()
        self._stream_logs()

    # ------------------------------------------------------------ tabs
    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        self.call_after_refresh(self._focus_tab, tab)

    def _focus_tab(self, tab: str) -> None:
        if tab == "logs":
            self.log_view.focus()
        elif tab == "events":
            self.events_table.focus()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            self._focus_tab(event.pane.id)

    # ------------------------------------------------------------ loading
    @work(thread=True, exclusive=True, group="detail-load", exit_on_error=False)
    def _load(self) -> None:
        worker = get_current_worker()
        manifest_loaded = False
        last_error = ""
        while not worker.is_cancelled:
            backend = self.app.backend
            try:
                engine = backend.engine
                run = engine.get_run(self.run_id)
                events = engine.events(self.run_id)
                metrics = engine.metrics(self.run_id)
                manifest = None
                if not manifest_loaded:
                    try:
                        manifest = engine.manifest_text(self.run_id)
                    except Exception as exc:
                        manifest = f"# manifest not available: {describe_error(exc)}"
                    manifest_loaded = True
                breakdown = cost_table(backend, run, events)
                if worker.is_cancelled:
                    return
                self.app.call_from_thread(self._show, run, events, metrics, manifest, breakdown)
                last_error = ""
                if run.state.terminal:
                    return
            except Exception as exc:
                message = f"{self.run_id}: {describe_error(exc)}"
                if message != last_error and not worker.is_cancelled:
                    last_error = message
                    self.app.call_from_thread(self.app.report_error, message)
            for _ in range(int(REFRESH_S * 10)):
                if worker.is_cancelled:
                    return
                time.sleep(0.1)

    def _show(self, run: Run, events: list[RunEvent], metrics: list[MetricPoint], manifest, breakdown) -> None:
        was = self.run
        self.run = run
        self.log_view.set_empty_note(empty_log_note(run))
        if was is None or was.state != run.state:
            # `L` shows only for runs with several learners; halt, resume and priority only where they apply
            self.refresh_bindings()
        self.summary.update(self._summary(run))
        if manifest is not None:
            syntax = Syntax(visible_lines(manifest), "yaml", line_numbers=True,
                            theme="ansi_dark" if self.app.current_theme.dark else "ansi_light",
                            background_color="default")
            self.manifest_view.update(syntax)
        table = self.events_table
        if table.row_count != len(events):
            table.clear()
            for event in events:
                table.add_row(
                    Text(event.at.strftime("%Y-%m-%d %H:%M:%S")),
                    Text(event.state.value if event.state else "·", style=self._state_style(event.state)),
                    Text(event.error_code or ""),
                    data_text(event.message),
                )
        self.cost_view.update(breakdown)
        self._show_metrics(metrics)

    def _summary(self, run: Run) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append(visible(run.name), style="bold")
        text.append(f"  {run.id}", style="dim")  # whole here: the runs table may show a prefix
        text.append("  ")
        text.append(run.state.value, style=self._state_style(run.state))
        if run.queue_position is not None:
            text.append(f"  queue {'~' if run.queue_position_approximate else ''}#{run.queue_position}")
        gpus = "cpu" if not run.gpus else f"{run.gpus}×{run.gpu_type or 'GPU'}"
        text.append(f"  {gpus}", style="dim")
        if run.assigned:
            text.append(f"  on {visible(', '.join(run.assigned))}", style="dim")
        if run.learners > 1:
            text.append(f"  learner {self.learner + 1} of {run.learners} (L)", style="dim")
        cost = format_cost(run)
        text.append(f"  cost {cost}")
        if run.state.value == "QUEUED" and run.message:  # why it waits, in the engine's words
            text.append("\n" + visible(run.message), style=self._state_style(run.state))
        elif run.error_code or run.message:
            text.append(f"\n{run.error_code or ''} {visible(run.message)}".rstrip(), style="bold red" if run.error_code else "")
        if run.depends_on:
            text.append(f"\ndepends on {', '.join(map(visible, run.depends_on))}", style="dim")
        return text

    def _show_metrics(self, metrics: list[MetricPoint]) -> None:
        if not metrics:
            return
        series: dict[str, tuple[list[float], list[float]]] = {}
        for point in metrics:
            xs, ys = series.setdefault(point.name, ([], []))
            xs.append(point.step if point.step is not None else float(len(xs)))
            ys.append(point.value)
        box = self.metrics_box
        self.metrics_empty.display = False
        try:
            from textual_plotext import PlotextPlot
        except ImportError:  # pragma: no cover - a declared dependency
            PlotextPlot = None  # noqa: N806 - the class, or None
        for name, (xs, ys) in series.items():
            plot = self._metric_plots.get(name)
            if plot is None:
                plot = PlotextPlot(classes="metric-plot") if PlotextPlot else Static(classes="metric-plot")
                self._metric_plots[name] = plot
                box.mount(plot)
            if PlotextPlot and isinstance(plot, PlotextPlot):
                plt = plot.plt
                plt.clear_data()
                plt.plot(xs, ys, marker="braille")
                plt.title(visible(name))
                plt.xlabel("step")
                plot.refresh()
            else:
                plot.update(Text(f"{visible(name)}: last {ys[-1]:.4g}"))

    # ------------------------------------------------------------ logs
    def _stream_logs(self) -> None:
        # A followed log blocks inside the engine until it has a line, which a Textual worker
        # cannot be cancelled out of; a daemon thread that checks a stop flag never holds up exit.
        self._log_stop = threading.Event()
        thread = threading.Thread(target=self._pump_logs, args=(self.app.backend, self._log_stop),
                                  name=f"logs-{self.run_id}", daemon=True)
        thread.start()

    def on_unmount(self) -> None:
        stop = getattr(self, "_log_stop", None)
        if stop is not None:
            stop.set()

    def _from_thread(self, stop: threading.Event, callback, *args) -> None:
        if stop.is_set():
            return
        try:
            self.app.call_from_thread(callback, *args)
        except RuntimeError:  # the app has gone
            stop.set()

    def _pump_logs(self, backend, stop: threading.Event) -> None:
        view = self.log_view
        try:
            engine = backend.engine
            path = engine.log_path(self.run_id, learner=self.learner) if isinstance(engine, LogFiles) else None
            if path is not None and Path(path).is_file():
                self._from_thread(stop, view.open, Path(path))
                return
            run = engine.get_run(self.run_id)
            self._from_thread(stop, view.set_empty_note, empty_log_note(run))
            cache = private_dir(backend.paths.cache_dir / "logs")
            target = cache / f"{self.run_id}-learner-{self.learner}.log"
            lines = engine.logs(self.run_id, learner=self.learner, tail=TAIL_FIRST, follow=not run.state.terminal)
            self._copy_lines(lines, target, stop, open_view=view.open)
            if run.state.terminal and not stop.is_set():
                # Now the whole log, so scroll-back reaches the first line; shown when complete.
                full = cache / f"{self.run_id}-learner-{self.learner}.full.log"
                if self._copy_lines(engine.logs(self.run_id, learner=self.learner), full, stop):
                    self._from_thread(stop, self._swap_log, full)
        except Exception as exc:
            self._from_thread(stop, self.app.report_error, f"Logs of {self.run_id}: {describe_error(exc)}")

    def _copy_lines(self, lines, target: Path, stop: threading.Event, *, open_view=None) -> bool:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        # Line-buffered: a followed log waits inside the engine between lines, and what came
        # before the wait must already be on screen.
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace", buffering=1) as fh:
            if open_view is not None:
                self._from_thread(stop, open_view, target)
            for line in lines:
                if stop.is_set():
                    return False
                fh.write(line if line.endswith("\n") else line + "\n")
        return True

    def _swap_log(self, path: Path) -> None:
        view = self.log_view
        if view.follow:
            view.open(path)

    def on_log_view_status_changed(self, event: LogView.StatusChanged) -> None:
        self.log_status.update(Text(event.status))

    def action_search(self) -> None:
        self.query_one(TabbedContent).active = "logs"
        self.search_bar.open("/", self.log_view.search_query, hint=SEARCH_HINT)

    def on_command_bar_typed(self, event: CommandBar.Typed) -> None:
        self.log_view.set_search(event.value, jump=False)

    def on_command_bar_entered(self, event: CommandBar.Entered) -> None:
        view = self.log_view
        view.set_search(event.value)
        view.focus()

    def on_command_bar_cancelled(self, event: CommandBar.Cancelled) -> None:
        view = self.log_view
        view.set_search("")
        view.focus()

    def _state_style(self, state) -> str:
        if state is None:
            return "dim"
        theme = self.app.current_theme
        return {
            "QUEUED": f"{theme.warning}",
            "PROCESSING": f"bold {theme.accent}",
            "COMPLETED": f"{theme.success}",
            "FAILED": f"bold {theme.error}",
            "HALTED": "dim",
        }.get(state.value, f"{theme.secondary or theme.primary}")

    # ------------------------------------------------------------ the run's actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("halt", "resume", "priority") and self.app.backend.read_only:
            return False
        if action in run_actions.RUN_ACTIONS:  # a finished run has nothing to halt: not offered
            if self.run is None:  # still loading: halting asks first, and says so if it has finished
                return action == "halt"
            return run_actions.available(self.app, action, self.run)
        if action == "next_learner":
            return self.run is not None and self.run.learners > 1
        return True

    def offers(self, action: str) -> bool:
        """`?` lists a run key the profile allows even while the run is past it."""
        return action in run_actions.RUN_ACTIONS and run_actions.offers(self.app, action)

    def why_not(self, action: str) -> str | None:
        """Why a run key does nothing for this run (said when it is pressed)."""
        if self.run is None and action in run_actions.RUN_ACTIONS:
            return f"{self.run_id} is not loaded yet"
        return run_actions.why_not(self.app, action, self.run)

    def palette_commands(self):
        """The command palette's entries for this run: the actions that apply to it now."""
        entries = (
            ("halt", f"Halt {self.run_id}", "Stop this run; its results so far are kept (asks first)"),
            ("resume", f"Resume {self.run_id}", "Queue this run's next attempt from its checkpoints (asks first)"),
            ("priority", f"Priority of {self.run_id}", "Move this queued run in the queue"),
        )
        for action, title, help_text in entries:
            if self.check_action(action, ()):
                yield SystemCommand(title, help_text, getattr(self, f"action_{action}"))

    def action_next_learner(self) -> None:
        if self.run is None or self.run.learners < 2:
            return
        self.learner = (self.learner + 1) % self.run.learners
        self._log_stop.set()
        self.log_view.save_name = f"{self.run_id}-learner-{self.learner}.log"
        self._stream_logs()
        self.summary.update(self._summary(self.run))
        self.notify(f"Learner {self.learner + 1} of {self.run.learners}", timeout=2, markup=False)

    def action_halt(self) -> None:
        from .confirm import ConfirmScreen

        if self.app.backend.read_only:
            self.app.report_error("Read-only: halt is not allowed")
            return
        if self.run is not None and self.run.state.terminal:
            self.notify(f"{self.run_id} has already finished", markup=False)
            return
        self.app.push_screen(
            ConfirmScreen(f"Halt {self.run_id}?", "Its results so far are kept.", confirm_label="Halt", danger=True),
            callback=lambda ok: self._halt() if ok else None,
        )

    @work(thread=True, group="detail-actions", exit_on_error=False)
    def _halt(self) -> None:
        backend = self.app.backend
        try:
            backend.require_writable("halt")
            backend.engine.halt(self.run_id)
        except Exception as exc:
            self.app.call_from_thread(self.app.report_error, f"Halting {self.run_id}: {describe_error(exc)}")
            return
        self.app.call_from_thread(self.notify, f"Halted {self.run_id}", markup=False)
        self.app.call_from_thread(self.app.poke_runs)
        self.app.call_from_thread(self._load)  # the summary line shows the new state now

    def action_resume(self) -> None:
        from .confirm import RESUME_DETAILS, ConfirmScreen

        if self.app.backend.read_only:
            self.app.report_error("Read-only: resume is not allowed")
            return
        if self.run is None or self.run.state not in RESUMABLE_STATES:
            state = self.run.state.value if self.run is not None else "not loaded yet"
            self.notify(f"{self.run_id} is {state}: only a halted or failed run can be resumed", markup=False)
            return
        self.app.push_screen(
            ConfirmScreen(f"Resume {self.run_id}?", RESUME_DETAILS, confirm_label="Resume"),
            callback=lambda ok: self._resume() if ok else None,
        )

    def action_priority(self) -> None:
        if self.app.backend.read_only:
            self.app.report_error("Read-only: priority is not allowed")
            return
        why = self.why_not("priority")
        if why or self.run is None:
            self.notify(why or f"{self.run_id} is not loaded yet", markup=False)
            return
        self.app.push_screen(run_actions.priority_prompt(self.app, self.run),
                             callback=lambda value: self._set_priority(value) if value else None)

    @work(thread=True, group="detail-actions", exit_on_error=False)
    def _set_priority(self, value: str) -> None:
        try:
            run = set_priority(self.app.backend, self.run_id, value)
        except Exception as exc:
            self.app.call_from_thread(self.app.report_error, run_actions.priority_error(self.run_id, exc))
            return
        self.app.call_from_thread(self.notify, run_actions.priority_done(run), markup=False)
        self.app.call_from_thread(self.app.poke_runs)
        self.app.call_from_thread(self._load)  # the summary line shows the new queue position

    @work(thread=True, group="detail-actions", exit_on_error=False)
    def _resume(self) -> None:
        backend = self.app.backend
        try:
            backend.require_writable("resume")
            backend.engine.resume(self.run_id)
        except Exception as exc:
            self.app.call_from_thread(self.app.report_error, f"Resuming {self.run_id}: {describe_error(exc)}")
            return
        self.app.call_from_thread(self._resumed)

    def _resumed(self) -> None:
        self.notify(f"Resumed {self.run_id}", markup=False)
        self.app.poke_runs()  # every header counts it as queued now
        # The run is live again: follow its state and its log, which the attempt appends to.
        self._load()
        self._log_stop.set()
        self._stream_logs()

