"""A real KServe sklearn InferenceService, end to end, on the local serving stack.

KServe v0.20.0's controller and webhooks (serving_cluster) make the predictor's Deployment,
Service and HTTPRoutes; the local executor runs the predictor pod's containers from KServe's
own code (the storage initializer, the sklearn server, the agent sidecar for the payload
logger); Traefik routes the request by the Host of the InferenceService's URL to the pod IP
in the Service's EndpointSlice. The model is a tiny scikit-learn one in the session's S3
server, read with credentials given the way KServe's storage initializer reads them: a Secret
with KServe's S3 annotations, attached to the ServiceAccount the predictor names.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slipway_dev.kubectl import Kubectl
from slipway_dev.localexec import images

from tests.conftest import REQUIRE_CLUSTER, wait_for

pytestmark = pytest.mark.integration

# Trained with the KServe venv's scikit-learn (the one the sklearn server loads it with):
# a pickle is only as portable as the versions on both sides. Prints the expected predictions.
TRAIN = """
import json, sys
import joblib
from sklearn.linear_model import LogisticRegression
X = [[0.0, 0.0], [0.2, 0.1], [0.1, 0.3], [1.0, 1.0], [0.9, 1.2], [1.1, 0.8]]
y = [0, 0, 0, 1, 1, 1]
model = LogisticRegression().fit(X, y)
joblib.dump(model, sys.argv[1])
instances = json.loads(sys.argv[2])
print(json.dumps([int(p) for p in model.predict(instances)]))
"""
INSTANCES = [[0.05, 0.1], [1.0, 0.95], [0.2, 0.2]]


class Events:
    """The payload logger's sink: a small HTTP server on the host's 127.0.0.1, which the
    agent in the pod reaches through the executor's DNAT."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        events = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with events.lock:
                    events.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_type(self, suffix: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for h, b in self.received if h.get("ce-type", "").endswith(suffix)]


@pytest.fixture
def events() -> Iterator[Events]:
    sink = Events()
    yield sink
    sink.server.shutdown()


def train(path: Path) -> list[int]:
    python = images.default_kserve_venv() / "bin" / "python"
    if not python.exists():
        message = f"KServe's Python runtimes are not built (no {python}): run hack/build-kserve-python.sh"
        if REQUIRE_CLUSTER:
            pytest.fail(message)
        pytest.skip(message)
    out = subprocess.run(
        [str(python), "-c", TRAIN, str(path), json.dumps(INSTANCES)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")},
    )
    return [int(p) for p in json.loads(out.stdout.strip().splitlines()[-1])]


def s3_credentials(k: Kubectl, s3_server: Any) -> str:
    """A Secret as KServe's credential builder reads it (pkg/credentials/s3: data keys named by
    `inferenceservice-config`'s credentials.s3, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY;
    endpoint, scheme and region from its annotations), attached to a ServiceAccount; the
    ServiceAccount's name."""
    env = s3_server.env()
    endpoint = urllib.parse.urlsplit(s3_server.endpoint).netloc  # 127.0.0.1:<port>, plain http
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "s3-creds",
            "annotations": {
                "serving.kserve.io/s3-endpoint": endpoint,
                "serving.kserve.io/s3-usehttps": "0",
                "serving.kserve.io/s3-region": env["AWS_DEFAULT_REGION"],
            },
        },
        "type": "Opaque",
        "stringData": {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
    }
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "s3-reader"},
        "secrets": [{"name": "s3-creds"}],
    }
    k.apply(json.dumps(secret))
    k.apply(json.dumps(account))
    return "s3-reader"


def ready(k: Kubectl, name: str) -> dict[str, Any] | None:
    isvc = k.get("inferenceservice", name) or {}
    conditions = (isvc.get("status") or {}).get("conditions") or []
    ok = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return isvc if ok and isvc["status"].get("url") else None


