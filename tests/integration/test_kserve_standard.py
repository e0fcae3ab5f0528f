"""What KServe v0.20.0's real controller and webhooks do with Standard-mode InferenceServices.

The facts the Rollout's Standard mode is built on (docs/serving-contract.md), checked against the
running controller rather than our reading of its source: a test here fails if KServe behaves
otherwise, so the Rollout's assumptions cannot drift from what a cluster does.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from slipway_dev.kubectl import Kubectl

from tests.conftest import _creds, wait_for
from tests.integration.test_kserve_sklearn import s3_credentials, train

pytestmark = pytest.mark.integration

STANDARD = {"serving.kserve.io/deploymentMode": "Standard"}


def isvc(name: str, *, predictor: dict[str, Any], canary: list[dict[str, Any]] | None = None,
         labels: dict[str, str] | None = None) -> str:  # fmt: skip
    spec: dict[str, Any] = {"predictor": predictor}
    if canary is not None:
        spec["canary"] = canary
    meta = {"name": name, "annotations": STANDARD, "labels": labels or {}}
    body = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": meta, "spec": spec}
    return json.dumps(body)


ACCOUNT = "s3-reader"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, s3_server: Any) -> None:
    """The predictor pods are real (the local executor runs KServe's sklearn server): the
    models their storage URIs name exist in the local S3 server."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint, **_creds(s3_server))
    if "models" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="models")
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    train(path)
    for prefix in ("iris", "iris2"):
        s3.upload_file(str(path), "models", f"{prefix}/model.joblib")


@pytest.fixture(autouse=True)
def credentials(request: pytest.FixtureRequest, s3_server: Any) -> Iterator[None]:
    if "serving_kubectl" in request.fixturenames:
        request.getfixturevalue("models")
        s3_credentials(request.getfixturevalue("serving_kubectl"), s3_server)
    yield


def sklearn(storage_uri: str = "s3://models/iris", **extra: Any) -> dict[str, Any]:
    model = {"modelFormat": {"name": "sklearn"}, "storageUri": storage_uri, **extra}
    return {"minReplicas": 1, "serviceAccountName": ACCOUNT, "model": model}


def dry_run(k: Kubectl, manifest: str) -> subprocess.CompletedProcess[str]:
    """Through the apiserver and KServe's webhooks (sideEffects None), stored nowhere."""
    return k("apply", "--dry-run=server", "-f", "-", input=manifest, check=False)


def test_webhook_refuses_a_model_name_on_the_standard_predictor(serving_kubectl: Kubectl) -> None:
    # Refused for the name and nothing else: the same object without it goes through (KServe's words not relied on).
    proc = dry_run(serving_kubectl, isvc("named", predictor=sklearn(name="m")))
    assert proc.returncode != 0, proc.stderr
    accepted = dry_run(serving_kubectl, isvc("named", predictor=sklearn()))
    assert accepted.returncode == 0, accepted.stderr


def test_webhook_refuses_max_replicas_on_a_canary_and_accepts_an_empty_name(serving_kubectl: Kubectl) -> None:
    canary = {
        "trafficPercent": 10,
        "predictor": {"name": "next", **sklearn("s3://models/iris2", name=""), "maxReplicas": 2},
    }
    proc = serving_kubectl.apply(isvc("capped", predictor=sklearn(), canary=[canary]), check=False)
    assert proc.returncode != 0 and serving_kubectl.get("inferenceservice", "capped") is None, proc.stderr
    del canary["predictor"]["maxReplicas"]  # the only difference to the object accepted below
    proc = serving_kubectl.apply(isvc("capped", predictor=sklearn(), canary=[canary]), check=False)
    assert proc.returncode == 0, proc.stderr


def _names(k: Kubectl, kind: str) -> set[str]:
    return {o["metadata"]["name"] for o in k.json(kind)["items"]}


def test_controller_builds_deployment_service_and_routes_to_the_gateway(serving_kubectl: Kubectl) -> None:
    k = serving_kubectl
    k.apply(isvc("plain", predictor=sklearn()))
    wait_for("the predictor Deployment", lambda: "plain-predictor" in _names(k, "deployments"))
    wait_for("the predictor Service", lambda: "plain-predictor" in _names(k, "services"))
    wait_for("KServe's HTTPRoutes", lambda: {"plain", "plain-predictor"} <= _names(k, "httproutes"))
    top = k.get("httproute", "plain") or {}
    parent = top["spec"]["parentRefs"][0]
    assert (parent.get("namespace"), parent["name"]) == ("kserve", "kserve-ingress-gateway")
    backends = [b["name"] for rule in top["spec"]["rules"] for b in rule.get("backendRefs") or []]
    assert set(backends) == {"plain-predictor"}
    # The mutating webhook canonicalises the deployment mode and adds what it defaults.
    stored = k.get("inferenceservice", "plain") or {}
    assert stored["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] in ("Standard", "RawDeployment")
    # The pod webhook injects KServe's storage initializer for the model's storage URI.
    pod = wait_for("a predictor pod", lambda: (k.json("pods", "-l", "serving.kserve.io/inferenceservice=plain")
                                               .get("items") or [None])[0])  # fmt: skip
    inits = [c["image"] for c in pod["spec"].get("initContainers") or []]
    assert any("storage-initializer" in image for image in inits), inits


def test_cluster_local_visibility_makes_no_route(serving_kubectl: Kubectl) -> None:
    k = serving_kubectl
    k.apply(isvc("local", predictor=sklearn(), labels={"networking.kserve.io/visibility": "cluster-local"}))
    wait_for("the predictor Service", lambda: "local-predictor" in _names(k, "services"))
    wait_for("a status URL", lambda: ((k.get("inferenceservice", "local") or {}).get("status") or {}).get("url"))
    assert not any(n.startswith("local") for n in _names(k, "httproutes"))


def test_a_canary_gets_its_own_deployment_and_service_but_no_route(serving_kubectl: Kubectl) -> None:
    k = serving_kubectl
    canary = {"trafficPercent": 20, "predictor": {"name": "next", **sklearn("s3://models/iris2", name="")}}
    k.apply(isvc("two", predictor=sklearn(), canary=[canary]))
    wait_for("both Deployments", lambda: {"two-predictor", "two-next-predictor"} <= _names(k, "deployments") or None)
    wait_for("both Services", lambda: {"two-predictor", "two-next-predictor"} <= _names(k, "services") or None)
    wait_for("KServe's top-level HTTPRoute", lambda: "two" in _names(k, "httproutes"))
    top = k.get("httproute", "two") or {}
    backends = {b["name"] for rule in top["spec"]["rules"] for b in rule.get("backendRefs") or []}
    assert "two-next-predictor" not in backends, "KServe v0.20.0 routes no request to a Standard-mode canary"
