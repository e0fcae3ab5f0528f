"""Every InferenceService shape the Rollout controller writes is accepted by the real KServe v0.20.0 CRDs."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from slipway.api import ModelVersion, Rollout
from slipway.config import Settings
from slipway.controllers import rollout_isvc as isvc
from slipway_dev.kubectl import Kubectl

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def covers(observed: Any, desired: Any) -> bool:
    """Every field slipway sets is stored as it was sent; fields others add (defaults) are theirs."""
    if isinstance(desired, dict):
        return isinstance(observed, dict) and all(covers(observed.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(observed, list) and len(observed) == len(desired) and all(map(covers, observed, desired))
    return bool(observed == desired)


def model_version(name: str) -> ModelVersion:
    doc = yaml.safe_load((REPO / "examples" / "modelversion.yaml").read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["signature"] = {"inputs": [{"name": "mean radius", "dtype": "float64"}]}
    return ModelVersion.model_validate(doc)


def rollout(mode: str, namespace: str) -> Rollout:
    doc = yaml.safe_load((REPO / "examples" / "rollout.yaml").read_text())
    doc["metadata"] |= {"namespace": namespace, "uid": "00000000-0000-0000-0000-000000000001"}
    doc["spec"]["inferenceService"]["deploymentMode"] = mode
    doc["spec"]["inferenceService"]["predictor"]["resources"] = {"cpu": "1", "memory": "2Gi", "gpus": 1}
    return Rollout.model_validate(doc)


@pytest.mark.parametrize("mode", ["Standard", "Serverless"])
@pytest.mark.parametrize("canary", [False, True])
def test_inference_services_are_accepted_by_the_real_crd(kubectl: Kubectl, mode: str, canary: bool) -> None:
    r = rollout(mode, kubectl.namespace)
    body: dict[str, Any] = isvc.inference_service(
        r, model_version("cancer-rf-v1"), model_version("cancer-rf-v2") if canary else None, 10, Settings()
    )
    body["metadata"].pop("ownerReferences")  # the Rollout does not exist here; the GC would remove the object
    proc = kubectl("apply", "--server-side", "--field-manager=slipway", "-f", "-", input=json.dumps(body))
    assert proc.returncode == 0, proc.stderr
    stored = kubectl.get("inferenceservice", body["metadata"]["name"]) or {}
    # Nothing slipway wrote was pruned by the structural schema.
    assert covers(stored["spec"], body["spec"]), (stored["spec"], body["spec"])
