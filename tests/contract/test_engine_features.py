"""What every engine states it does: the Engine protocol, and which optional features it offers
(backend/engine_protocol.py), each with the protocol's own signature, so a caller that asks
`isinstance(engine, Reruns)` can call `rerun` as the protocol says. An engine that gains or loses a
feature changes the table below on purpose, never by accident (a method renamed, one added that
happens to share a feature's name)."""
from __future__ import annotations

import importlib
import inspect

import pytest

from backend.engine_protocol import (
    OPTIONAL_FEATURES,
    CostBreakdowns,
    EncodedListing,
    Engine,
    FitCheck,
    Holds,
    LineListing,
    LogFiles,
    Priorities,
    QueueHead,
    Reruns,
    ResultsDownload,
)
from backend.facade import ENGINES

FEATURES = {
    "fake": {FitCheck, CostBreakdowns, Priorities},
    "local": {FitCheck, QueueHead, EncodedListing, LineListing, Reruns, ResultsDownload, LogFiles, Holds, Priorities},
    "kubernetes": {FitCheck, Priorities},
}


def _engine_class(name: str) -> type:
    module, _, attr = ENGINES[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def _methods(protocol: type) -> list[str]:
    return [name for name, value in vars(protocol).items() if inspect.isfunction(value) and not name.startswith("_")]


def _shape(function) -> list[tuple[str, object, bool]]:
    """Parameter names, kinds and whether each has a default: what a caller relies on (the name of
    a `*args` or `**kwargs` is not)."""
    var = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [("*" if p.kind in var else p.name, p.kind, p.default is not inspect.Parameter.empty)
            for p in inspect.signature(function).parameters.values()]


def _same_signatures(cls: type, protocol: type) -> list[str]:
    wrong = []
    for name in _methods(protocol):
        mine = getattr(cls, name, None)
        if mine is None:
            wrong.append(f"{name}: missing")
        elif _shape(mine) != _shape(getattr(protocol, name)):
            wrong.append(f"{name}{inspect.signature(mine)} is not {name}{inspect.signature(getattr(protocol, name))}")
    return wrong


def test_every_engine_is_in_the_table():
    assert set(FEATURES) == set(ENGINES)


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_the_engine_implements_the_engine_protocol(name):
    cls = _engine_class(name)
    assert isinstance(getattr(cls, "name", None), str)
    assert _same_signatures(cls, Engine) == []


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_the_engine_offers_the_optional_features_it_states(name):
    cls = _engine_class(name)
    offered = {feature for feature in OPTIONAL_FEATURES if issubclass(cls, feature)}
    assert {f.__name__ for f in offered} == {f.__name__ for f in FEATURES[name]}
    for feature in offered:
        assert _same_signatures(cls, feature) == [], f"{name} engine, {feature.__name__}"


def test_the_feature_check_tells_a_feature_apart():
    class OnlyRerun:
        def rerun(self, run_id):
            return []

    assert isinstance(OnlyRerun(), Reruns)
    assert not isinstance(OnlyRerun(), Holds)
    assert _same_signatures(OnlyRerun, Reruns) == []

    class WrongShape:
        def rerun(self, run_id, extra):
            return []

    assert _same_signatures(WrongShape, Reruns) != []


def test_the_kubernetes_ledgers_state_what_they_keep():
    """The agent's SQLite ledger is an AgentLedger (holds runs, keeps manifests, is closed); the
    in-process one is a plain Ledger, so the engine never asks it for what it does not keep."""
    from backend.engines.kubernetes.ledger import AgentLedger, Ledger, MemoryLedger
    from backend.engines.kubernetes.sqlite_ledger import SqliteLedger

    assert _same_signatures(MemoryLedger, Ledger) == []
    assert _same_signatures(SqliteLedger, AgentLedger) == []
    assert issubclass(SqliteLedger, AgentLedger)
    assert not issubclass(MemoryLedger, AgentLedger)
