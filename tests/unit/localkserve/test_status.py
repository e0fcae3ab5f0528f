"""The InferenceService status as KServe writes it in Serverless mode (hack/localkserve/status.py),
checked field by field against the real KServe v0.20.0 CRD schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster.layout import default_kserve_crds
from localkserve import revisions, status
from localkserve.status import FALSE, TRUE, UNKNOWN, Failure, Health

R1, R2 = "iris-predictor-1111111111", "iris-predictor-2222222222"
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"


def isvc(mode: str = "Serverless", previous: dict[str, Any] | None = None) -> dict[str, Any]:
    meta = {
        "name": "iris",
        "namespace": "ml",
        "generation": 3,
        "annotations": {"serving.kserve.io/deploymentMode": mode},
    }
    return {"metadata": meta, "spec": {}, "status": previous or {}}


@pytest.fixture(scope="module")
def status_schema() -> dict[str, Any]:
    path = default_kserve_crds() / "serving.kserve.io_inferenceservices.yaml"
    if not path.exists():
        pytest.skip(f"KServe CRD fixture not found at {path}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRD is 39k lines: libyaml parses it in ~1s
    crd = yaml.load(Path(path).read_text(), Loader=loader)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    return dict(version["schema"]["openAPIV3Schema"]["properties"]["status"])


def check(value: Any, schema: dict[str, Any], where: str = "status") -> None:
    """A strict walk of the structural schema: every field must be declared (unlike the
    apiserver, which keeps unknown status fields here), with the declared type and enum."""
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int}
    if kind:
        assert isinstance(value, types[kind]) and not (kind == "integer" and isinstance(value, bool)), (where, value)
    if "enum" in schema:
        assert value in schema["enum"], (where, value)
    if kind == "object":
        for name in schema.get("required") or []:
            assert name in value, f"{where}.{name} is required"
        for name, item in value.items():
            sub = (schema.get("properties") or {}).get(name) or schema.get("additionalProperties")
            assert isinstance(sub, dict), f"{where}.{name} is not in the CRD"
            check(item, sub, f"{where}.{name}")
    if kind == "array":
        for i, item in enumerate(value):
            check(item, schema["items"], f"{where}[{i}]")


def test_serverless_canary_status(status_schema: dict[str, Any]) -> None:
    plan = revisions.serverless(R2, 30, {"latestRolledoutRevision": R1}, {R1, R2}, {R1, R2})
    out = status.build(isvc(), plan, Health(TRUE, routable=True), "example.com", T0)
    check(out, status_schema)
    assert out["url"] == "http://iris.ml.example.com" and out["address"]["url"] == "http://iris.ml.svc.cluster.local"
    assert out["observedGeneration"] == 3 and out["deploymentMode"] == "Serverless"
    predictor = out["components"]["predictor"]
    assert predictor["traffic"] == [
        {"revisionName": R2, "percent": 30, "latestRevision": True},
        {"revisionName": R1, "percent": 70, "latestRevision": False},
    ]
    assert (predictor["latestCreatedRevision"], predictor["latestReadyRevision"]) == (R2, R2)
    assert predictor["latestRolledoutRevision"] == R1
    assert predictor["url"] == "http://iris-predictor.ml.example.com"
    assert [(c["type"], c["status"], c["lastTransitionTime"]) for c in out["conditions"]] == [
        ("IngressReady", TRUE, T0),
        ("PredictorReady", TRUE, T0),
        ("Ready", TRUE, T0),
    ]
    assert out["modelStatus"] == {
        "transitionStatus": "UpToDate",
        "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
    }


def test_failure_and_transition_times(status_schema: dict[str, Any]) -> None:
    plan = revisions.serverless(R2, 30, {"latestRolledoutRevision": R1}, {R1, R2}, {R1})
    ready = status.build(isvc(), plan, Health(TRUE, routable=True), "example.com", T0)
    failure = Failure(R2, "CrashLoopBackOff", "model file is corrupt", 65)
    health = status.health_of([R2, R1], {R1}, {R2: failure}, routable=True)
    out = status.build(isvc(previous=ready), plan, health, "example.com", T1)
    check(out, status_schema)
    conditions = {c["type"]: c for c in out["conditions"]}
    assert conditions["IngressReady"] == {"type": "IngressReady", "status": TRUE, "lastTransitionTime": T0}
    assert conditions["PredictorReady"]["status"] == FALSE and conditions["PredictorReady"]["lastTransitionTime"] == T1
    assert conditions["PredictorReady"]["reason"] == "RevisionFailed"
    assert "model file is corrupt" in conditions["PredictorReady"]["message"]
    assert conditions["Ready"]["status"] == FALSE
    assert out["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    assert out["modelStatus"]["lastFailureInfo"] == {
        "reason": "ModelLoadFailed",
        "message": "model file is corrupt",
        "modelRevisionName": R2,
        "exitCode": 65,
    }
    # The same world again: the same status, so nothing to write.
    again = status.build(isvc(previous=out), plan, health, "example.com", "2026-01-02T00:00:00Z")
    assert again == out


def test_no_runtime_keeps_what_is_served(status_schema: dict[str, Any]) -> None:
    plan = revisions.serverless(R1, None, {}, {R1}, {R1})
    served = status.build(isvc(), plan, Health(TRUE, routable=True), "example.com", T0)
    health = Health(FALSE, "RuntimeNotRecognized", "ServingRuntime x not found", routable=True)
    out = status.build(isvc(previous=served), None, health, "example.com", at=T1)
    check(out, status_schema)
    assert out["components"] == served["components"] and out["url"] == served["url"]
    assert out["modelStatus"]["transitionStatus"] == "InvalidSpec"


def test_health_of() -> None:
    assert status.health_of([R1], {R1}, {}, True).predictor == TRUE
    waiting = status.health_of([R1, R2], {R1}, {}, True)
    assert (waiting.predictor, waiting.reason) == (UNKNOWN, "RevisionMissing") and R2 in waiting.message
    failed = status.health_of([R1, R2], set(), {R2: Failure(R2, "ErrImagePull", "no such image")}, False)
    assert (failed.predictor, failed.reason, failed.routable) == (FALSE, "RevisionFailed", False)


def test_mode_of_and_serves_only_serverless() -> None:
    assert status.mode_of(isvc("Knative")) == "Serverless" and status.serves(isvc("Knative"))
    assert status.mode_of(isvc("Serverless")) == "Serverless" and status.serves(isvc("Serverless"))
    assert status.mode_of({"metadata": {}}) == "Serverless" and status.serves({"metadata": {}})
    # Standard mode is KServe's own controller's, under either name; so is any other mode.
    assert status.mode_of(isvc("Standard")) == "Standard" and not status.serves(isvc("Standard"))
    assert status.mode_of(isvc("RawDeployment")) == "Standard" and not status.serves(isvc("RawDeployment"))
    assert status.mode_of(isvc("ModelMesh")) == "ModelMesh" and not status.serves(isvc("ModelMesh"))
    assert status.mode_of({"metadata": {}}, "Standard") == "Standard"
    assert not status.serves({"metadata": {}}, "Standard")
