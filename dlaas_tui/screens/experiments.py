"""`:experiments` — the experiments, one's leaderboard with a column per parameter, and the metric
curves of its runs overlaid.

Runs are named the same in the leaderboard and in the chart's legend, which sits under the chart
(plotext's own legend is drawn over the curves). Below 100 columns the leaderboard has the width
to itself and `c` swaps it for the chart; at 100 and more `c` hides or shows the chart.

The engine is read in a thread worker every few seconds (any engine: it only needs `list_runs` and
`metrics`); the UI thread only renders. `enter` on a leaderboard row opens that run; `H` halts every
run of the experiment still going except the highlighted one ("halt the rest"), after a confirmation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Static
from textual.worker import get_current_worker

from backend.facade import experiment_summaries, halt_candidates, leaderboard

from ..widgets.footer import KeysFooter
from ..widgets.header import StatusHeader
from ..widgets.safe_text import visible

REFRESH_S = 2.0
MAX_CURVES = 12  # the best runs' curves; more would be unreadable in a terminal plot
NARROW = 100  # below this many columns the leaderboard and the chart take turns (`c`)
# One colour per curve, the same in the chart and its legend (RGB: plotext and Rich agree on it).
PALETTE = ((97, 175, 239), (229, 192, 123), (152, 195, 121), (224, 108, 117), (198, 120, 221),
           (86, 182, 194), (209, 154, 102), (190, 190, 190), (255, 121, 198), (139, 233, 253),
           (80, 250, 123), (241, 250, 140))


@dataclass
class Snapshot:
    summaries: list[dict[str, Any]]
    board: Any = None  # a Leaderboard of the selected experiment
    curves: dict[str, tuple[str, list[float], list[float]]] = field(default_factory=dict)
    error: str = ""


def _param(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _value(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _cost(usd: float | None) -> str:
    if usd is None:
        return "unpriced"
    return f"${usd:.4f}" if 0 < usd < 0.01 else f"${usd:,.2f}"  # as the runs table: never a false $0.00


class ExperimentsScreen(Screen):
    DEFAULT_CSS = """
    ExperimentsScreen { layout: vertical; }
    #exp-header { height: 1; padding: 0 1; background: $panel; }
    #experiments { height: auto; max-height: 8; overflow-x: hidden; }  /* STATES, last, is cut */
    #exp-summary { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    #exp-body { height: 1fr; }
    #leaderboard { width: 3fr; }
    #curves-box { width: 2fr; min-width: 30; padding-left: 1; }
    #curves { height: 1fr; }
    #legend { height: auto; max-height: 4; }
    ExperimentsScreen.-narrow #curves-box { display: none; }
    ExperimentsScreen.-narrow.-swapped #curves-box { display: block; width: 1fr; padding-left: 0; }
    ExperimentsScreen.-narrow.-swapped #leaderboard { display: none; }
    ExperimentsScreen.-swapped #curves-box { display: none; }
    """
    BINDINGS = [
        Binding("enter", "open", "Open", id="experiments.open"),
        Binding("H", "halt_rest", "Halt the rest", id="experiments.halt_rest"),
        Binding("c", "swap_curves", "Curves", id="experiments.curves"),
        Binding("r", "refresh", "Refresh", id="experiments.refresh"),
        Binding("escape", "back", "Back", show=False, id="experiments.back"),  # `q Back` is in the footer
    ]

    def __init__(self, experiment: str | None = None) -> None:
        super().__init__()
        self.selected: str | None = experiment
        self.snapshot: Snapshot | None = None
        self._board_keys: list[str] = []
        self._exp_keys: list[str] = []
        self._exp_cells: list[tuple] = []

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header", where="experiments")
        yield Static("Experiments", id="exp-header")
        yield DataTable(id="experiments", cursor_type="row", zebra_stripes=True)
        yield Static("", id="exp-summary")
        with Horizontal(id="exp-body"):
            yield DataTable(id="leaderboard", cursor_type="row", zebra_stripes=True)
            with Vertical(id="curves-box"):
                yield self._plot_widget()
                yield Static("", id="legend")
        yield KeysFooter()

    @staticmethod
    def _plot_widget():
        try:
            from textual_plotext import PlotextPlot
        except ImportError:  # pragma: no cover - a declared dependency
            return Static("", id="curves")
        return PlotextPlot(id="curves")

    def on_resize(self) -> None:
        self.set_class(self.size.width < NARROW, "-narrow")

    def action_swap_curves(self) -> None:
        """Narrow: the chart in place of the leaderboard and back. Wide: hide or show the chart."""
        self.toggle_class("-swapped")

    def on_mount(self) -> None:
        self.set_class(self.app.size.width < NARROW, "-narrow")
        exps = self.query_one("#experiments", DataTable)
        # STATES last: the widest and most varied, it is what a narrow terminal cuts, not BEST or COST.
        for label in ("EXPERIMENT", "RUNS", "BEST", "COST", "STATES"):
            exps.add_column(label, key=label.lower())
        exps.focus()
        self.action_refresh()
        self.set_interval(REFRESH_S, self.action_refresh)

    # ------------------------------------------------------------ data (thread)
    def action_refresh(self) -> None:
        self._load(self.selected)

    @work(thread=True, exclusive=True, group="experiments", exit_on_error=False)
    def _load(self, selected: str | None) -> None:
        worker = get_current_worker()
        try:
            engine = self.app.backend.engine
            snap = Snapshot(experiment_summaries(engine.list_runs()))
            if selected is None and snap.summaries:
                selected = snap.summaries[0]["id"]
            if selected is not None:
                runs = engine.list_runs(experiment=selected)
                if runs:
                    snap.board = leaderboard(selected, runs, goal=runs[0].metric_goal)
                    snap.curves = self._curves(engine, snap.board)
        except Exception as exc:  # say it, keep the screen
            snap = Snapshot([], error=str(exc))
        if not worker.is_cancelled:
            self.app.call_from_thread(self._apply, snap)

    @staticmethod
    def _curves(engine, board) -> dict[str, tuple[str, list[float], list[float]]]:
        if not board.metric:
            return {}
        out = {}
        for row in board.rows[:MAX_CURVES]:
            xs: list[float] = []
            ys: list[float] = []
            for p in engine.metrics(row.run.id):
                if p.name == board.metric and p.learner <= 1 and p.value == p.value:
                    xs.append(p.step if p.step is not None else float(len(xs) + 1))
                    ys.append(p.value)
            if xs:
                out[row.run.id] = (row.run.name, xs, ys)
        return out

    # ------------------------------------------------------------ rendering (UI thread)
    def _apply(self, snap: Snapshot) -> None:
        self.snapshot = snap
        if snap.error:
            self.app.report_error(f"Experiments: {snap.error}")
            return
        self._fill_experiments(snap)
        self._fill_board(snap)
        self._draw_curves(snap)

    def _fill_experiments(self, snap: Snapshot) -> None:
        table = self.query_one("#experiments", DataTable)
        keys = [s["id"] for s in snap.summaries]
        cells = []
        for s in snap.summaries:
            states = " ".join(f"{k.lower()}:{v}" for k, v in sorted(s["counts"].items()))
            best = f"{s['metric']}={_value(s['best_value'])}" if s["metric"] else "-"
            cells.append((visible(s["id"]), str(s["runs"]), visible(best), _cost(s["cost_usd"]), states))
        header = (f"Experiments ({len(keys)})" if keys else
                  "Experiments: none yet (submit a manifest with a sweep, or use --experiment)")
        self.query_one("#exp-header", Static).update(header)
        if cells == self._exp_cells:
            return  # unchanged: leave the table (and its cursor) alone
        self._exp_cells = cells
        current = self._exp_keys[table.cursor_row] if 0 <= table.cursor_row < len(self._exp_keys) else None
        self._exp_keys = keys
        table.clear()
        for key, row in zip(keys, cells):
            table.add_row(*(Text(c) for c in row), key=key)
        keep = self.selected if self.selected in keys else current
        if keep in keys:
            table.move_cursor(row=keys.index(keep))

    def _fill_board(self, snap: Snapshot) -> None:
        table = self.query_one("#leaderboard", DataTable)
        summary = self.query_one("#exp-summary", Static)
        board = snap.board
        current = self._board_keys[table.cursor_row] if 0 <= table.cursor_row < len(self._board_keys) else None
        table.clear(columns=True)
        self._board_keys = []
        if board is None:
            summary.update("")
            return
        self.selected = board.experiment
        metric = board.metric or "metric"
        # Runs by name, as the chart's legend names them; enter opens the run (its id is the row key).
        for label in ("RANK", "NAME", "STATE", metric.upper(), *[p.upper() for p in board.parameters]):
            table.add_column(Text(visible(label)))
        for row in board.rows:
            rank = Text(f"{row.rank or '-'}{'*' if row.best else ''}", style="bold" if row.best else "")
            params = [Text(visible(_param(row.run.params.get(p, "")))) for p in board.parameters]
            table.add_row(rank, Text(visible(row.run.name)), row.run.state.value, _value(row.value), *params,
                          key=row.run.id)
            self._board_keys.append(row.run.id)
        if current in self._board_keys:
            table.move_cursor(row=self._board_keys.index(current))
        total = sum(board.counts.values())
        states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(board.counts.items()))
        cost = None if board.cost_micro_usd is None else board.cost_micro_usd / 1e6
        best = f"; best {board.best.run.name} ({board.best.run.id})" if board.best else ""
        summary.update(Text(visible(
            f"{board.experiment}: {total} runs ({states}); ranked by {metric} ({board.goal}); "
            f"cost {_cost(cost)}{best}")))

    def _draw_curves(self, snap: Snapshot) -> None:
        plot = self.query_one("#curves")
        plt = getattr(plot, "plt", None)
        board = snap.board
        if plt is None:
            plot.update(f"{len(snap.curves)} curves")
            return
        plt.clear_data()
        plt.clear_figure()
        legend = Text(no_wrap=False, end="")
        for i, (_rid, (name, xs, ys)) in enumerate(snap.curves.items()):
            color = PALETTE[i % len(PALETTE)]
            plt.plot(xs, ys, marker="braille", color=color)  # no plotext legend: it covers the curves
            if i:
                legend.append("  ")
            legend.append("■", style=f"rgb({color[0]},{color[1]},{color[2]})")  # no space: wraps with its name
            legend.append(visible(name))
        n = len(snap.curves)
        plt.title(visible(f"{board.metric} of {n} run{'' if n == 1 else 's'}") if board and board.metric
                  else "no metric reported yet")
        plt.xlabel("step")
        plot.refresh()
        self.query_one("#legend", Static).update(legend)

    # ------------------------------------------------------------ keys
    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        # Where the cursor is now, not where the event says: a refill highlights row 0 on the way.
        table = event.data_table
        if table.id == "experiments" and 0 <= table.cursor_row < len(self._exp_keys):
            chosen = self._exp_keys[table.cursor_row]
            if chosen != self.selected:
                self.selected = chosen
                self._load(chosen)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.data_table.id == "leaderboard" and event.row_key is not None:
            self.app.open_run(event.row_key.value)
        elif event.data_table.id == "experiments":
            self.query_one("#leaderboard", DataTable).focus()

    def action_open(self) -> None:
        table = self.query_one("#leaderboard", DataTable)
        if self._board_keys and 0 <= table.cursor_row < len(self._board_keys):
            self.app.open_run(self._board_keys[table.cursor_row])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "halt_rest" and self.app.backend.read_only:
            return False
        return True

    def action_halt_rest(self) -> None:
        board = self.snapshot.board if self.snapshot else None
        if board is None:
            return
        table = self.query_one("#leaderboard", DataTable)
        keep = None
        if self._board_keys and 0 <= table.cursor_row < len(self._board_keys):
            keep = self._board_keys[table.cursor_row]
        targets = halt_candidates([r.run for r in board.rows], keep)
        if not targets:
            self.notify("Nothing else of this experiment is running or queued", markup=False)
            return
        from .confirm import ConfirmScreen

        details = (f"Halt {len(targets)} run(s) of {board.experiment} still queued or running"
                   + (f", keeping {keep}" if keep else "") + "?\n" + "\n".join(targets[:10])
                   + ("\n…" if len(targets) > 10 else ""))
        self.app.push_screen(
            ConfirmScreen("Halt the rest?", details, confirm_label="Halt", danger=True),
            callback=lambda ok: ok and self._halt(targets))

    @work(thread=True, group="experiments-halt", exit_on_error=False)
    def _halt(self, run_ids: list[str]) -> None:
        engine = self.app.backend.engine
        failed = []
        for rid in run_ids:
            try:
                engine.halt(rid)
            except Exception as exc:
                failed.append(f"{rid}: {exc}")
        halted = len(run_ids) - len(failed)
        self.app.call_from_thread(self.notify, f"Halt requested for {halted} run(s)", markup=False)
        for message in failed:
            self.app.call_from_thread(self.app.report_error, message)
        self.app.call_from_thread(self.action_refresh)

    def action_back(self) -> None:
        self.app.pop_screen()