def post(url: str, host: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Host": host, "Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def route_accepted(k: Kubectl, name: str) -> bool:
    route = k.get("httproute", name) or {}
    parents = (route.get("status") or {}).get("parents") or []
    return any(c["type"] == "Accepted" and c["status"] == "True" for p in parents for c in p.get("conditions") or [])


def predictor_pods(k: Kubectl, name: str) -> list[dict[str, Any]]:
    return list(k.json("pods", "-l", f"serving.kserve.io/inferenceservice={name}").get("items") or [])


def test_sklearn_inference_service_serves_through_traefik_and_logs_payloads(
    serving_cluster: Any, serving_kubectl: Kubectl, s3_server: Any, s3: Any, events: Events, tmp_path: Path
) -> None:
    k, name = serving_kubectl, "iris"
    expected = train(tmp_path / "model.joblib")
    prefix = f"sklearn-{uuid.uuid4().hex[:8]}"
    s3.upload_file(str(tmp_path / "model.joblib"), "models", f"{prefix}/model.joblib")
    account = s3_credentials(k, s3_server)
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "serviceAccountName": account,
                "logger": {"mode": "request", "url": events.url},
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": f"s3://models/{prefix}"},
            }
        },
    }
    start = time.monotonic()
    k.apply(json.dumps(isvc))
    try:
        stored = wait_for(f"InferenceService {name} Ready", lambda: ready(k, name), timeout=240, interval=1.0)
    except BaseException:
        for pod in predictor_pods(k, name):
            print(json.dumps(pod.get("status"), indent=1))
        logs = serving_cluster.executor_logs
        for log in sorted(logs.glob(f"{k.namespace}_*.log")) if logs.is_dir() else []:
            print(f"--- {log.name}\n{log.read_text()[-3000:]}")
        raise
    ready_after = time.monotonic() - start
    pods = predictor_pods(k, name)
    assert len(pods) == 1
    pod = pods[0]
    ip = pod["status"]["podIP"]
    assert ip.startswith("198.18."), ip  # the executor's pod, not a kwok one
    containers = {c["name"]: c["image"] for c in pod["spec"]["containers"]}
    assert {"kserve-container", "agent"} <= set(containers), containers
    inits = [c["name"] for c in pod["spec"].get("initContainers") or []]
    assert "storage-initializer" in inits
    init_state = pod["status"]["initContainerStatuses"][0]["state"]
    assert init_state["terminated"]["exitCode"] == 0

    # The Service's EndpointSlice lists the pod's IP: what Traefik routes to.
    slices = k.json("endpointslices", "-l", f"kubernetes.io/service-name={name}-predictor")["items"]
    addresses = [a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]]
    assert addresses == [ip], addresses

    host = urllib.parse.urlsplit(stored["status"]["url"]).hostname
    assert host
    url = f"{serving_cluster.ingress_url}/v1/models/{name}:predict"
    # Ready is KServe's word; Traefik routes once it has seen the HTTPRoute (404 until then).
    wait_for("Traefik to accept KServe's HTTPRoute", lambda: route_accepted(k, name), timeout=60)
    answers: list[tuple[int, Any, float]] = []

    def predicted() -> tuple[int, Any, float] | None:
        sent = time.monotonic()
        status, body = post(url, host, {"instances": INSTANCES})
        answers.append((status, body, time.monotonic() - sent))
        return answers[-1] if status != 404 else None

    status, body, took = wait_for("a predict through Traefik", predicted, timeout=30, interval=0.5)
    assert status == 200, body
    assert body == {"predictions": expected}
    routed_after = time.monotonic() - start
    print(
        f"\n{name}: Ready after {ready_after:.1f}s, served through Traefik after {routed_after:.1f}s "
        f"({len(answers) - 1} 404s first); first predict took {took * 1000:.0f}ms"
    )

    # KServe's agent logged the request as a CloudEvent to the host's 127.0.0.1 (it logs the
    # readiness probes it proxies too: those have no body).
    def logged() -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in events.of_type(".inference.request") if b"instances" in b]

    headers, payload = wait_for("the request's CloudEvent", logged, timeout=30)[0]
    assert headers["ce-type"] == "org.kubeflow.serving.inference.request"
    assert headers.get("ce-inferenceservicename") == name and headers.get("ce-namespace") == k.namespace
    assert headers.get("ce-component") == "predictor"
    assert json.loads(payload) == {"instances": INSTANCES}
    assert not events.of_type(".inference.response")  # mode: request

    # Deleting it stays prompt: the agent waits 30s after SIGTERM, the executor's --max-grace
    # (5s) SIGKILLs it as a kubelet would at the end of the grace period.
    # Without the grace the agent's own 30s would run out first: the wait gives up before that.
    deleted = time.monotonic()
    k("delete", "inferenceservice", name, "--wait=false")
    wait_for("the predictor pod gone within its grace", lambda: not predictor_pods(k, name), timeout=30)
    print(f"{name}: predictor pod gone {time.monotonic() - deleted:.1f}s after the InferenceService was deleted")
