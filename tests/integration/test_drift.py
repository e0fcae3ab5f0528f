"""DriftMonitor on the local control plane with the real drift runtime: inputs go through Traefik to a
predictor KServe's controller deployed, KServe's agent (its payload logger) posts them to the runtime, the
operator folds each window into status, retrains once after persistent drift (and not again within the
cooldown, also after an operator restart); during a canary the agents of both versions' pods post each
version's inputs under its own name, and a promotion switches the reference data."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression
from slipway_dev.kubectl import Kubectl

from tests.conftest import REPO, wait_for

pytestmark = pytest.mark.integration

FEATURES = [f"f{i}" for i in range(5)]
WINDOW = 100


def register(kubectl: Kubectl, s3: Any, name: str, version: int, seed: int) -> np.ndarray[Any, Any]:
    """A real scikit-learn model with its reference sample in S3, registered as a ModelVersion; returns the
    reference sample."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(600, len(FEATURES))), columns=FEATURES)
    model = LogisticRegression().fit(x, (x["f0"] + x["f1"] > 0).astype(int))
    buf = io.BytesIO()
    joblib.dump(model, buf)
    prefix = f"{kubectl.namespace}/{name}"
    s3.put_object(Bucket="models", Key=f"{prefix}/model.joblib", Body=buf.getvalue())
    ref = io.BytesIO()
    x.iloc[:500].to_parquet(ref, index=False)
    s3.put_object(Bucket="models", Key=f"{prefix}/reference.parquet", Body=ref.getvalue())
    spec = {
        "modelName": "drift-demo", "version": version, "framework": "sklearn",
        "artifact": {"uri": f"s3://models/{prefix}/model.joblib", "format": "joblib",
                     "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
                     "credentialsSecretRef": {"name": "s3-credentials"}},
        "signature": {"inputs": [{"name": f, "dtype": "float64"} for f in FEATURES]},
        "referenceData": {"uri": f"s3://models/{prefix}/reference.parquet"},
    }  # fmt: skip
    doc = {"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name}, "spec": spec}
    kubectl.apply(yaml.safe_dump(doc))
    return np.asarray(x.iloc[:500].to_numpy())


def predict(kubectl: Kubectl, cluster: Any, rows: np.ndarray[Any, Any], batch: int = 20) -> None:
    """Through the data plane, to the host of the InferenceService's status.url, as a client would."""
    url = urllib.parse.urlsplit(((kubectl.get("inferenceservice", "svc") or {}).get("status") or {})["url"])
    for start in range(0, len(rows), batch):
        body = json.dumps({"instances": rows[start : start + batch].tolist()}).encode()
        req = urllib.request.Request(
            f"{cluster.ingress_url}/v1/models/svc:predict",
            data=body,
            headers={"Host": url.netloc, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                assert resp.status == 200
        except urllib.error.HTTPError as e:  # say what served it: the pods behind the service at that moment
            pods = kubectl.json("pods", "-l", "serving.kserve.io/inferenceservice=svc")["items"]
            seen = [(p["metadata"]["name"], p["metadata"].get("deletionTimestamp"),
                     [c["name"] for c in p["spec"]["containers"]], (p.get("status") or {}).get("conditions"))
                    for p in pods]  # fmt: skip
            raise AssertionError(f"predict {start}: {e.code} {e.read()[:300]!r}; pods: {seen}") from e


def logging_pods(kubectl: Kubectl) -> bool:
    """The service's one pod carries KServe's agent (the payload logger), is Ready with every container ready (the
    agent, which takes the requests, included) and is not being deleted."""
    pods = kubectl.json("pods", "-l", "serving.kserve.io/inferenceservice=svc")["items"]
    return len(pods) == 1 and all(
        not p["metadata"].get("deletionTimestamp")
        and any(c["name"] == "agent" for c in p["spec"]["containers"])
        and any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])
        and all(c.get("ready") for c in (p.get("status") or {}).get("containerStatuses") or [{}])
        for p in pods
    )


def routed_to_logging_pod(kubectl: Kubectl, cluster: Any) -> bool:
    """The service's one pod logs its inputs (logging_pods) and the gateway balances this namespace's requests over
    that pod's address alone, as Traefik's API says: Traefik reloads EndpointSlices at most every couple of
    seconds, so right after KServe rolled the Deployment it still sends some requests to the pod that went (502)."""
    if not logging_pods(kubectl):
        return False
    pod = kubectl.json("pods", "-l", "serving.kserve.io/inferenceservice=svc")["items"][0]
    with urllib.request.urlopen(f"{cluster.gateway_api_url}/rawdata", timeout=5) as resp:
        services = json.load(resp).get("services") or {}
    hosts = {urllib.parse.urlsplit(server["url"]).hostname
             for name, service in services.items() if kubectl.namespace in name
             for server in (service.get("loadBalancer") or {}).get("servers") or []}  # fmt: skip
    return hosts == {(pod.get("status") or {}).get("podIP")}


def runtime_rows(url: str, namespace: str) -> dict[str, float]:
    """Rows the drift runtime accepted per version (its slipway_drift_rows counter), for this monitor."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "slipway_drift_rows_total" and labels.get("namespace") == namespace:
                out[labels["version"]] = out.get(labels["version"], 0.0) + sample.value
    return out


def monitor_versions(url: str, namespace: str) -> dict[str, str]:
    """The versions the drift runtime is configured with for the monitor, and their roles: a version's events are
    refused (404) until the operator has configured it."""
    with urllib.request.urlopen(f"{url}/v1/monitors/{namespace}/dm", timeout=5) as resp:
        return {v: c["role"] for v, c in json.load(resp)["config"]["versions"].items()}


def status(kubectl: Kubectl) -> dict[str, Any]:
    return (kubectl.get("driftmonitor", "dm") or {}).get("status") or {}


def rollout_phase(kubectl: Kubectl) -> str | None:
    return ((kubectl.get("rollout", "svc") or {}).get("status") or {}).get("phase")


def windows_at_least(kubectl: Kubectl, n: int) -> Any:
    return lambda: (st := status(kubectl)).get("windowsEvaluated", 0) >= n and st


def retrain_jobs(kubectl: Kubectl) -> list[str]:
    out = kubectl.json("trainingjobs", "-l", "slipway.dev/drift-monitor=dm")
    return sorted(j["metadata"]["name"] for j in out["items"])


def test_drift_windows_retraining_cooldown_and_reference_switch(
    serving_kubectl: Kubectl, serving_cluster: Any, s3: Any, drift_server: Any, serving_operator_factory: Any
) -> None:
    kubectl, cluster, operator_factory = serving_kubectl, serving_cluster, serving_operator_factory
    kubectl.apply(REPO / "examples" / "s3-credentials.yaml")
    kubectl.apply(REPO / "runtimes" / "predictor" / "servingruntime.yaml")
    reference = register(kubectl, s3, "dd-v1", 1, seed=1)
    register(kubectl, s3, "dd-v2", 2, seed=2)
    env = {"SLIPWAY_DRIFT_URL": drift_server.url, "SLIPWAY_DRIFT_POLL_SECONDS": "1"}
    op = operator_factory(**env)
    rollout = {
        "apiVersion": "slipway.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "svc"},
        "spec": {"modelVersionRef": {"name": "dd-v1"},
                 "inferenceService": {"predictor": {"protocolVersion": "v1"}},
                 "canary": {"steps": [{"weight": 100, "holdSeconds": 0}]}},
    }  # fmt: skip
    template = yaml.safe_load((REPO / "examples" / "driftmonitor.yaml").read_text())["spec"]["retrain"]["template"]
    template["runPolicy"] = {"suspend": True}  # the job itself is not under test here: keep the CPU free
    monitor = {
        "apiVersion": "slipway.dev/v1alpha1", "kind": "DriftMonitor", "metadata": {"name": "dm"},
        "spec": {"rolloutRef": {"name": "svc"}, "detector": {"method": "ks", "pValue": 0.05, "windowSize": WINDOW},
                 "retrain": {"consecutiveWindows": 2, "cooldownSeconds": 3600, "template": template}},
    }  # fmt: skip
    kubectl.apply(yaml.safe_dump_all([rollout, monitor]))
    wait_for("monitor Ready", lambda: kubectl.condition("driftmonitor", "dm", "Ready").get("status") == "True", 120)
    isvc = kubectl.get("inferenceservice", "svc") or {}
    assert isvc["spec"]["predictor"]["logger"]["url"] == f"{drift_server.url}/v1/events/{kubectl.namespace}/dm/dd-v1"
    wait_for("service Ready", lambda: kubectl.condition("rollout", "svc", "Ready").get("status") == "True", 180)
    # KServe's agent fronts the predictor (payload logging): it is ready only when the predictor's own probe
    # passes (the ServingRuntime's readinessProbe, handed over as SERVING_READINESS_PROBE), else a Ready pod
    # answers 502 until the predictor listens.
    # The service may have come up before the monitor's logger was added (the Rollout's first pass can precede
    # the monitor's): KServe then rolls its Deployment, and a request to a pod on its way out gets a 502.
    # Wait until the one pod left logs (has the agent), is Ready, and is all the gateway sends requests to.
    wait_for(
        "the gateway routes only to the pod that logs its inputs", lambda: routed_to_logging_pod(kubectl, cluster), 180
    )
    pods = kubectl.json("pods", "-l", "serving.kserve.io/inferenceservice=svc")["items"]
    agents = [c for p in pods for c in p["spec"]["containers"] if c["name"] == "agent"]
    assert agents, [c["name"] for p in pods for c in p["spec"]["containers"]]
    probes = [e.get("value", "") for c in agents for e in c.get("env", []) if e["name"] == "SERVING_READINESS_PROBE"]
    assert probes and all("/v2/health/ready" in p for p in probes), probes

    # Inputs drawn from the reference itself: no drift (a fresh sample would drift by chance 5% of the time).
    predict(kubectl, cluster, reference[:WINDOW])
    st = wait_for("first window", windows_at_least(kubectl, 1))
    assert st["lastWindow"]["drift"] is False and st["lastWindow"]["modelVersion"] == "dd-v1"
    assert kubectl.condition("driftmonitor", "dm", "DriftDetected")["status"] == "False"
    assert retrain_jobs(kubectl) == []

    shifted = np.random.default_rng(7).normal(size=(2 * WINDOW, 5)) + np.array([1.5, 0, 0, 0, 0])
    predict(kubectl, cluster, shifted)
    st = wait_for("retraining", lambda: (s := status(kubectl)).get("lastRetrain") and s)
    assert st["windowsEvaluated"] == 3 and st["lastWindow"]["drift"] is True
    assert st["lastWindow"]["featurePValues"]["f0"] < 1e-3
    assert kubectl.condition("driftmonitor", "dm", "DriftDetected")["status"] == "True"
    (job,) = retrain_jobs(kubectl)
    assert st["lastRetrain"]["jobName"] == job
    annotations = (kubectl.get("trainingjob", job) or {})["metadata"]["annotations"]
    assert annotations["slipway.dev/drifted-version"] == "dd-v1"
    assert "2 drifted windows in a row" in annotations["slipway.dev/retrain-reason"]

    # A second burst within the cooldown retrains nothing, also across an operator crash.
    predict(kubectl, cluster, shifted)
    wait_for("two more windows", windows_at_least(kubectl, 5))
    assert retrain_jobs(kubectl) == [job]
    op.stop(kill=True)
    operator_factory(**env)
    predict(kubectl, cluster, shifted)
    st = wait_for("two more windows after the restart", windows_at_least(kubectl, 7))
    assert retrain_jobs(kubectl) == [job]
    assert st["consecutiveDriftWindows"] >= 2
    assert "cooldown" in kubectl.condition("driftmonitor", "dm", "Ready")["message"]

    # A canary held at 50 % by a manual gate: KServe's agent in each version's pods posts that version's inputs
    # (the canary's component carries a logger of its own, or its requests would bypass the agent).
    gate = {"modelVersionRef": {"name": "dd-v2"}, "canary": {"steps": [{"weight": 50, "manualGate": True}]}}
    kubectl("patch", "rollout", "svc", "--type=merge", "-p", json.dumps({"spec": gate}))
    wait_for("canary at the gate", lambda: rollout_phase(kubectl) == "Paused", 300)
    before = runtime_rows(drift_server.url, kubectl.namespace)
    predict(kubectl, cluster, reference[:200], batch=2)  # 100 requests, each answered by one version
    new = lambda: {v: n - before.get(v, 0) for v, n in runtime_rows(drift_server.url, kubectl.namespace).items()}  # noqa: E731
    rows = wait_for(lambda: f"both versions' rows at the runtime (rows {new()}, the runtime's versions: "
                    f"{monitor_versions(drift_server.url, kubectl.namespace)})",
                    lambda: sum((r := new()).values()) >= 200 and r, 60)  # fmt: skip
    assert set(rows) == {"dd-v1", "dd-v2"} and sum(rows.values()) == 200, rows
    assert min(rows.values()) >= 40, f"a 50 % split of 100 requests: {rows}"  # P(fewer than 20 of 100) < 1e-9

    # A promotion switches the reference: the runtime and the service's logger follow the new version.
    kubectl("annotate", "rollout", "svc", "slipway.dev/promote=1")
    wait_for("reference switch", lambda: status(kubectl).get("modelVersion") == "dd-v2", 120)
    assert status(kubectl)["consecutiveDriftWindows"] == 0
    assert monitor_versions(drift_server.url, kubectl.namespace) == {"dd-v2": "stable"}
    logger = (kubectl.get("inferenceservice", "svc") or {})["spec"]["predictor"]["logger"]
    assert logger["url"].endswith("/dm/dd-v2")
