"""What cannot run, found before submitting: `${...}` in a sweep's command, and the profile's
capacity and priority names (backend.preflight), each at its own line and column."""
from __future__ import annotations

import pytest

from backend.config import Config, Profile
from backend.engines.fake.clock import FakeClock
from backend.engines.fake.engine import FakeEngine
from backend.facade import Backend, check_for_profile, get_paths
from backend.manifest import parse_manifest

HEAD = """\
name: sw
gpus: 1
data_stores:
  - training_data: {container: d}
    training_results: {container: r}
env:
  EPOCHS: "3"
framework:
  name: pytorch
  command: %s
sweep:
  parameters:
    lr: {values: [0.1]}
    hidden: {values: [16]}
"""


def problems(command: str, *, sweep: bool = True) -> list[tuple[str, int, int, str]]:
    text = HEAD % command
    if not sweep:
        text = text[: text.index("sweep:")]
    result = parse_manifest(text, "m.yml")
    return [(p.severity, p.line, p.col, p.message) for p in result.problems if p.field == "framework.command"]


def test_sh_expansions_and_declared_names_pass() -> None:
    ok = "python t.py --lr ${lr} --hidden ${hidden} --e ${EPOCHS} --d ${DATA_DIR} --x ${HP_LR} ${X:-1} ${A:-${B}} ${#X} $HOME"
    assert problems(ok) == []


def test_a_typo_of_a_parameter_is_an_error_at_its_column() -> None:
    [(severity, line, col, message)] = problems("python t.py --lr ${lr} --hidden ${hiden}")
    assert (severity, line, col) == ("error", 10, 44) and "did you mean ${hidden}" in message
    assert parse_manifest(HEAD % "python t.py ${hiden}", "m.yml").manifest is None


def test_stray_and_empty_placeholders_are_errors_anywhere() -> None:
    [(severity, _, col, message)] = problems("python t.py --lr ${lr --hidden ${hidden}")
    assert severity == "error" and col == 29 and "no closing" in message
    assert [p[0] for p in problems("python t.py ${}")] == ["error"]
    assert [p[0] for p in problems("python t.py ${lr x}")] == ["error"]
    assert [p[0] for p in problems("python t.py ${oops", sweep=False)] == ["error"]


def test_a_shell_operator_on_a_sweep_parameter_is_an_error() -> None:
    # `${lr:-0.1}` is left to sh, which has no variable `lr`: every trial would get 0.1.
    [(severity, line, col, message)] = problems("python t.py --lr ${lr:-0.1}")
    assert (severity, line, col) == ("error", 10, 29)
    assert "every trial gets the same value" in message and "${HP_LR:-0.1}" in message
    assert problems("python t.py --lr ${HP_LR:-0.1} ${lr}") == []
    assert problems("python t.py ${lr:-0.1}", sweep=False) == []  # no sweep: lr is just an unset variable


def test_other_unknown_names_warn_only_in_a_sweep() -> None:
    [(severity, *_rest)] = problems("python t.py ${other} ${lr}")
    assert severity == "warning"
    assert problems("python t.py ${other}", sweep=False) == []


def test_a_block_command_is_placed_on_its_own_line() -> None:
    text = (HEAD % "|\n    python t.py --lr ${lr}\n      --hidden ${hiden}").replace("--hidden ${hiden}", "--hidden ${hiden} \\")
    result = parse_manifest(text, "m.yml")
    [error] = result.errors
    assert (error.line, error.col) == (12, 16)


def backend(devices: int = 1, config: Config | None = None) -> Backend:
    engine = FakeEngine(FakeClock(), devices=devices, gpu_type="H100")
    return Backend(config=config or Config(), profile=Profile(name="p", scheduler="fake"), paths=get_paths(),
                   _engine=engine)


@pytest.mark.parametrize("change, where, words", [
    (("gpus: 1", "gpus: 99"), (2, 7), "never fits this profile (C104)"),
    (("gpus: 1", "gpus: 1\nlearners: 2"), (2, 7), "needs 2 device(s)"),
    (("gpus: 1", "gpus: 1\npriority: urgnt"), (3, 11), "unknown priority 'urgnt'"),
])
def test_the_profile_refuses_capacity_and_priority_at_their_lines(change, where, words) -> None:
    text = (HEAD % "python t.py --lr ${lr} --hidden ${hidden}").replace(*change)
    assert parse_manifest(text, "m.yml").manifest is not None  # the text alone is fine
    result = check_for_profile(backend(), text, "m.yml")
    assert result.manifest is None
    [error] = result.errors
    assert (error.line, error.col) == where and words in error.message


def test_config_priorities_and_enough_devices_pass() -> None:
    text = (HEAD % "python t.py ${lr} ${hidden}").replace("gpus: 1", "gpus: 2\npriority: urgent")
    result = check_for_profile(backend(4, Config(priorities={"urgent": 5000})), text, "m.yml")
    assert result.manifest is not None and not result.errors


def test_an_engine_without_a_check_is_not_guessed_at() -> None:
    class Bare:
        pass

    b = Backend(config=Config(), profile=Profile(name="p", scheduler="fake"), paths=get_paths(), _engine=Bare())
    text = (HEAD % "python t.py ${lr} ${hidden}").replace("gpus: 1", "gpus: 99")
    assert check_for_profile(b, text, "m.yml").manifest is not None
