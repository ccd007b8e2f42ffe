"""Pilot tests of `:experiments`: the list, the leaderboard with parameter columns, the overlaid
curves, enter to a run, and halt the rest with its confirmation."""
from __future__ import annotations

from datetime import timedelta

from backend.facade import MetricPoint, Run, RunState

from dlaas_tui.screens.confirm import ConfirmScreen
from dlaas_tui.screens.experiments import ExperimentsScreen

from .screens_harness import T0, HarnessApp, make_backend, screen_text


async def settle(pilot, rounds: int = 4) -> None:
    """Let the loads finish; a load replaced by a newer one (exclusive workers) is not an error."""
    for _ in range(rounds):
        try:
            await pilot.app.workers.wait_for_complete()
        except Exception:
            pass
        await pilot.pause()


class SweepEngine:
    """Two experiments; the sweep's runs report accuracy curves."""

    name = "fake"

    def __init__(self) -> None:
        self.halted: list[str] = []
        self.runs: list[Run] = []
        self.series: dict[str, list[MetricPoint]] = {}
        finals = {"lr=0.01": 0.91, "lr=0.1": 0.97, "lr=1.0": 0.42}
        for i, (label, acc) in enumerate(finals.items()):
            lr = float(label.split("=")[1])
            rid = f"training-swp0000{i}"
            state = RunState.COMPLETED if i < 2 else RunState.PROCESSING
            self.runs.append(Run(id=rid, name=f"digits-{i + 1}", state=state, experiment="digits",
                                 submitted_at=T0 + timedelta(seconds=i), params={"lr": lr, "hidden": 32},
                                 metrics={"accuracy": acc}, primary_metric="accuracy",
                                 metric_goal="maximize", cost_micro_usd=10_000))
            self.series[rid] = [MetricPoint("accuracy", acc * s / 5, float(s)) for s in range(1, 6)]
        self.runs.append(Run(id="training-swpqueue", name="digits-4", state=RunState.QUEUED,
                             experiment="digits", submitted_at=T0 + timedelta(seconds=9),
                             params={"lr": 3.0, "hidden": 64}, metric_goal="maximize", queue_position=1))
        self.runs.append(Run(id="training-other001", name="other", state=RunState.COMPLETED,
                             experiment="grouped", submitted_at=T0 - timedelta(hours=1),
                             metrics={"loss": 0.2}, primary_metric="loss"))

    def list_runs(self, *, states=None, experiment=None, limit=None):
        return [r for r in self.runs if experiment is None or r.experiment == experiment]

    def metrics(self, run_id: str):
        return self.series.get(run_id, [])

    def halt(self, run_id: str) -> Run:
        self.halted.append(run_id)
        run = next(r for r in self.runs if r.id == run_id)
        run.state = RunState.HALTED
        return run

    def close(self) -> None:
        pass


class App(HarnessApp):
    opened: list[str] = []

    def open_run(self, run_id: str, tab: str = "logs") -> None:
        self.opened.append(run_id)


