"""What KServe v0.20.0's real controller does with Serverless-mode InferenceServices on real
Knative Serving v0.48.1, with Traefik's Knative provider and kube-proxy as the data plane.

The facts the Rollout's Serverless mode is built on (docs/serving-contract.md), checked against
the running components: a test here fails if KServe or Knative behave otherwise.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from typing import Any

import pytest
from slipway_dev.kubectl import Kubectl

from tests.conftest import wait_for
from tests.integration.test_kserve_sklearn import INSTANCES
from tests.integration.test_kserve_standard import ACCOUNT, credentials, models  # noqa: F401  fixtures

pytestmark = pytest.mark.integration

SERVERLESS = {"serving.kserve.io/deploymentMode": "Serverless"}


def isvc(name: str, storage_uri: str, canary_percent: int | None = None, min_replicas: int = 1) -> str:
    model = {"modelFormat": {"name": "sklearn"}, "storageUri": storage_uri}
    predictor: dict[str, Any] = {"minReplicas": min_replicas, "serviceAccountName": ACCOUNT, "model": model}
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    meta = {"name": name, "annotations": SERVERLESS}
    body = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": meta,
            "spec": {"predictor": predictor}}  # fmt: skip
    return json.dumps(body)


def _status(k: Kubectl, name: str) -> dict[str, Any]:
    return ((k.get("inferenceservice", name) or {}).get("status")) or {}


def _ready(k: Kubectl, name: str) -> dict[str, Any] | None:
    status = _status(k, name)
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
    return status if ready else None


def _predict(cluster: Any, url: str, name: str) -> int:
    """A request through Traefik's Knative entry point, addressed like a client of the
    InferenceService's URL (its host in the Host header)."""
    host = urllib.parse.urlsplit(url).netloc
    request = urllib.request.Request(
        f"{cluster.knative_url}/v1/models/{name}:predict",
        data=json.dumps({"instances": INSTANCES}).encode(),
        headers={"Host": host, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def _served_by_revision(cluster: Any, namespace: str) -> Counter[str]:
    """Requests counted by each revision's queue-proxy, as Prometheus scraped them."""
    query = f'sum by (revision) (kn_serving_invocation_duration_seconds_count{{namespace="{namespace}"}})'
    url = f"{cluster.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as resp:
        result = json.load(resp)["data"]["result"]
    return Counter({r["metric"].get("revision", ""): int(float(r["value"][1])) for r in result})


def _send_and_count(
    cluster: Any, namespace: str, url: str, name: str, n: int, revisions: tuple[str, ...]
) -> Counter[str]:
    """Sends `n` predictions (each must answer 200) and returns how many of them each revision's
    queue-proxy counted, once Prometheus has scraped all `n`."""
    before = _served_by_revision(cluster, namespace)
    codes = Counter(_predict(cluster, url, name) for _ in range(n))
    assert codes == {200: n}
    delta: Counter[str] = Counter()

    def counted() -> bool:
        delta.clear()
        delta.update({r: _served_by_revision(cluster, namespace)[r] - before[r] for r in revisions})
        return sum(delta.values()) >= n

    wait_for(lambda: f"the queue-proxies' counts of {n} requests scraped (counted: {delta})", counted, timeout=30)
    return delta


def test_a_serverless_inferenceservice_serves_through_knative_and_traefik(
    serving_kubectl: Kubectl, serving_cluster: Any
) -> None:
    k = serving_kubectl
    k.apply(isvc("sless", "s3://models/iris", min_replicas=2))
    status = wait_for("the InferenceService Ready", lambda: _ready(k, "sless"), timeout=180)
    # KServe names the Knative Service <isvc>-predictor for an unnamed predictor, and the
    # InferenceService's URL is that Knative Service's (disableIstioVirtualHost).
    ksvc = k.get("ksvc", "sless-predictor")
    assert ksvc, "KServe's Knative Service"
    assert status["url"] == ksvc["status"]["url"].replace("https://", "http://")
    # The mutating webhook rewrites the deployment mode as written.
    stored = k.get("inferenceservice", "sless") or {}
    assert stored["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert _predict(serving_cluster, status["url"], "sless") == 200
    # minReplicas becomes Knative's min-scale: the revision starts with, and keeps, that many pods.
    revision = status["components"]["predictor"]["latestReadyRevision"]
    wait_for("two ready pods", lambda: (k.get("revision", revision) or {}).get("status", {}).get("actualReplicas") == 2)
    pods = k.json("pods", "-l", f"serving.knative.dev/revision={revision}")["items"]
    assert len(pods) == 2


def test_canary_traffic_percent_splits_between_revisions_of_one_knative_service(
    serving_kubectl: Kubectl, serving_cluster: Any
) -> None:
    k = serving_kubectl
    k.apply(isvc("split", "s3://models/iris"))
    first = wait_for("the first revision Ready", lambda: _ready(k, "split"), timeout=180)
    url = first["url"]
    stable = first["components"]["predictor"]["latestReadyRevision"]
    k.apply(isvc("split", "s3://models/iris2", canary_percent=30))

    def canary_ready() -> dict[str, Any] | None:
        status = _ready(k, "split") or {}
        pred = (status.get("components") or {}).get("predictor") or {}
        latest = pred.get("latestReadyRevision")
        return status if latest and latest != stable and len(pred.get("traffic") or []) == 2 else None

    status = wait_for("the canary revision Ready with a split", canary_ready, timeout=180)
    pred = status["components"]["predictor"]
    canary = pred["latestReadyRevision"]
    assert status["url"] == url, "one Knative Service: the URL stays"
    assert {t["revisionName"]: t["percent"] for t in pred["traffic"]} == {stable: 70, canary: 30}
    assert pred.get("latestRolledoutRevision") == stable

    served = _send_and_count(serving_cluster, k.namespace, url, "split", 400, (stable, canary))
    share = served[canary] / (served[stable] + served[canary])
    # 400 requests at p = 0.3: the standard deviation is 2.3 points; 7 points is three of them.
    assert abs(share - 0.30) < 0.07, served

    # Rolling back: canaryTrafficPercent 0 sends everything to the previous revision at once,
    # without a new revision (the canary's spec stays).
    k.apply(isvc("split", "s3://models/iris2", canary_percent=0))

    def all_on_stable() -> dict[str, Any] | None:
        pred = (_status(k, "split").get("components") or {}).get("predictor") or {}
        traffic = {t["revisionName"]: t["percent"] for t in pred.get("traffic") or [] if t.get("percent")}
        return pred if traffic == {stable: 100} else None

    wait_for("all traffic back on the stable revision", all_on_stable, timeout=60)
    # The status can lead the routers: Knative reports the route's traffic once the KIngress is ready, and
    # Traefik's Knative provider marks it ready after a fixed delay, not a probe of its routers (knative.py,
    # traefik_argv); on a loaded machine a request or two can still reach the canary just after. The routers
    # must follow within seconds, and then the canary gets nothing.
    straggled: list[int] = []

    def routers_follow() -> bool:
        straggled.append(_send_and_count(serving_cluster, k.namespace, url, "split", 10, (stable, canary))[canary])
        return straggled[-1] == 0

    wait_for(
        lambda: f"the routers to follow the status (the canary's of each 10: {straggled})", routers_follow, timeout=30
    )
    after = _send_and_count(serving_cluster, k.namespace, url, "split", 100, (stable, canary))
    assert after == {stable: 100, canary: 0}, f"no request reaches the canary after the rollback: {after}"
