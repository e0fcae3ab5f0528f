"""slipway.contract is the one place for the names the parts agree on: the predictor started with the environment
a Rollout gives it serves that ModelVersion, its metrics are the series the analysis queries, and no product code
spells one of those names itself."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from slipway import contract
from slipway.analysis import PREDICTOR
from slipway.api import DriftMonitor, ModelVersion, Rollout, TrainingJob
from slipway.config import Settings
from slipway.controllers import rollout_isvc as isvc
from slipway.kube.client import PLURALS
from slipway_predictor.config import Settings as PredictorSettings
from slipway_predictor.metrics import OUTCOMES, PredictorMetrics, outcome_of

from tests.conftest import REPO
from tests.unit import test_rollout as tro


def test_the_predictor_reads_the_environment_a_rollout_gives_it() -> None:
    body = tro.mv("m-v2")
    body["spec"]["signature"] = {"inputs": [{"name": "x", "dtype": "float64"}]}
    mv = ModelVersion.model_validate({"metadata": body["metadata"], "spec": body["spec"]})
    predictor = isvc.predictor(tro.rollout("m-v2"), mv, Settings())
    env = {e["name"]: e["value"] for e in predictor["model"]["env"] if "value" in e}
    read = PredictorSettings.from_env(env)
    assert (read.model_version, read.framework, read.sha256) == ("m-v2", "sklearn", "a" * 64)
    assert read.signature is not None and [c.name for c in read.signature] == ["x"]


def test_the_predictor_exports_the_series_the_analysis_queries() -> None:
    registry = CollectorRegistry()
    metrics = PredictorMetrics("m", "m-v2", (0.5, 1.0), registry=registry)
    metrics.observe_request(500, 0.01)
    text = generate_latest(registry).decode()
    assert (
        f'{contract.PREDICTOR_REQUESTS}{{model="m",outcome="{contract.PREDICTOR_SERVER_ERROR}",version="m-v2"}}' in text
    )
    assert f'{contract.PREDICTOR_LATENCY}{{le="0.01",model="m",version="m-v2"}}' in text
    assert outcome_of(503) == contract.PREDICTOR_SERVER_ERROR in OUTCOMES
    assert (PREDICTOR.requests, PREDICTOR.latency) == (contract.PREDICTOR_REQUESTS, contract.PREDICTOR_LATENCY)


def test_the_plural_of_each_slipway_kind_is_its_crds() -> None:
    for kind in (TrainingJob, ModelVersion, Rollout, DriftMonitor):
        assert PLURALS[kind.kind] == kind.plural


# The names only slipway uses (labels, annotations, its env and series); not the generic values (`slipway`,
# `server_error`) that ordinary text shares.
NAMES = {
    v
    for k, v in vars(contract).items()
    if k.isupper() and isinstance(v, str) and ("/" in v or v.upper().startswith("SLIPWAY_"))
}


def test_no_product_code_spells_a_contract_name_itself() -> None:
    """Operator, plugin, dev tools and benchmarks take these names from slipway.contract (the runtimes keep their
    own copies, held to it by the tests above)."""
    quoted = re.compile(r"""["']([^"'\s]+)["']""")
    found = []
    for folder in ("operator/slipway", "devenv/slipway_dev", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "operator/slipway/contract.py":
                continue
            for n, line in enumerate(Path(path).read_text().splitlines(), 1):
                found += [f"{path.relative_to(REPO)}:{n}: {m}" for m in quoted.findall(line) if m in NAMES]
    assert found == []
