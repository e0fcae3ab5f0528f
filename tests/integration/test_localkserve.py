"""The local KServe gateway (hack/localkserve) and Prometheus against a real control plane.

A private cluster (own state dir, free ports) runs with `kserve=True, prometheus=True`. The
gateway plays KServe for Serverless InferenceServices only; Standard mode is KServe's own
(its real controller: tests/integration/test_kserve_standard.py on `serving_cluster`), and a
Standard-mode InferenceService here gets nothing from the gateway. The predictor pods run a
stand-in predictor (hack/localkserve/standin.py) through the local executor, as image
ghcr.io/slipway-dev/predictor:0.1.0 with the ServingRuntime's command pointing at it: two
pods of one InferenceService both listen on container port 8080, each at its own pod IP.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from localcluster import Cluster
from localcluster.components import GATEWAY

from tests.conftest import REPO, Kubectl, wait_for

pytestmark = pytest.mark.integration

IMAGE = "ghcr.io/slipway-dev/predictor:0.1.0"
REVISION_LABEL = "localkserve.slipway.dev/revision"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("localkserve"), free_ports=True, kserve=True, prometheus=True)
    timings = c.up()
    print("localcluster start-up:", {k: round(v, 1) for k, v in timings.items()})
    try:
        yield c
    finally:
        c.down()


def runtime(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": "slipway-predictor", "namespace": namespace},
        "spec": {
            "supportedModelFormats": [{"name": "slipway", "autoSelect": True}],
            "protocolVersions": ["v1", "v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": IMAGE,
                    "command": ["python", str(REPO / "hack" / "localkserve" / "standin.py")],
                    "args": ["--model_name={{.Name}}", "--model_dir=/mnt/models", "--http_port=8080"],
                    "env": [{"name": "STANDIN_STARTUP_SECONDS", "value": "0.5"}],  # listens late: probes matter
                    "ports": [{"containerPort": 8080, "name": "h2c", "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                }
            ],
        },
    }


def predictor(version: str, **env: str) -> dict[str, Any]:
    variables = [
        {"name": "SLIPWAY_MODEL_VERSION", "value": version},
        *({"name": k, "value": v} for k, v in env.items()),
    ]
    model = {
        "name": "kserve-container",  # the v0.20 CRD requires it in spec.canary[].predictor.model
        "modelFormat": {"name": "slipway"},
        "runtime": "slipway-predictor",
        "protocolVersion": "v2",
        "storageUri": f"s3://models/{version}/model.joblib",
        "env": variables,
    }
    return {"name": version, "minReplicas": 1, "model": model}


def create(kubectl: Kubectl, name: str, mode: str, spec: dict[str, Any]) -> None:
    kubectl.apply(json.dumps(runtime(kubectl.namespace)))
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "annotations": {"serving.kserve.io/deploymentMode": mode}},
        "spec": spec,
    }
    kubectl.apply(json.dumps(isvc))


def patch(kubectl: Kubectl, name: str, spec: dict[str, Any]) -> None:
    kubectl("patch", "inferenceservice", name, "--type=merge", "-p", json.dumps({"spec": spec}))


def isvc_status(kubectl: Kubectl, name: str) -> dict[str, Any]:
    return dict(((kubectl.get("inferenceservice", name) or {}).get("status")) or {})


def traffic(st: dict[str, Any]) -> list[tuple[str, int, bool]]:
    entries = ((st.get("components") or {}).get("predictor") or {}).get("traffic") or []
    return [(t["revisionName"], t["percent"], t["latestRevision"]) for t in entries]


def ready_with(kubectl: Kubectl, name: str, generation_traffic: int) -> Any:
    """A check: the status is Ready and lists `generation_traffic` traffic entries for the
    current generation."""

    def check() -> dict[str, Any] | None:
        obj = kubectl.get("inferenceservice", name) or {}
        st = obj.get("status") or {}
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or [])
        current = st.get("observedGeneration") == obj["metadata"]["generation"]
        return st if ready and current and len(traffic(st)) == generation_traffic else None

    return check


def revisions_running(kubectl: Kubectl, name: str) -> dict[str, dict[str, Any]]:
    listing = kubectl.json("deployments", "-l", f"serving.kserve.io/inferenceservice={name}")
    return {d["metadata"]["name"]: d for d in listing["items"]}


def pods_of(kubectl: Kubectl, name: str) -> list[dict[str, Any]]:
    return list(kubectl.json("pods", "-l", f"serving.kserve.io/inferenceservice={name}")["items"])


def versions(cluster: Cluster, host: str, model: str, n: int) -> Counter[str]:
    """`n` v1 predictions through the gateway (one keep-alive connection); count by the
    version that answered."""
    url = urllib.parse.urlsplit(cluster.gateway_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    seen: Counter[str] = Counter()
    body = json.dumps({"instances": [[1.0, 2.0]]}).encode()  # bytes: sent with the headers in one segment
    for _ in range(n):
        conn.request("POST", f"/v1/models/{model}:predict", body=body, headers={"Host": host})
        resp = conn.getresponse()
        payload = resp.read()
        seen[json.loads(payload)["model_version"] if resp.status == 200 else f"HTTP {resp.status}"] += 1
    conn.close()
    return seen


def host_of(st: dict[str, Any]) -> str:
    return urllib.parse.urlsplit(st["url"]).hostname or ""


def prometheus(cluster: Cluster, path: str, **params: str) -> Any:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{cluster.prometheus_url}{path}?{query}", timeout=5) as resp:
        return json.loads(resp.read())["data"]


def up_pods(cluster: Cluster, namespace: str) -> dict[str, str]:
    """pod -> revision of the predictor pods Prometheus scrapes successfully."""
    result = prometheus(cluster, "/api/v1/query", query=f'up{{namespace="{namespace}"}} == 1')["result"]
    return {r["metric"]["pod"]: r["metric"]["revision"] for r in result}


def active_targets(cluster: Cluster, namespace: str) -> set[str]:
    targets = prometheus(cluster, "/api/v1/targets", state="active")["activeTargets"]
    return {t["labels"]["pod"] for t in targets if t["labels"].get("namespace") == namespace}


def test_serverless_canary_promotion_and_prometheus(cluster: Cluster, kubectl: Kubectl) -> None:
    create(kubectl, "wine", "Serverless", {"predictor": predictor("wine-v1")})
    st = wait_for("wine Ready", ready_with(kubectl, "wine", 1), timeout=60)
    [(first, _, _)] = traffic(st)
    assert traffic(st) == [(first, 100, True)] and st["url"] == f"http://wine.{kubectl.namespace}.example.com"
    assert st["components"]["predictor"]["latestRolledoutRevision"] == first

    patch(kubectl, "wine", {"predictor": {**predictor("wine-v2"), "canaryTrafficPercent": 30}})

    def split() -> dict[str, Any] | None:
        s = ready_with(kubectl, "wine", 2)()
        return s if s and traffic(s)[0][0] != first else None  # the new revision is ready and takes its share

    st = wait_for("wine-v2 taking 30%", split, timeout=60)
    (latest, _, _), _ = traffic(st)
    assert traffic(st) == [(latest, 30, True), (first, 70, False)]
    predictor_status = st["components"]["predictor"]
    assert (predictor_status["latestCreatedRevision"], predictor_status["latestReadyRevision"]) == (latest, latest)
    assert predictor_status["latestRolledoutRevision"] == first
    running = revisions_running(kubectl, "wine")
    assert set(running) == {first, latest}
    assert all(d["status"].get("readyReplicas") == 1 for d in running.values())
    # Both pods listen on container port 8080, each at its own pod IP.
    pods = pods_of(kubectl, "wine")
    assert len(pods) == 2 and len({p["status"]["podIP"] for p in pods}) == 2
    seen = versions(cluster, host_of(st), "wine", 300)
    assert 0.2 <= seen["wine-v2"] / 300 <= 0.4 and seen["wine-v1"] + seen["wine-v2"] == 300, seen

    # Prometheus scrapes both pods, labelled by revision, and sees the requests they served.
    by_pod = wait_for(
        "Prometheus scraping both pods",
        lambda: len(up_pods(cluster, kubectl.namespace)) == 2 and up_pods(cluster, kubectl.namespace),
    )
    assert set(by_pod.values()) == {first, latest}
    served = f'sum by (version) (slipway_predictor_requests_total{{namespace="{kubectl.namespace}",outcome="ok"}})'

    def scraped() -> dict[str, float] | None:
        result = {
            r["metric"]["version"]: float(r["value"][1])
            for r in prometheus(cluster, "/api/v1/query", query=served)["result"]
        }
        return result if sum(result.values()) == 300 else None

    assert wait_for("Prometheus seeing the 300 requests", scraped) == {k: float(v) for k, v in seen.items()}

    patch(kubectl, "wine", {"predictor": {**predictor("wine-v2"), "canaryTrafficPercent": None}})
    st = wait_for(
        "wine-v2 promoted", lambda: (s := ready_with(kubectl, "wine", 1)()) and traffic(s)[0][0] == latest and s
    )
    assert traffic(st) == [(latest, 100, True)]
    predictor_status = st["components"]["predictor"]
    assert (predictor_status["latestRolledoutRevision"], predictor_status["previousRolledoutRevision"]) == (
        latest,
        first,
    )
    wait_for("wine-v1's Deployment removed", lambda: set(revisions_running(kubectl, "wine")) == {latest})
    # Promotion keeps the canary's pod (canaryTrafficPercent is not part of the revision).
    latest_pod = next(p["metadata"] for p in pods if p["metadata"]["labels"][REVISION_LABEL] == latest)
    live = [p["metadata"]["uid"] for p in pods_of(kubectl, "wine") if not p["metadata"].get("deletionTimestamp")]
    assert live == [latest_pod["uid"]]
    assert versions(cluster, host_of(st), "wine", 30) == {"wine-v2": 30}
    # Discovery follows: the old pod is no longer a target.
    wait_for(
        "the old pod gone from Prometheus' targets",
        lambda: active_targets(cluster, kubectl.namespace) == {latest_pod["name"]},
    )


def test_failing_canary_is_reported_and_takes_no_traffic(cluster: Cluster, kubectl: Kubectl) -> None:
    create(kubectl, "iris", "Serverless", {"predictor": predictor("iris-v1")})
    wait_for("iris Ready", ready_with(kubectl, "iris", 1), timeout=60)
    broken = predictor("iris-v3", STANDIN_FAIL="artifact sha256 mismatch")
    patch(kubectl, "iris", {"predictor": {**broken, "canaryTrafficPercent": 50}})

    def failed() -> dict[str, Any] | None:
        st = isvc_status(kubectl, "iris")
        cond: dict[str, Any] = next((c for c in st.get("conditions") or [] if c["type"] == "PredictorReady"), {})
        return st if cond.get("status") == "False" and st.get("url") else None

    st = wait_for("PredictorReady False for the broken canary", failed, timeout=60)
    cond = next(c for c in st["conditions"] if c["type"] == "PredictorReady")
    assert cond["reason"] == "RevisionFailed" and "artifact sha256 mismatch" in cond["message"]
    assert st["modelStatus"]["lastFailureInfo"]["message"] == "artifact sha256 mismatch"
    # Knative's latest *ready* revision is still iris-v1: it takes both shares.
    predictor_status = st["components"]["predictor"]
    assert predictor_status["latestCreatedRevision"] != predictor_status["latestReadyRevision"]
    assert {t[0] for t in traffic(st)} == {predictor_status["latestReadyRevision"]}
    assert versions(cluster, host_of(st), "iris", 40) == {"iris-v1": 40}

    # Deleting the InferenceService takes its Deployments (owner references) and its route.
    kubectl("delete", "inferenceservice", "iris", "--wait=false")
    wait_for("the Deployments garbage-collected", lambda: not revisions_running(kubectl, "iris"))
    assert wait_for("no route", lambda: versions(cluster, host_of(st), "iris", 1).get("HTTP 404"))


def test_standard_mode_is_left_to_kserve(cluster: Cluster, kubectl: Kubectl) -> None:
    """A Standard-mode InferenceService is KServe's own controller's: the gateway makes no
    Deployment for it, writes no status, does not route it or list it for Prometheus."""
    spec = {"predictor": predictor("iris-v1"), "canary": [{"predictor": predictor("iris-v2"), "trafficPercent": 20}]}
    create(kubectl, "iris", "Standard", spec)
    create(kubectl, "raw", "RawDeployment", {"predictor": predictor("raw-v1")})
    # A Serverless one created after them: once it is Ready, the gateway has seen all three.
    create(kubectl, "wine", "Serverless", {"predictor": predictor("wine-v1")})
    wait_for("wine Ready", ready_with(kubectl, "wine", 1), timeout=60)
    gateway_log = cluster.state.logs / "localkserve.log"
    for name in ("iris", "raw"):
        assert isvc_status(kubectl, name) == {}
        assert revisions_running(kubectl, name) == {} and pods_of(kubectl, name) == []
        left = f"{kubectl.namespace}/{name}: deploymentMode Standard: left to KServe's controller"
        assert gateway_log.read_text().count(left) == 1
    with urllib.request.urlopen(f"{cluster.gateway_url}/_localkserve/routes", timeout=5) as resp:
        routes = {(r["namespace"], r["name"]) for r in json.loads(resp.read())}
    assert routes & {(kubectl.namespace, n) for n in ("iris", "raw", "wine")} == {(kubectl.namespace, "wine")}
    assert versions(cluster, f"raw.{kubectl.namespace}", "raw", 1) == {"HTTP 404": 1}
    targets = json.loads((cluster.file_sd_dir / "predictors.json").read_text())
    listed = {t["labels"]["inferenceservice"] for t in targets if t["labels"]["namespace"] == kubectl.namespace}
    assert listed == {"wine"}


def test_gateway_restart_keeps_routing_and_status(cluster: Cluster, kubectl: Kubectl) -> None:
    """Serverless: which revision is the rolled-out one lives only in the status."""
    create(kubectl, "iris", "Serverless", {"predictor": predictor("iris-v1")})
    wait_for("iris Ready", ready_with(kubectl, "iris", 1), timeout=60)
    patch(kubectl, "iris", {"predictor": {**predictor("iris-v2"), "canaryTrafficPercent": 50}})

    def split() -> dict[str, Any] | None:
        st = ready_with(kubectl, "iris", 2)()
        return st if st and len({t[0] for t in traffic(st)}) == 2 else None

    before = wait_for("iris-v2 taking 50%", split, timeout=60)
    obj = kubectl.get("inferenceservice", "iris") or {}
    deployments = {n: d["metadata"]["uid"] for n, d in revisions_running(kubectl, "iris").items()}

    cluster.procs.stop([GATEWAY], 10.0)
    timings = cluster.up()
    assert set(timings) >= {"serving", "ready"}  # only the gateway was missing
    seen = versions(cluster, host_of(before), "iris", 200)
    assert 0.35 <= seen["iris-v2"] / 200 <= 0.65 and seen["iris-v1"] + seen["iris-v2"] == 200, seen
    time.sleep(1.0)  # the restarted gateway has reconciled (it routes); nothing to write
    after = kubectl.get("inferenceservice", "iris") or {}
    assert after["status"] == before
    assert after["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]  # no status write
    assert {n: d["metadata"]["uid"] for n, d in revisions_running(kubectl, "iris").items()} == deployments


def test_the_real_predictor_runtime_behind_the_gateway(
    cluster: Cluster, kubectl: Kubectl, s3_server: Any, s3_bucket: str, tmp_path: Any
) -> None:
    """runtimes/predictor's own ServingRuntime, as is: the gateway drops --model_dir for
    --storage_uri, the runtime downloads the artifact from S3 and checks its sha256."""
    pytest.importorskip("kserve")
    pytest.importorskip("sklearn")
    import boto3
    import joblib
    import yaml
    from sklearn.linear_model import LogisticRegression

    path = tmp_path / "model.joblib"
    joblib.dump(LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.2]], [0, 1, 0, 1]), path)
    env = s3_server.env()
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    s3.upload_file(str(path), s3_bucket, "v1/model.joblib")
    runtime_doc = yaml.safe_load((REPO / "runtimes" / "predictor" / "servingruntime.yaml").read_text())
    kubectl.apply(json.dumps(runtime_doc))
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3"}, "stringData": env}
    kubectl.apply(json.dumps(secret))
    signature = {"inputs": [{"name": "a", "dtype": "float64"}, {"name": "b", "dtype": "float64"}]}
    model_env = [
        {"name": "SLIPWAY_MODEL_VERSION", "value": "real-v1"},
        {"name": "SLIPWAY_FRAMEWORK", "value": "sklearn"},
        {"name": "SLIPWAY_ARTIFACT_SHA256", "value": hashlib.sha256(path.read_bytes()).hexdigest()},
        {"name": "SLIPWAY_SIGNATURE", "value": json.dumps(signature)},
        {"name": "AWS_ENDPOINT_URL", "value": env["AWS_ENDPOINT_URL"]},
        {"name": "AWS_DEFAULT_REGION", "value": env["AWS_DEFAULT_REGION"]},
        *(
            {"name": k, "valueFrom": {"secretKeyRef": {"name": "s3", "key": k}}}
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ),
    ]
    model = {
        "modelFormat": {"name": "slipway"},
        "runtime": "slipway-predictor",
        "protocolVersion": "v2",
        "storageUri": f"s3://{s3_bucket}/v1/model.joblib",
        "env": model_env,
    }
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "real", "annotations": {"serving.kserve.io/deploymentMode": "Serverless"}},
        "spec": {"predictor": {"name": "real-v1", "minReplicas": 1, "model": model}},
    }
    kubectl.apply(json.dumps(isvc))
    st = wait_for("the real predictor Ready", ready_with(kubectl, "real", 1), timeout=90)
    url = urllib.parse.urlsplit(cluster.gateway_url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    payload = {
        "inputs": [
            {"name": "a", "shape": [1], "datatype": "FP64", "data": [0.0]},
            {"name": "b", "shape": [1], "datatype": "FP64", "data": [1.0]},
        ]
    }
    headers = {"Host": host_of(st), "Content-Type": "application/json"}
    conn.request("POST", "/v2/models/real/infer", json.dumps(payload).encode(), headers)
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    assert resp.status == 200 and answer["model_version"] == "real-v1", answer
    conn.close()
