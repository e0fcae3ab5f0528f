"""Rollouts end to end: real predictor processes behind the local KServe gateway, a real Prometheus scraping
them, the operator judging a good and a deliberately bad version on concurrent traffic."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from loadgen import Load
from sklearn.datasets import load_breast_cancer

from tests.conftest import REPO, Kubectl, Operator, wait_for
from tests.integration.test_training import phase_is

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples"
SERVE_TIMEOUT = 180.0


@pytest.fixture
def serving(kubectl: Kubectl, operator: Operator, s3: Any) -> Iterator[Kubectl]:
    kubectl.apply(EXAMPLES / "s3-credentials.yaml")
    kubectl.apply(REPO / "runtimes" / "predictor" / "servingruntime.yaml")
    yield kubectl


def train(kubectl: Kubectl, name: str, seed: int) -> str:
    doc = yaml.safe_load((EXAMPLES / "trainingjob-sklearn.yaml").read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["seed"] = seed
    doc["spec"]["hyperparameters"] = {"n_estimators": 20, "max_depth": 4}
    kubectl.apply(yaml.safe_dump(doc))
    st = wait_for("training", phase_is(kubectl, name, "Succeeded", "Failed"), timeout=240)
    assert st["phase"] == "Succeeded", st
    mv = st["modelVersionRef"]["name"]
    wait_for("Ready", lambda: kubectl.condition("modelversion", mv, "Ready").get("status") == "True")
    return str(mv)


def faulty(kubectl: Kubectl, s3_server: Any, base: str, name: str, version: int, fail_fraction: float) -> str:
    """A hand-registered ModelVersion whose artifact fails on part of its inputs."""
    good = kubectl.get("modelversion", base) or {}
    src = good["spec"]["artifact"]["uri"]
    dst = src.rsplit("/", 1)[0] + f"/flaky-{fail_fraction}.joblib"
    out = subprocess.run(
        [sys.executable, "-m", "slipway_predictor.faults", "flaky", "--fail-fraction", str(fail_fraction), src, dst],
        capture_output=True, text=True, check=True, env={**__import__("os").environ, **s3_server.env()},
    )  # fmt: skip
    art = json.loads(out.stdout)
    spec = json.loads(json.dumps(good["spec"]))
    spec["version"] = version
    spec["artifact"] |= {"uri": art["uri"], "sha256": art["sha256"], "sizeBytes": art.get("sizeBytes")}
    spec["lineage"] = {"algorithm": "FlakyModel over " + base}
    doc = {"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name}, "spec": spec}
    kubectl.apply(yaml.safe_dump(doc))
    wait_for("Ready", lambda: kubectl.condition("modelversion", name, "Ready").get("status") == "True")
    return name


def rollout_doc(target: str, prometheus: str, steps: list[dict[str, Any]], mode: str = "Standard") -> str:
    doc = yaml.safe_load((EXAMPLES / "rollout.yaml").read_text())
    doc["spec"]["modelVersionRef"]["name"] = target
    doc["spec"]["inferenceService"]["deploymentMode"] = mode
    doc["spec"]["inferenceService"]["predictor"]["protocolVersion"] = "v1"
    doc["spec"]["canary"]["steps"] = steps
    doc["spec"]["canary"]["analysis"] |= {"prometheus": {"address": prometheus}, "intervalSeconds": 2,
                                          "minRequests": 20, "latency": {"enabled": False}}  # fmt: skip
    return yaml.safe_dump(doc)


def rollout_status(kubectl: Kubectl) -> dict[str, Any]:
    return (kubectl.get("rollout", "cancer-rf") or {}).get("status") or {}


@pytest.mark.parametrize("mode", ["Standard", "Serverless"])
def test_bad_canary_is_rolled_back_and_good_one_promoted(
    serving: Kubectl, cluster: Any, s3_server: Any, operator: Operator, mode: str
) -> None:
    v1 = train(serving, "train-1", seed=1)
    prom = cluster.prometheus_url
    steps = [{"weight": 10, "holdSeconds": 20}, {"weight": 50, "holdSeconds": 10}]
    serving.apply(rollout_doc(v1, prom, steps, mode))
    wait_for("serving v1", lambda: serving.condition("rollout", "cancer-rf", "Ready").get("status") == "True",
             timeout=SERVE_TIMEOUT)  # fmt: skip
    bad = faulty(serving, s3_server, v1, "cancer-rf-v90", 90, 0.3)
    rows = load_breast_cancer().data.tolist()
    with Load(cluster.gateway_url, "cancer-rf", serving.namespace, rows, rps=25) as load:
        serving.apply(rollout_doc(bad, prom, steps, mode))
        st = wait_for("rollback", lambda: rollout_status(serving).get("phase") == "RolledBack" and rollout_status(
            serving), timeout=SERVE_TIMEOUT)  # fmt: skip
        decision = st["decisions"][-1]
        assert decision["action"] == "Rollback" and decision["verdict"] == "Regressed"
        evidence = next(e for e in decision["evidence"] if e["metric"] == "errorRate")
        assert evidence["canary"]["value"] > evidence["stable"]["value"] and evidence["pValue"] <= 0.05
        assert st["stableVersion"] == v1 and st["canaryWeight"] == 0
        isvc = serving.get("inferenceservice", "cancer-rf") or {}
        assert not isvc["spec"].get("canary") and isvc["spec"]["predictor"].get("canaryTrafficPercent") is None

        v2 = train(serving, "train-2", seed=2)
        serving.apply(rollout_doc(v2, prom, steps, mode))
        st = wait_for("promotion", lambda: rollout_status(serving).get("stableVersion") == v2 and rollout_status(
            serving), timeout=SERVE_TIMEOUT)  # fmt: skip
        actions = [d["action"] for d in st["decisions"]]
        assert actions[-1] == "Promote" and "Advance" in actions
    assert load.codes().get(200, 0) > 100, load.codes()
    assert operator.metric("slipway_rollout_rollbacks_total", rollout="cancer-rf") == 1
    assert operator.metric("slipway_rollout_verdicts_total", verdict="Regressed") >= 1
    assert operator.metric("slipway_rollout_canary_weight", rollout="cancer-rf") == 0
