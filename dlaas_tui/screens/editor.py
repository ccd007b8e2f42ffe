"""The manifest editor: YAML with highlighting, validation as you type, save, and submit.

Validation runs in a thread worker 300 ms after the last keystroke; its problems are listed with
line:col and their lines are marked in the gutter. Submitting shows what will run first
(SubmitConfirm), then calls `engine.submit` in a worker and reports the run ids.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import OptionList, Static, TextArea
from textual.widgets.option_list import Option

from ..widgets.footer import KeysFooter
from ..widgets.header import StatusHeader
from ..widgets.safe_text import visible
from ..widgets.manifest_area import ManifestArea
from .prompts import InputPrompt
from .manifest_text import (  # noqa: F401  (re-exported: the buckets screen and tests use them)
    BLANK_MANIFEST,
    Problem,
    Validation,
    atomic_write,
    list_samples,
    manifest_with_training_data,
    sample_model_dir,
    starter_manifest,
    starter_sample,
    validate_text,
)
from .confirm import ConfirmScreen
from .submit_confirm import SubmitConfirm, SubmitPlan, plan_submission

DEBOUNCE_S = 0.3


# -- messages ----------------------------------------------------------------------------------
class Validated(Message):
    def __init__(self, gen: int, validation: Validation) -> None:
        super().__init__()
        self.gen, self.validation = gen, validation


class SubmitPlanned(Message):
    def __init__(self, validation: Validation, plan: SubmitPlan | None, error: str = "") -> None:
        super().__init__()
        self.validation, self.plan, self.error = validation, plan, error


class Submitted(Message):
    def __init__(self, run_ids: list[str], error: str = "") -> None:
        super().__init__()
        self.run_ids, self.error = run_ids, error


class SamplePicker(ModalScreen[Path | None]):
    DEFAULT_CSS = """
    SamplePicker { align: center middle; }
    SamplePicker OptionList { width: 60; max-width: 100%; height: auto; max-height: 80%;
                              border: round $accent; background: $panel; }
    """
    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="samples.cancel")]

    def __init__(self, samples: list[Path]) -> None:
        super().__init__()
        self.samples = samples

    def compose(self) -> ComposeResult:
        options = OptionList(*[Option(Text(p.parent.name), id=str(i)) for i, p in enumerate(self.samples)])
        options.border_title = "new from a sample"
        yield options

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.samples[int(event.option.id)])

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class EditorScreen(Screen):
    DEFAULT_CSS = """
    EditorScreen { layout: vertical; }
    #editor-title { height: 1; padding: 0 1; background: $panel; }
    #manifest { height: 1fr; border: none; }
    #problems { height: auto; max-height: 7; border-top: solid $panel-lighten-2; }
    EditorScreen.-narrow-height #problems { max-height: 4; }
    """
    VERTICAL_BREAKPOINTS = [(0, "-narrow-height"), (30, "-tall")]
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="editor.save", priority=True),
        Binding("ctrl+r", "submit", "Submit", id="editor.submit", priority=True),
        Binding("ctrl+n", "new_from_sample", "New from sample", id="editor.new", priority=True),
        Binding("f8", "next_problem", "Next problem", id="editor.next_problem"),
        Binding("escape", "back", "Back", id="editor.back"),
    ]

    def __init__(self, path: Path | None = None, text: str | None = None) -> None:
        super().__init__()
        self.path = Path(path) if path is not None else None
        # The model code a manifest started from a sample goes with: saved elsewhere, the manifest has
        # no `model/` folder beside it, and submitting it alone would package the wrong folder.
        self.model_dir: Path | None = None
        if text is None:
            if self.path and self.path.exists():
                text = self.path.read_text(encoding="utf-8")
            else:
                text = starter_manifest()
                self.model_dir = sample_model_dir(starter_sample())
        self._initial = text
        # A new buffer counts as changed only once it is edited; a file, when it differs from disk.
        self.dirty = self.path is not None and text != self._read_saved()
        self._gen = 0
        self._shown_gen = -1  # the text generation whose check is on screen
        self._timer: Timer | None = None
        self.validation = Validation()

    def _read_saved(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8") if self.path else None
        except OSError:
            return None

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header", where="new run")
        yield Static("", id="editor-title")
        yield ManifestArea(
            self._initial,
            id="manifest",
            show_line_numbers=True,
            tab_behavior="indent",
            soft_wrap=False,
        )
        yield OptionList(id="problems")
        yield KeysFooter()

    @property
    def area(self) -> ManifestArea:
        return self.query_one(ManifestArea)

    def on_mount(self) -> None:
        self.area.indent_width = 2
        self.area.focus()
        self._render_title()
        self._validate_soon(0)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "submit" and self.app.backend.read_only:
            return False
        return True

    # -- validation as you type --------------------------------------------------------------
    @on(TextArea.Changed, "#manifest")
    def _changed(self) -> None:
        saved = self._read_saved() if self.path else self._initial
        self.dirty = self.area.text != saved
        self._render_title(checking=True)
        self._validate_soon(DEBOUNCE_S)

    def _validate_soon(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._gen += 1
        gen = self._gen
        self._timer = self.set_timer(max(delay, 0.01), lambda: self._validate(gen, self.area.text, self._source()))

    def _backend(self) -> Any:
        """The open backend to check against, if any (a bare harness may have none)."""
        try:
            return getattr(self.app, "backend", None)
        except Exception:
            return None  # the profile could not be opened: the text is still checked on its own

    def _source(self) -> str:
        return str(self.path) if self.path else "<unsaved manifest>"

    @work(thread=True, exclusive=True, group="validate")
    def _validate(self, gen: int, text: str, source: str) -> None:
        try:
            validation = validate_text(text, source, self._backend())
        except Exception as exc:  # the parser must never take the editor down
            validation = Validation([Problem(0, 0, f"validation failed: {exc}")])
        self.post_message(Validated(gen, validation))

    def on_validated(self, message: Validated) -> None:
        if message.gen != self._gen:
            return  # the text changed again since
        self._shown_gen = message.gen
        self._show_validation(message.validation)

    @property
    def checking(self) -> bool:
        """True until the check of the text as it is now is on screen."""
        return self._shown_gen != self._gen

    def _show_validation(self, validation: Validation) -> None:
        self.validation = validation
        marks: dict[int, str] = {}
        for p in validation.problems:
            if p.line and marks.get(p.line - 1) != "error":
                marks[p.line - 1] = p.severity
        self.area.set_marks(marks)
        problems = self.query_one("#problems", OptionList)
        problems.clear_options()
        for i, p in enumerate(validation.problems):
            style = "red" if p.severity == "error" else "yellow"
            label = Text(f"{p.line}:{p.col}".ljust(7) if p.line else "-".ljust(7), style=f"bold {style}")
            label.append(Text(visible(p.message)))
            problems.add_option(Option(label, id=str(i)))
        problems.display = bool(validation.problems)
        self._render_title()

    def _render_title(self, checking: bool = False) -> None:
        status = Text()
        if self.dirty:
            status.append("● ", style="yellow")
        errors = len(self.validation.errors)
        warnings = len(self.validation.problems) - errors
        if checking:
            status.append("checking…", style="dim")
        elif errors:
            status.append(f"✗ {errors} error{'s' * (errors != 1)}", style="bold red")
        else:
            status.append("✓ valid", style="bold green")
        if warnings and not checking:
            status.append(f"  {warnings} warning{'s' * (warnings != 1)}", style="yellow")
        # A long path gives way (from its start) so the state is always visible.
        name = visible(self._display_path()) if self.path else "unsaved manifest"
        room = max(8, (self.size.width or 80) - 2 - status.cell_len - 3)
        if len(name) > room:
            name = "…" + name[-(room - 1):]
        title = Text(name, style="bold") + Text("   ") + status
        self.query_one("#editor-title", Static).update(title)

    def _display_path(self) -> str:
        home = str(Path.home())
        text = str(self.path)
        return "~" + text[len(home):] if text.startswith(home + "/") else text

    def on_resize(self) -> None:
        self._render_title()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._jump_to(self.validation.problems[int(event.option.id)])

    def _jump_to(self, problem: Problem) -> None:
        if problem.line:
            row = min(problem.line - 1, self.area.document.line_count - 1)
            col = max(0, problem.col - 1)
            self.area.move_cursor((row, col), center=True)
        self.area.focus()

    def action_next_problem(self) -> None:
        problems = [p for p in self.validation.problems if p.line]
        if not problems:
            return
        row = self.area.cursor_location[0] + 1
        later = [p for p in problems if p.line > row]
        self._jump_to((later or problems)[0])

    # -- samples, save ------------------------------------------------------------------------
    def action_new_from_sample(self) -> None:
        samples = list_samples()
        if not samples:
            self.notify("no samples are installed", severity="warning", markup=False)
            return

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.path = None
                self.model_dir = sample_model_dir(path)
                self.area.load_text(path.read_text(encoding="utf-8"))
                self._changed()
                self.notify(f"new manifest from sample {path.parent.name}", markup=False)

        self.app.push_screen(SamplePicker(samples), chosen)

    def action_save(self, then: Any = None) -> None:
        if self.path is None:
            def chosen(value: str | None) -> None:
                if value:
                    self.path = Path(value).expanduser()
                    self.action_save(then)

            default = str(Path.cwd() / "manifest.yml")
            self.app.push_screen(
                InputPrompt("Save manifest as", value=default, paths=True, hint="enter saves · esc cancels"),
                chosen,
            )
            return
        try:
            atomic_write(self.path, self.area.text)
        except OSError as exc:
            self.notify(f"could not save {visible(str(self.path))}: {exc.strerror or exc}",
                        severity="error", markup=False)
            return
        self.dirty = False
        self._render_title()
        self.notify(f"saved {visible(str(self.path))}", markup=False)
        if then is not None:
            then()

    # -- submit -------------------------------------------------------------------------------
    def action_submit(self) -> None:
        from backend.facade import ReadOnly

        try:
            self.app.backend.require_writable("submit")
        except ReadOnly as exc:
            self.notify(str(exc), title="read-only", severity="warning", markup=False)
            return
        self._plan(self.area.text, self._source())

    @work(thread=True, exclusive=True, group="submit")
    def _plan(self, text: str, source: str) -> None:
        try:
            validation = validate_text(text, source, self._backend())
            plan = None
            if not validation.errors and validation.manifest is not None:
                plan = plan_submission(self.app.backend, validation.manifest)
        except Exception as exc:
            self.post_message(SubmitPlanned(Validation(), None, str(exc)))
            return
        self.post_message(SubmitPlanned(validation, plan))

    def on_submit_planned(self, message: SubmitPlanned) -> None:
        if message.error:
            self.notify(visible(message.error), title="submit", severity="error", markup=False)
            return
        self._show_validation(message.validation)
        errors = message.validation.errors
        if errors:
            self.notify(f"fix {len(errors)} error{'s' * (len(errors) != 1)} before submitting",
                        title="submit", severity="error", markup=False)
            return
        if message.plan is None:
            self.notify("the manifest cannot be checked here, so it is not submitted",
                        title="submit", severity="error", markup=False)
            return
        where = (
            f"saves {self.path} first" if self.path and self.dirty
            else f"from {self.path}" if self.path else "asks where to save it first"
        )

        def answered(yes: bool | None) -> None:
            if yes:
                if self.path is None or self.dirty:
                    self.action_save(then=self._submit_saved)
                else:
                    self._submit_saved()

        self.app.push_screen(SubmitConfirm(message.plan, where), answered)

    def _submit_saved(self) -> None:
        assert self.path is not None
        self._submit(self.path)

    @work(thread=True, exclusive=True, group="submit")
    def _submit(self, path: Path) -> None:
        from backend.facade import SubmitRequest

        try:
            runs = self.app.backend.engine.submit(SubmitRequest(manifests=[path], model=self._model_for(path)))
        except Exception as exc:
            self.post_message(Submitted([], str(exc)))
            return
        self.post_message(Submitted([r.id for r in runs]))

    def _model_for(self, path: Path) -> Path | None:
        """The sample's model code, unless the manifest was saved beside a `model/` folder of its own."""
        if self.model_dir is None or (path.parent / "model").is_dir():
            return None
        return self.model_dir

    def on_submitted(self, message: Submitted) -> None:
        if message.error:
            self.notify(visible(message.error), title="submit failed", severity="error", markup=False)
            return
        ids = message.run_ids
        shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        self.notify(f"submitted {len(ids)} run{'s' * (len(ids) != 1)}: {shown}", title="submit", markup=False)

    # -- leaving ------------------------------------------------------------------------------
    def action_back(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.app.pop_screen()

        if len(self.app.screen_stack) <= 1:
            return
        if self.dirty:
            self.app.push_screen(
                ConfirmScreen("Discard the unsaved changes?", confirm_label="Discard", danger=True), answered
            )
        else:
            self.app.pop_screen()
