"""The budget check on the Kubernetes engine: the same refusal as locally, before any Job exists."""
from __future__ import annotations

import pytest
import yaml

from backend.config import Budget
from backend.engines.kubernetes.client import KubeApi
from backend.engines.kubernetes.engine import KubernetesEngine
from backend.errors import BadInput
from backend.runs import SubmitRequest
from tests.fixtures import k8s_objects as fx
from tests.fixtures.kube_sim import NS, KubeSim

pytest.importorskip("kmock")


def test_a_submit_over_the_daily_budget_creates_nothing(tmp_path):
    sim = KubeSim().start()
    try:
        base = fx.profile()
        prof = base.model_copy(update={"kubernetes": base.kubernetes.model_copy(update={"namespace": NS}),
                                       "budget": Budget(daily_usd=5.0)})
        engine = KubernetesEngine(KubeApi.for_host(sim.url), prof, fx.config(), user="ada")
        doc = fx.manifest().model_dump(mode="json", exclude_none=True)
        doc.update(max_duration="1h", env={})
        path = tmp_path / "m.yaml"
        path.write_text(yaml.safe_dump(doc))
        (tmp_path / "model").mkdir()
        with pytest.raises(BadInput) as err:
            engine.submit(SubmitRequest(manifests=[path]))
        # 1 run x 2 H100 x $6.88/h x 1 h = $13.76, against $5.00 a day.
        assert "over the daily budget" in str(err.value) and "$13.76" in str(err.value)
        assert err.value.exit_code == 2
        assert sim.jobs == {}
        engine.close()
    finally:
        sim.stop()
