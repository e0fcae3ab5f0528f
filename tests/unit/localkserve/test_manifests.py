"""From predictor + ServingRuntime to a revision's Deployment (hack/localkserve/manifests.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from localkserve import manifests

ISVC: dict[str, Any] = {
    "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "labels": {"team": "a"}},
}
RUNTIME: dict[str, Any] = {
    "metadata": {"name": "slipway-predictor", "namespace": "ml"},
    "spec": {
        "supportedModelFormats": [{"name": "slipway", "autoSelect": True}],
        "protocolVersions": ["v1", "v2"],
        "nodeSelector": {"pool": "cpu"},
        "containers": [
            {
                "name": "kserve-container",
                "image": "ghcr.io/slipway-dev/predictor:0.1.0",
                "args": ["--model_name={{.Name}}", "--model_dir", "/mnt/models", "--team={{ .Labels.team }}"],
                "env": [{"name": "NS", "value": "{{.Namespace}}"}, {"name": "LOG", "value": "info"}],
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            }
        ],
    },
}


def predictor(**extra: Any) -> dict[str, Any]:
    model = {
        "modelFormat": {"name": "slipway"},
        "storageUri": "s3://b/m.joblib",
        "env": [{"name": "LOG", "value": "debug"}, {"name": "SLIPWAY_MODEL_VERSION", "value": "iris-v1"}],
        "resources": {"requests": {"cpu": "2"}},
    }
    return {"name": "iris-v1", "model": model, "serviceAccountName": "reader", **extra}


def test_container_merges_runtime_and_model() -> None:
    c = manifests.container(ISVC, predictor(), RUNTIME)
    assert c["name"] == "kserve-container" and c["image"] == "ghcr.io/slipway-dev/predictor:0.1.0"
    assert c["args"] == ["--model_name=iris", "--team=a", "--storage_uri=s3://b/m.joblib", "--http_port=8080"]
    assert c["env"] == [
        {"name": "NS", "value": "ml"},
        {"name": "LOG", "value": "debug"},
        {"name": "SLIPWAY_MODEL_VERSION", "value": "iris-v1"},
    ]
    assert c["resources"] == {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert c["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    assert c["readinessProbe"]["tcpSocket"] == {"port": 8080}


def test_container_keeps_the_runtime_port_flag_and_probe() -> None:
    runtime = copy.deepcopy(RUNTIME)
    spec = runtime["spec"]["containers"][0]
    spec.update(args=["--http_port=9000"], ports=[{"containerPort": 9000}], readinessProbe={"httpGet": {"port": 9000}})
    c = manifests.container(ISVC, predictor(), runtime)
    assert c["args"] == ["--http_port=9000", "--storage_uri=s3://b/m.joblib"]
    assert c["readinessProbe"] == {"httpGet": {"port": 9000}}


def test_revision_deployment_shape() -> None:
    name, d = manifests.revision(ISVC, predictor(minReplicas=2), RUNTIME)
    assert name.startswith("iris-predictor-") and d["metadata"]["name"] == name
    labels = d["metadata"]["labels"]
    assert labels["slipway.dev/component"] == "predictor"
    assert labels["serving.kserve.io/inferenceservice"] == "iris"
    assert labels[manifests.REVISION_LABEL] == name
    assert d["spec"]["selector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": "iris",
        manifests.REVISION_LABEL: name,
    }
    assert d["spec"]["template"]["metadata"]["labels"][manifests.REVISION_LABEL] == name
    assert d["spec"]["replicas"] == 2
    owner = d["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "InferenceService",
        "iris",
        "u-1",
        True,
    )
    pod = d["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "reader" and pod["nodeSelector"] == {"pool": "cpu"}
    assert d["metadata"]["annotations"][manifests.PREDICTOR_ANNOTATION] == "iris-v1"


def test_revision_name_follows_the_spec_only() -> None:
    a, _ = manifests.revision(ISVC, predictor(), RUNTIME)
    assert manifests.revision(ISVC, predictor(), RUNTIME)[0] == a
    assert manifests.revision(ISVC, predictor(minReplicas=3), RUNTIME)[0] != a
    other = predictor()
    other["model"]["storageUri"] = "s3://b/m2.joblib"
    assert manifests.revision(ISVC, other, RUNTIME)[0] != a


def test_find_runtime() -> None:
    cluster = [
        {"metadata": {"name": "cluster-rt"}, "spec": {"supportedModelFormats": [{"name": "onnx", "autoSelect": True}]}}
    ]
    assert manifests.find_runtime({"model": {"runtime": "slipway-predictor"}}, [RUNTIME], cluster) is RUNTIME
    assert manifests.find_runtime({"model": {"runtime": "cluster-rt"}}, [RUNTIME], cluster) is cluster[0]
    auto = {"model": {"modelFormat": {"name": "slipway"}, "protocolVersion": "v2"}}
    assert manifests.find_runtime(auto, [RUNTIME], cluster) is RUNTIME
    with pytest.raises(manifests.RuntimeProblem) as err:
        manifests.find_runtime({"model": {"runtime": "nope"}}, [RUNTIME], cluster)
    assert err.value.reason == "RuntimeNotRecognized"
    with pytest.raises(manifests.RuntimeProblem) as err:
        manifests.find_runtime({"model": {"modelFormat": {"name": "xgboost"}}}, [RUNTIME], cluster)
    assert err.value.reason == "NoSupportingRuntime"
    disabled = copy.deepcopy(RUNTIME)
    disabled["spec"]["disabled"] = True
    with pytest.raises(manifests.RuntimeProblem) as err:
        manifests.find_runtime({"model": {"runtime": "slipway-predictor"}}, [disabled], [])
    assert err.value.reason == "RuntimeDisabled"


def test_runtime_pod_fields_reach_the_pod() -> None:
    """As the real runtimes/predictor/servingruntime.yaml: a /tmp volume its container mounts,
    pod annotations for metrics scraping."""
    runtime = copy.deepcopy(RUNTIME)
    runtime["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    runtime["spec"]["annotations"] = {"prometheus.kserve.io/port": "8080"}
    runtime["spec"]["containers"][0]["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    extra = {"name": "cache", "emptyDir": {"medium": "Memory"}}
    _, d = manifests.revision(ISVC, predictor(volumes=[extra], annotations={"a": "b"}), runtime)
    template = d["spec"]["template"]
    assert template["spec"]["volumes"] == [{"name": "tmp", "emptyDir": {}}, extra]
    assert template["spec"]["containers"][0]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert template["metadata"]["annotations"] == {"prometheus.kserve.io/port": "8080", "a": "b"}


def test_logger_is_part_of_the_revision_and_readable_back() -> None:
    plain, d0 = manifests.revision(ISVC, predictor(), RUNTIME)
    logged, d1 = manifests.revision(
        ISVC, predictor(logger={"url": "http://drift/v1/events/a/b/c", "mode": "request"}), RUNTIME
    )
    assert logged != plain  # as the agent sidecar's args are: a new revision
    assert manifests.sink_of(d1) == ("http://drift/v1/events/a/b/c", "request")
    assert manifests.sink_of(d0) is None
