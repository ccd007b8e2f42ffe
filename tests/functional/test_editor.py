"""Pilot tests of the manifest editor: validation as you type, marks, save, samples, submit."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from backend.facade import EngineError

from dlaas_tui.screens import editor as editor_module
from dlaas_tui.screens.editor import EditorScreen, SamplePicker, manifest_with_training_data
from dlaas_tui.screens.submit_confirm import SubmitConfirm, SubmitPlan, plan_table
from dlaas_tui.screens.confirm import ConfirmScreen
from dlaas_tui.screens.prompts import InputPrompt

from .screens_harness import HarnessApp, MiniEngine, make_backend, screen_text, settle
from .tui_fixtures import wait_for

GOOD = """\
name: digits  # the sample
gpus: 2
gpu_type: A100
max_duration: 90m
data_stores:
  - id: ds
    type: local
    training_data:
      container: old-bucket   # replaced by "use as training data"
      prefix: old/
    training_results:
      container: results
framework:
  name: pytorch
  command: python train.py
"""


def editor_app(engine=None, **kw):
    def factory():
        return EditorScreen(kw.pop("path", None), kw.pop("text", None))

    backend_kw = {k: kw.pop(k) for k in ("read_only", "prices") if k in kw}
    return HarnessApp(make_backend(engine=engine or MiniEngine(), **backend_kw), factory)


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


async def wait_validated(pilot) -> None:
    """Until the check of the editor's text as it is now is on screen (the debounce, then the worker)."""
    await pilot.pause()  # the key presses' Changed messages restart the debounce first
    screen = pilot.app.screen
    await wait_for(pilot, lambda: not screen.checking, what="the manifest check")
    await settle(pilot)


async def test_yaml_error_is_listed_with_line_col_and_marked():
    broken = "name: x\ngpus: 1\ndata_stores: [\n  bad\n"
    app = editor_app(text=broken)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_validated(pilot)
        screen = app.screen
        assert screen.validation.errors
        first = screen.validation.errors[0]
        assert first.line >= 3 and first.col >= 1
        assert screen.area.marks.get(first.line - 1) == "error"
        shown = screen_text(app)
        assert f"{first.line}:{first.col}" in shown and "error" in shown
        # The fix clears the list and the marks.
        screen.area.load_text("name: x\ngpus: 1\n")
        await wait_validated(pilot)
        assert not screen.validation.errors or all(p.line != first.line for p in screen.validation.errors)
        assert screen.area.marks.get(first.line - 1) is None


async def test_validation_is_debounced(monkeypatch):
    calls = []
    real = editor_module.validate_text

    def counting(text, source, backend=None):
        calls.append(text)
        return real(text, source, backend)

    monkeypatch.setattr(editor_module, "validate_text", counting)
    monkeypatch.setattr(editor_module, "DEBOUNCE_S", 0.8)  # room for a loaded machine to type 4 keys
    app = editor_app(text="name: a\n")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_validated(pilot)
        assert len(calls) == 1
        await pilot.press("end", "b", "c", "d", "e")
        assert len(calls) == 1  # nothing yet: typing is faster than the debounce
        await wait_validated(pilot)
        assert len(calls) == 2 and calls[-1].startswith("name: abcde")


async def test_f8_and_enter_jump_to_a_problem():
    app = editor_app(text="name: x\n\n\n\nbad: [\n")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_validated(pilot)
        line = app.screen.validation.errors[0].line
        await pilot.press("f8")
        assert app.screen.area.cursor_location[0] == line - 1


async def test_save_is_atomic_and_clears_the_changed_mark(tmp_path: Path):
    path = tmp_path / "m.yml"
    path.write_text("name: before\n")
    path.chmod(0o640)
    app = editor_app(path=path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert not app.screen.dirty
        await pilot.press("end", "s")
        await pilot.pause()
        assert app.screen.dirty and "●" in screen_text(app)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert path.read_text() == "name: befores\n"
        assert (path.stat().st_mode & 0o777) == 0o640  # the file keeps its mode
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m.yml"]  # no temp file left
        assert not app.screen.dirty


async def test_save_as_asks_for_a_path(tmp_path: Path):
    app = editor_app(text="name: fresh\n")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, InputPrompt)
        app.screen.query_one("Input").value = str(tmp_path / "new" / "fresh.yml")
        await pilot.press("enter")
        await pilot.pause()
        assert (tmp_path / "new" / "fresh.yml").read_text() == "name: fresh\n"
        assert app.screen.path == tmp_path / "new" / "fresh.yml"


async def test_new_from_a_sample(tmp_path: Path, monkeypatch):
    sample = tmp_path / "samples" / "tiny" / "manifest.yml"
    sample.parent.mkdir(parents=True)
    sample.write_text("name: tiny-sample\n")
    monkeypatch.setattr(editor_module, "list_samples", lambda: [sample])
    app = editor_app(text="name: mine\n")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, SamplePicker)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.area.text == "name: tiny-sample\n"
        assert app.screen.path is None


def test_shipped_samples_are_found_when_present():
    for path in editor_module.list_samples():
        assert path.name == "manifest.yml" and path.is_file()


async def test_submit_shows_the_plan_then_submits(tmp_path: Path):
    path = tmp_path / "digits.yml"
    path.write_text(GOOD)
    engine = MiniEngine()
    app = editor_app(engine, path=path, prices={"A100": 4.10})
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_validated(pilot)
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert isinstance(app.screen, SubmitConfirm)
        plan = app.screen.plan
        assert (plan.runs, plan.gpus_each, plan.gpu_type, plan.max_duration_s) == (1, 2, "A100", 5400)
        shown = screen_text(app)
        assert "2 × A100" in shown and "$12.30" in shown  # 1 run × 2 GPUs × $4.10/h × 1.5 h
        await pilot.press("escape")
        await settle(pilot)
        assert engine.submitted == []
        await pilot.press("ctrl+r")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert [list(r.manifests) for r in engine.submitted] == [[path]]
        assert any("training-test0001" in n for n in notes(app))


