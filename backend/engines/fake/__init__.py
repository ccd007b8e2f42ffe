"""The in-memory fake engine on a clock you drive (tests of everything above the engines).

    from backend.engines.fake import FakeClock, FakeEngine
    clock = FakeClock(); engine = FakeEngine(clock, devices=2, tier_gpus=1)
    run = engine.submit_manifest({...}); clock.advance(60); engine.get_run(run.id).state
"""
from .clock import FakeClock, WallClock  # noqa: F401
from .engine import DEFAULT_DURATIONS, FakeEngine, PlantedFailure  # noqa: F401
from .record import synthetic_metrics  # noqa: F401
