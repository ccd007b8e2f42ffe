"""Harnesses that let one Engine contract suite drive every scheduler.

A harness owns one engine configured for a test and knows how to make time pass for it: the fake's
harness advances its clock, a real engine's harness polls in real time. The suite
(tests/contract/test_engine_contract.py) only talks to harnesses.

Adding an engine is one line in HARNESSES: `"name": "module.path:HarnessClass"`. The class takes
`(workdir, *, devices=2, tier_gpus=0, priced=True, minimum_seconds=60)` and provides what
EngineHarness lists:

- `engine`: the Engine under test, with `devices` devices (or cpu slots), a tier allowing
  `tier_gpus` at once (0 = everything), and default prices; `priced=False` must give devices that
  have no price (e.g. an NVML fake reporting an L4) or call `pytest.skip` with the reason;
  `minimum_seconds` is the config's per-run billing minimum.
- `manifest(tmp_path, kind=..., command=..., gpus=..., name=..., priority=...)`: writes a manifest and
  its `model/` folder and returns the manifest's path. `kind` is "quick" (prints falling
  `epoch=N loss=...` lines and exits 0 within a few seconds), "long" (keeps running until halted)
  or "fail" (prints a line and exits 3). Override `extra_env(kind)` to steer a simulated engine.
- `wait_for(run_id, predicate, timeout)`: returns the run once `predicate(run)` holds, else fails
  the test naming the run and its last state.
- `quiesce()`: returns once the engine has finished the work it had set off (admission passes,
  workers, sync rounds), so a test can assert that nothing changes any more. It follows events
  with a generous deadline, never a fixed sleep; the fake's harness advances its clock instead.
- `later(seconds)`: a context manager; reads inside it see the engine `seconds` later (after
  `quiesce()`): the fake's clock moves on, a real engine's reader in this process gets its clock
  moved ahead while the block runs (an engine that prices in its sync rounds runs one then).
  "The cost has stopped" is then a check, not a wait.
- `evict(run_id)`: sends a running run back to QUEUED as the scheduler's preemption does, or calls
  `pytest.skip` saying why the engine has none.
- `close()`: stops whatever the harness started (by pid).

A harness whose engine cannot be imported yet is skipped, never passed.
"""
from __future__ import annotations

import importlib
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

HARNESSES: dict[str, str] = {
    "fake": "tests.contract.engines:FakeHarness",
    "local": "tests.contract.local_harness:LocalHarness",
    "kubernetes": "tests.fixtures.k8s_harness:KubernetesHarness",
    "kubernetes-sqlite": "tests.fixtures.k8s_harness:KubernetesSqliteHarness",
}

TRAIN_PY = textwrap.dedent(
    """\
    # A tiny stand-in for a training script: falling loss, then exit (or keep going, or fail).
    import sys, time
    mode, steps = sys.argv[1], int(sys.argv[2])
    for epoch in range(1, steps + 1):
        print(f"epoch={epoch} loss={1.0 / epoch:.4f} accuracy={1 - 0.5 / epoch:.4f}", flush=True)
        time.sleep(0.05 if mode != "long" else 0.5)
        if mode == "fail":
            print("something broke", file=sys.stderr, flush=True)
            sys.exit(3)
    """
)
STEPS = {"quick": 3, "long": 100_000, "fail": 1}