async def test_submit_saves_changes_first(tmp_path: Path):
    path = tmp_path / "digits.yml"
    path.write_text(GOOD)
    engine = MiniEngine()
    app = editor_app(engine, path=path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.screen.area.load_text(GOOD.replace("gpus: 2", "gpus: 1"))
        await wait_validated(pilot)
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert "saves" in screen_text(app)
        await pilot.press("y")
        await settle(pilot)
        assert "gpus: 1" in path.read_text()
        assert len(engine.submitted) == 1


async def test_submit_error_is_a_notification(tmp_path: Path):
    path = tmp_path / "digits.yml"
    path.write_text(GOOD)
    engine = MiniEngine()
    engine.fail_with = EngineError("C104: 2 × A100 can never fit this machine")
    app = editor_app(engine, path=path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert any("can never fit" in n for n in notes(app))
        assert isinstance(app.screen, EditorScreen)


async def test_submit_refused_with_errors():
    engine = MiniEngine()
    app = editor_app(engine, text="name: [\n")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert not isinstance(app.screen, SubmitConfirm)
        assert any("fix 1 error" in n for n in notes(app))
        assert engine.submitted == []


async def test_submit_refused_read_only(tmp_path: Path):
    engine = MiniEngine()
    app = editor_app(engine, text=GOOD, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, EditorScreen)
        assert "Submit" not in screen_text(app).splitlines()[-1]
        app.screen.action_submit()
        await settle(pilot)
        assert any("read-only" in n for n in notes(app))
        assert engine.submitted == []


async def test_esc_leaves_from_the_text_when_nothing_changed():
    app = editor_app(text=GOOD)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.screen.area.has_focus
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, EditorScreen)


async def test_esc_asks_before_dropping_changes():
    app = editor_app(text="name: a\n")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("x")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, EditorScreen)
        app.screen.action_back()
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert not isinstance(app.screen, (EditorScreen, ConfirmScreen))


# -- pure helpers -----------------------------------------------------------------------------
def test_training_data_is_set_in_place_keeping_the_rest():
    out = manifest_with_training_data(GOOD, "digits-data", "train/")
    data = yaml.safe_load(out)
    assert data["data_stores"][0]["training_data"] == {"container": "digits-data", "prefix": "train/"}
    assert data["data_stores"][0]["training_results"] == {"container": "results"}
    assert "# the sample" in out  # comments elsewhere survive
    assert out.count("\n") <= GOOD.count("\n")


def test_training_data_without_prefix_and_odd_names():
    out = manifest_with_training_data(GOOD, 'we"ird: [name]', "")
    assert yaml.safe_load(out)["data_stores"][0]["training_data"] == {"container": 'we"ird: [name]'}


def test_training_data_added_when_missing():
    out = manifest_with_training_data("name: x\nframework: {name: python, command: true}\n", "b", "p/")
    store = yaml.safe_load(out)["data_stores"][0]
    assert store["training_data"] == {"container": "b", "prefix": "p/"}
    assert "training_results" in store


def test_plan_shows_runs_gpus_cost_and_budget():
    from backend.budget import estimate_cost

    estimate = estimate_cost(12, 2, 6.88, 1800)
    plan = SubmitPlan("s", runs=12, gpus_each=2, gpu_type="H100", learners=1, max_duration_s=1800,
                      estimate=estimate, budget="budget: $10.00 of $50.00 left today — would be REFUSED: …",
                      sweep_method="grid")
    assert plan.estimated_cost == pytest.approx(12 * 2 * 6.88 * 0.5)
    assert plan.total_gpus == 24
    from rich.console import Console

    console = Console(width=80, record=True)
    console.print(plan_table(plan))
    text = console.export_text()
    assert "12 (grid sweep)" in text and "24" in text and "at most $82.56" in text
    assert "REFUSED" in text
    unpriced = SubmitPlan("s", 1, 1, "X9", 1, 3600, estimate_cost(1, 1, None, 3600))
    console.print(plan_table(unpriced))
    assert "unknown: unpriced GPU type" in console.export_text()


async def test_sweep_plan_counts_runs_from_the_expansion(tmp_path: Path):
    path = tmp_path / "sweep.yml"
    path.write_text(GOOD + "sweep:\n  method: grid\n  parameters:\n    lr: {values: [0.1, 0.01, 0.001]}\n"
                    "    bs: {values: [16, 32]}\n")
    app = editor_app(path=path, prices={"A100": 4.10})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert isinstance(app.screen, SubmitConfirm)
        assert (app.screen.plan.runs, app.screen.plan.total_gpus) == (6, 12)
        assert "6 (grid sweep)" in screen_text(app) and "$73.80" in screen_text(app)


async def test_a_new_manifest_from_the_sample_submits_with_the_samples_model_code(tmp_path: Path):
    """Saved anywhere, a manifest started from the sample still packages the sample's train.py."""
    engine = MiniEngine()
    app = editor_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_validated(pilot)
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert isinstance(app.screen, SubmitConfirm)
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, InputPrompt)
        target = tmp_path / "elsewhere" / "manifest.yml"
        target.parent.mkdir()
        app.screen.query_one("Input").value = str(target)
        await pilot.press("enter")
        await settle(pilot)
        await wait_for(pilot, lambda: engine.submitted, what="the submission")
        (request,) = engine.submitted
        assert list(request.manifests) == [target]
        assert request.model is not None and (request.model / "train.py").is_file()
        assert request.model.parent.name == "pytorch-digits"