def rows(app, table_id: str) -> list[list[str]]:
    table = app.screen.query_one(table_id)
    return [[getattr(c, "plain", str(c)) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_list_leaderboard_with_parameter_columns_and_curves():
    engine = SweepEngine()
    app = App(make_backend(engine=engine), ExperimentsScreen)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        exps = rows(app, "#experiments")
        assert [r[0] for r in exps] == ["digits", "grouped"]  # newest first
        assert exps[0][1] == "4" and "completed:2" in exps[0][4] and exps[0][2] == "accuracy=0.97"
        board = rows(app, "#leaderboard")
        # Runs by name, as the chart's legend names them
        assert [r[1] for r in board] == ["digits-2", "digits-1", "digits-3", "digits-4"]
        assert board[0][0] == "1*" and board[-1][0] == "-"
        labels = [str(c.label) for c in app.screen.query_one("#leaderboard").columns.values()]
        assert labels == ["RANK", "NAME", "STATE", "ACCURACY", "LR", "HIDDEN"]
        assert board[0][4:] == ["0.1", "32"]
        screen = app.screen
        assert len(screen.snapshot.curves) == 3  # the queued run has no curve yet
        assert screen.snapshot.curves["training-swp00001"][2][-1] == 0.97
        summary = str(screen.query_one("#exp-summary").render())
        assert "ranked by accuracy (maximize)" in summary and "best digits-2 (training-swp00001)" in summary
        legend = str(screen.query_one("#legend").render())
        assert [n for n in ("digits-2", "digits-1", "digits-3") if n in legend] == ["digits-2", "digits-1", "digits-3"]
        assert "digits: 4 runs" in screen_text(app)

        await pilot.press("down")  # the other experiment
        await settle(pilot)
        assert [r[1] for r in rows(app, "#leaderboard")] == ["other"]
        await pilot.press("up")
        await settle(pilot)
        await pilot.press("tab", "down", "enter")
        await pilot.pause()
        assert app.opened == ["training-swp00000"]


async def test_halt_the_rest_keeps_the_highlighted_run_after_confirmation():
    engine = SweepEngine()
    app = App(make_backend(engine=engine), ExperimentsScreen)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("tab", "down", "down")  # the PROCESSING run is kept
        await pilot.press("H")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "training-swpqueue" in screen_text(app) and "keeping training-swp00002" in screen_text(app)
        await pilot.press("n")
        await settle(pilot)
        assert engine.halted == []
        await pilot.press("H")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert engine.halted == ["training-swpqueue"]
        assert "halted" in rows(app, "#experiments")[0][4]  # STATES


async def test_read_only_cannot_halt_and_empty_says_how_to_start():
    engine = SweepEngine()
    engine.runs = []
    app = App(make_backend(engine=engine, read_only=True), ExperimentsScreen)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "none yet" in screen_text(app)
        await pilot.press("H")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)


def test_submit_confirmation_shows_the_estimate_and_a_budget_refusal(tmp_path):
    from rich.console import Console

    from backend.config import Budget, Config, Profile
    from backend.facade import Backend, get_paths, load_manifest

    from dlaas_tui.screens.submit_confirm import plan_submission, plan_table

    path = tmp_path / "m.yaml"
    path.write_text(
        "name: dear\ngpus: 0\nmax_duration: 30m\n"
        "data_stores:\n  - {id: d, type: local, training_data: {container: a}, training_results: {container: b}}\n"
        "framework: {name: python, command: 'echo ${i}'}\n"
        "sweep: {parameters: {i: {values: [1, 2, 3]}}}\n")
    engine = SweepEngine()
    engine.runs = []
    backend = Backend(config=Config(prices={"cpu": 2.0}),
                      profile=Profile(name="t", scheduler="fake", budget=Budget(daily_usd=1.0)),
                      paths=get_paths(), _engine=engine)
    plan = plan_submission(backend, load_manifest(path))
    assert plan.estimate.runs == 3 and plan.estimate.total_usd == 3.0
    assert "REFUSED" in plan.budget
    console = Console(width=200, record=True)
    console.print(plan_table(plan))
    text = console.export_text()
    assert "$3.00" in text and "REFUSED" in text and "over the daily budget" in text


async def test_colon_experiments_opens_the_screen_and_the_header_warns_at_80_percent():
    from backend.config import Budget

    from dlaas_tui.widgets.header import StatusHeader

    from .tui_fixtures import make_app, wait_for

    app, _clock, engine = make_app(0)
    engine.seed(24, experiment_size=6)
    spent = sum((r.cost_micro_usd or 0) for r in engine.list_runs()) / 1e6
    assert spent > 0
    from backend.facade import committed_usd

    committed = committed_usd(app.backend, engine.list_runs())  # the seeded queue holds money too
    # A daily budget the seeded spend and commitments have used 90 % of (seeded runs are billed "today").
    app.backend.profile = app.backend.profile.model_copy(
        update={"budget": Budget(daily_usd=(spent + committed) / 0.9)})
    async with app.run_test(size=(120, 36)) as pilot:
        header = app.screen.query_one(StatusHeader)
        await wait_for(pilot, lambda: header.stats.budget_warning is not None)
        assert "budget 90% used" in str(header.render())
        app.run_command("experiments")
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentsScreen)
                       and app.screen.snapshot is not None)
        names = [r[0] for r in rows(app, "#experiments")]
        assert len(names) == 4 and all(n.startswith("sweep-") for n in names)
        assert rows(app, "#leaderboard") and "LR" in [str(c.label) for c in
                                                        app.screen.query_one("#leaderboard").columns.values()]