class EngineHarness:
    """What every harness provides; subclasses set `engine` and may override `wait_for`."""

    name = "base"
    engine: Any
    poll_interval = 0.05

    def __init__(self, workdir: Path, *, devices: int = 2, tier_gpus: int = 0, priced: bool = True,
                 minimum_seconds: int = 60) -> None:
        self.workdir = workdir
        self.devices = devices
        self.tier_gpus = tier_gpus
        self.priced = priced
        self.minimum_seconds = minimum_seconds
        workdir.mkdir(parents=True, exist_ok=True)

    def extra_env(self, kind: str) -> dict[str, str]:
        return {}

    def manifest(
        self,
        tmp_path: Path,
        *,
        kind: str = "quick",
        command: str | None = None,
        gpus: int = 1,
        name: str = "contract",
        priority: str | None = None,
        learners: int = 1,
    ) -> Path:
        folder = tmp_path / f"{name}-{kind}-{len(list(tmp_path.glob('*-*')))}"
        (folder / "model").mkdir(parents=True)
        (folder / "model" / "train.py").write_text(TRAIN_PY)
        doc: dict[str, Any] = {
            "name": name,
            "gpus": gpus,
            "learners": learners,
            "memory": "256MiB",
            "data_stores": [
                {
                    "id": "contract",
                    "type": "local",
                    "training_data": {"container": "contract-data"},
                    "training_results": {"container": "contract-results"},
                }
            ],
            "framework": {"name": "python", "command": command or f"python train.py {kind} {STEPS[kind]}"},
        }
        env = self.extra_env(kind)
        if env:
            doc["env"] = env
        if priority:
            doc["priority"] = priority
        path = folder / "manifest.yml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def submit(self, tmp_path: Path, **kwargs: Any):
        from backend.runs import SubmitRequest

        path = self.manifest(tmp_path, **kwargs)
        [run] = self.engine.submit(SubmitRequest(manifests=[path], model=path.parent / "model"))
        return run

    def wait_for(self, run_id: str, predicate: Callable[[Any], bool], timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        run = self.engine.get_run(run_id)
        while not predicate(run):
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: run {run_id} still {run.state.value} after {timeout} s")
            time.sleep(self.poll_interval)
            run = self.engine.get_run(run_id)
        return run

    def quiesce(self, timeout: float = 120.0) -> None:
        """Return once the engine has finished what it set off; a harness for an engine with
        background work overrides this to follow that work's events."""

    @contextmanager
    def later(self, seconds: float) -> Iterator[None]:
        """Reads inside the block see the engine `seconds` later: the engine is quiesced, then this
        process's clock (the one its reads price and date with) is moved ahead, and back after."""
        from backend import clock

        self.quiesce()
        with clock.use(clock.SystemClock(clock.shift().total_seconds() + seconds)):
            yield

    def evict(self, run_id: str) -> None:
        pytest.skip(f"{self.name}: this harness cannot preempt a run")

    def close(self) -> None:
        self.engine.close()


class FakeHarness(EngineHarness):
    """The fake engine on a FakeClock: waiting advances the clock a second at a time."""

    name = "fake"

    def __init__(self, workdir: Path, **kwargs: Any) -> None:
        super().__init__(workdir, **kwargs)
        from backend.engines.fake import FakeClock, FakeEngine

        self.clock = FakeClock()
        self.engine = FakeEngine(
            self.clock,
            devices=self.devices,
            gpu_type="H100" if self.priced else "L4",
            tier_gpus=self.tier_gpus,
            follow_step=1.0,
            minimum_seconds=self.minimum_seconds,
        )

    def extra_env(self, kind: str) -> dict[str, str]:
        return {
            "quick": {"fake_duration": "20", "fake_steps": "3"},
            "long": {"fake_duration": "1000000"},
            "fail": {"fake_fail": "C201", "fake_duration": "5"},
        }[kind]

    def wait_for(self, run_id: str, predicate: Callable[[Any], bool], timeout: float = 60.0):
        run = self.engine.get_run(run_id)
        for _ in range(int(timeout * 20)):  # simulated seconds: generous, the clock is free
            if predicate(run):
                return run
            self.clock.advance(1)
            run = self.engine.get_run(run_id)
        if predicate(run):
            return run
        pytest.fail(f"fake: run {run_id} still {run.state.value} after {timeout * 20:.0f} simulated s")

    def quiesce(self, timeout: float = 120.0) -> None:
        self.clock.advance(5)  # simulated: whatever was due has happened

    @contextmanager
    def later(self, seconds: float) -> Iterator[None]:
        self.quiesce()
        self.clock.advance(seconds)
        yield

    def evict(self, run_id: str) -> None:
        self.engine.preempt(run_id)


def load_harness(name: str) -> type[EngineHarness]:
    module, _, attr = HARNESSES[name].partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        pytest.skip(f"engine {name!r} is not available yet: {exc}")


@pytest.fixture(params=sorted(HARNESSES))
def engine_factory(request: pytest.FixtureRequest, tmp_path: Path):
    """`engine_factory(devices=2, tier_gpus=0, priced=True)` -> a harness; closed after the test."""
    cls = load_harness(request.param)
    made: list[EngineHarness] = []

    def make(**kwargs: Any) -> EngineHarness:
        harness = cls(tmp_path / f"{request.param}-{len(made)}", **kwargs)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


@pytest.fixture
def engine_harness(engine_factory) -> EngineHarness:
    return engine_factory()
