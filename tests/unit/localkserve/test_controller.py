"""The gateway's controller (hack/localkserve/controller.py) against a recording fake API: it plays
KServe for Serverless InferenceServices only and leaves every other one to KServe's controller."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, cast

import pytest
from localexec.kube import Api
from localkserve import manifests
from localkserve.controller import Controller, Settings
from localkserve.routing import Table

RUNTIME: dict[str, Any] = {
    "metadata": {"name": "slipway-predictor", "namespace": "ml", "resourceVersion": "1"},
    "spec": {
        "supportedModelFormats": [{"name": "slipway", "autoSelect": True}],
        "protocolVersions": ["v1", "v2"],
        "containers": [{"name": "kserve-container", "image": "predictor:0.1.0", "args": ["--model_name={{.Name}}"]}],
    },
}


def predictor(version: str, **extra: Any) -> dict[str, Any]:
    model = {"modelFormat": {"name": "slipway"}, "runtime": "slipway-predictor", "storageUri": f"s3://m/{version}"}
    return {"name": version, "model": model, **extra}


def isvc(name: str, mode: str | None, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    annotations = {"serving.kserve.io/deploymentMode": mode} if mode else {}
    meta = {"name": name, "namespace": "ml", "uid": f"uid-{name}", "generation": 1, "resourceVersion": "5"}
    return {"metadata": {**meta, "annotations": annotations}, "spec": spec or {"predictor": predictor("v1")}}


class FakeApi:
    """Records every write; answers it with the body, as the apiserver would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        self.calls.append((method, path, body))
        if isinstance(body, dict) and "metadata" in body:
            return {**body, "metadata": {**body["metadata"], "resourceVersion": str(10 + len(self.calls))}}
        return {}


def controller(tmp_path: Path, default_mode: str = "Serverless") -> tuple[Controller, FakeApi]:
    api = FakeApi()
    c = Controller(cast(Api, api), Table(seed=1), Settings(default_mode=default_mode, file_sd=tmp_path / "sd.json"))
    c.runtimes.put(RUNTIME)
    return c, api


def own_revision(c: Controller, owner: dict[str, Any]) -> None:
    """A Deployment of the gateway's (and its ready pod) for `owner`, as if it had been Serverless before."""
    name, dep = manifests.revision(owner, predictor("v1"), RUNTIME)
    dep["metadata"] |= {"uid": "dep-1", "resourceVersion": "3"}
    c.deployments.put(dep)
    pod = {
        "metadata": {
            "name": f"{name}-abc",
            "namespace": "ml",
            "resourceVersion": "4",
            "labels": dep["spec"]["template"]["metadata"]["labels"],
        },
        "spec": dep["spec"]["template"]["spec"],
        "status": {"phase": "Running", "podIP": "198.18.0.5", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    c.pods.put(pod)


@pytest.mark.parametrize("mode", ["Serverless", "Knative", None])
def test_a_serverless_inference_service_is_played(tmp_path: Path, mode: str | None) -> None:
    c, api = controller(tmp_path)
    spec = {"predictor": predictor("v1"), "canary": [{"predictor": predictor("v2"), "trafficPercent": 20}]}
    c.isvcs.put(isvc("iris", mode, spec))
    c.reconcile(("ml", "iris"))
    created = [body for method, path, body in api.calls if method == "POST" and path.endswith("/deployments")]
    assert len(created) == 1  # spec.canary is Standard mode's: ignored, as KServe's Knative reconciler does
    written = [body for method, path, body in api.calls if method == "PUT" and path.endswith("/iris/status")]
    assert len(written) == 1 and written[0]["status"]["deploymentMode"] == "Serverless"
    assert "canaryStatuses" not in written[0]["status"]
    assert [(r.namespace, r.name) for r in c.table.routes()] == [("ml", "iris")]


@pytest.mark.parametrize(
    ("mode", "default"), [("Standard", "Serverless"), ("RawDeployment", "Serverless"), (None, "Standard")]
)
def test_any_other_inference_service_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str | None, default: str
) -> None:
    c, api = controller(tmp_path, default)
    obj = isvc("iris", mode, {"predictor": predictor("v1", logger={"url": "http://sink/", "mode": "all"})})
    c.isvcs.put(obj)
    with caplog.at_level(logging.INFO, logger="localkserve"):
        c.reconcile(("ml", "iris"))
        c.reconcile(("ml", "iris"))
        c.write_discovery()
    assert api.calls == []  # no Deployment, no status
    assert c.table.routes() == []  # no routing, hence no payload logging
    assert json.loads((tmp_path / "sd.json").read_text()) == []
    left = [r.getMessage() for r in caplog.records if "left to KServe's controller" in r.getMessage()]
    assert left == ["ml/iris: deploymentMode Standard: left to KServe's controller"]  # once per object

    # A new object of that name is another object: logged again.
    c.isvcs.put({**obj, "metadata": {**obj["metadata"], "uid": "uid-2"}})
    with caplog.at_level(logging.INFO, logger="localkserve"):
        c.reconcile(("ml", "iris"))
    assert len([r for r in caplog.records if "left to KServe's controller" in r.getMessage()]) == 2


def test_the_gateways_own_leftovers_go_when_an_inference_service_is_not_serverless(tmp_path: Path) -> None:
    """Say the gateway served it before (another default mode, an annotation changed without
    KServe's webhook): its route and Deployments go, its pods leave the discovery file."""
    c, api = controller(tmp_path)
    served = isvc("iris", "Serverless")
    own_revision(c, served)
    c.isvcs.put(served)
    c.reconcile(("ml", "iris"))
    c.write_discovery()
    assert [t["labels"]["inferenceservice"] for t in json.loads((tmp_path / "sd.json").read_text())] == ["iris"]

    api.calls.clear()
    standard = isvc("iris", "Standard")
    standard["metadata"]["resourceVersion"] = "99"
    c.isvcs.put(standard)
    c.reconcile(("ml", "iris"))
    c.write_discovery()
    assert [(method, path.rsplit("/", 2)[-2]) for method, path, _ in api.calls] == [("DELETE", "deployments")]
    assert c.table.routes() == []
    assert json.loads((tmp_path / "sd.json").read_text()) == []
