"""The facade's way to change a queued run's priority: what the TUI's `p` calls (it imports the facade only)."""
from __future__ import annotations

import pytest

from backend.config import Config, Profile
from backend.engines.fake import FakeClock, FakeEngine
from backend.facade import (
    Backend,
    BadInput,
    ReadOnly,
    get_paths,
    offers_priority,
    priority_choices,
    priority_numbers,
    set_priority,
)

MANIFEST = {
    "name": "digits",
    "gpus": 1,
    "data_stores": [{"id": "s", "type": "local", "training_data": {"container": "data"},
                     "training_results": {"container": "results"}}],
    "framework": {"name": "pytorch", "command": "python train.py"},
}


class NoPriorityEngine(FakeEngine):
    """An engine with no way to change a queued run's priority."""

    set_priority = None


def backend_with(engine, *, read_only: bool = False, config: Config | None = None) -> Backend:
    profile = Profile(name="fake", scheduler="fake", read_only=read_only)
    return Backend(config=config or Config(), profile=profile, paths=get_paths(), _engine=engine)


def test_set_priority_goes_through_the_engine_and_returns_the_new_place(dlaas_home):
    engine = FakeEngine(FakeClock(), devices=1)
    engine.submit_manifest(MANIFEST)
    first, second = engine.submit_manifest(MANIFEST), engine.submit_manifest(MANIFEST)
    backend = backend_with(engine)
    assert offers_priority(backend)
    run = set_priority(backend, second.id, "high")
    assert (run.priority, run.queue_position) == ("high", 1)
    assert engine.get_run(first.id).queue_position == 2


def test_priority_choices_are_the_configs(dlaas_home):
    config = Config(priorities={"urgent": 5000})
    assert priority_choices(backend_with(None, config=config)) == {
        "high": 1000, "normal": 0, "low": -100, "urgent": 5000}


def test_an_engine_without_the_feature_is_refused_with_the_run_id(dlaas_home):
    engine = NoPriorityEngine(FakeClock(), devices=1)
    queued = engine.submit_manifest(MANIFEST)
    backend = backend_with(engine)
    assert not offers_priority(backend)
    with pytest.raises(BadInput, match=f"{queued.id}: the fake engine cannot change a run's priority"):
        set_priority(backend, queued.id, "high")


def test_read_only_is_refused_and_an_unopened_engine_is_not_opened(dlaas_home):
    engine = FakeEngine(FakeClock(), devices=1)
    queued = engine.submit_manifest(MANIFEST)
    with pytest.raises(ReadOnly, match="priority is not allowed"):
        set_priority(backend_with(engine, read_only=True), queued.id, "high")
    assert engine.get_run(queued.id).priority == "normal"
    unopened = Backend(config=Config(), profile=Profile(name="fake", scheduler="fake"), paths=get_paths())
    assert not offers_priority(unopened) and unopened._engine is None


def test_only_names_on_kubernetes(dlaas_home):
    kube = Backend(config=Config(), profile=Profile(name="k", scheduler="kubernetes"), paths=get_paths())
    assert not priority_numbers(kube)
    assert priority_numbers(backend_with(None))
