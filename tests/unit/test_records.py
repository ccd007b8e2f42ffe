"""The plain records (backend/records.py) behave as the dataclasses they replace, field for field.

Each declares its fields three times (annotations, `_fields`, `__init__`): these tests hold the three
to one list, so a field added to one and not the others fails here, not in a listing.
"""
from __future__ import annotations

import inspect
from datetime import datetime, timezone
from pathlib import Path

import pytest

from backend.engines.local.limits import Capacity
from backend.eta import Eta, Expected
from backend.facade import Backend, ChangeSet, MetricPoint, Paths, Run, RunEvent, RunState, SubmitRequest
from backend.records import FrozenRecord

RECORDS = [Run, RunEvent, MetricPoint, ChangeSet, SubmitRequest, Paths, Backend, Eta, Expected, Capacity]
T = datetime(2026, 1, 2, tzinfo=timezone.utc)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_annotations_fields_and_init_name_the_same_fields_in_order(cls):
    annotated = tuple(name for name in cls.__annotations__ if not name.startswith("_") or name in cls._fields)
    params = tuple(inspect.signature(cls.__init__).parameters)[1:]
    assert annotated == cls._fields == params


def test_a_run_is_built_compared_shown_and_copied_as_the_dataclass_was():
    a = Run("training-1", "n", RunState.QUEUED, T)
    b = Run(id="training-1", name="n", state=RunState.QUEUED, submitted_at=T)
    assert a == b and a is not b and a != Run("training-2", "n", RunState.QUEUED, T)
    assert (a.gpus, a.learners, a.priority, a.metric_goal, a.cost_micro_usd, a.eta_bound) == (0, 1, "normal", "minimize", 0, False)
    a.assigned.append("cpu:0")
    a.metrics["loss"] = 1.0
    assert b.assigned == [] and b.metrics == {} and b.params == {} and b.depends_on == []  # fresh, not shared
    assert repr(b).startswith("Run(id='training-1', name='n', state=<RunState.QUEUED: 'QUEUED'>, submitted_at=")
    assert repr(b).endswith("manifest_name=None, max_duration_s=None, eta_bound=False)")
    c = a.replace(state=RunState.PENDING)
    assert c.state is RunState.PENDING and c.id == a.id and a.state is RunState.QUEUED
    with pytest.raises(TypeError):
        a.replace(no_such_field=1)
    with pytest.raises(TypeError):
        hash(a)
    a.eta = T  # mutable, as before
    assert a.to_json()["eta"] == "2026-01-02T00:00:00Z"


def test_frozen_records_refuse_changes_and_hash_by_value():
    e = RunEvent("training-1", T, RunState.QUEUED, "submitted")
    assert e == RunEvent("training-1", T, RunState.QUEUED, "submitted", None)
    assert hash(e) == hash(RunEvent("training-1", T, RunState.QUEUED, "submitted"))
    assert repr(e) == ("RunEvent(run_id='training-1', at=" + repr(T) +
                       ", state=<RunState.QUEUED: 'QUEUED'>, message='submitted', error_code=None)")
    for record in (e, Eta(T, True), Paths(Path("a"), Path("b"), Path("c"), Path("d")), MetricPoint("loss", 1.0)):
        assert isinstance(record, FrozenRecord)
        with pytest.raises(AttributeError):
            record.x = 1  # type: ignore[attr-defined]
        with pytest.raises(AttributeError):
            del record._fields
    assert {Eta(T, False), Eta(T, False)} == {Eta(T, False)} and Eta(T, False) != Eta(T, True)
    assert Eta(T, False) != (T, False)


def test_a_backend_shows_its_profile_not_its_engine():
    b = Backend(config="cfg", profile="prof", paths="p", _engine="engine")
    assert repr(b) == "Backend(config='cfg', profile='prof', paths='p')"
    assert b == Backend("cfg", "prof", "p", "engine") and b != Backend("cfg", "prof", "p")
