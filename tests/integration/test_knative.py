"""Knative Serving v0.48.1 on the local control plane, without KServe: a Knative Service is served through
Traefik's Knative provider and kube-proxy, and the whole of it survives a restart of the cluster."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _local_cluster, wait_for

pytestmark = pytest.mark.integration

# A Knative Service whose pods the executor runs (slipway.dev/component): a server answering with the
# revision that served it (Knative sets K_REVISION in the user container).
SERVER = (
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = os.environ['K_REVISION'].encode()\n"
    "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "http.server.ThreadingHTTPServer(('', int(os.environ['PORT'])), H).serve_forever()\n"
)


def ksvc(name: str, message: str) -> str:
    container = {"image": "ghcr.io/slipway-dev/trainer:0.1.0", "command": ["python", "-c", SERVER],
                 "env": [{"name": "MESSAGE", "value": message}], "ports": [{"containerPort": 8080}]}  # fmt: skip
    template = {"metadata": {"labels": {"slipway.dev/component": "knative-test"}}, "spec": {"containers": [container]}}
    body = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": name, "namespace": "kn"},
            "spec": {"template": template}}  # fmt: skip
    return json.dumps(body)


@pytest.fixture(scope="module")
def knative_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from _local_cluster(tmp_path_factory, "knative", "Knative", 300.0, knative=True)


def _ready(c: Any, name: str) -> dict[str, Any] | None:
    proc = c.kubectl("-n", "kn", "get", "ksvc", name, "-o", "json", check=False)
    if proc.returncode != 0:
        return None
    obj = json.loads(proc.stdout)
    conds = (obj.get("status") or {}).get("conditions") or []
    return obj if any(x["type"] == "Ready" and x["status"] == "True" for x in conds) else None


def _get(c: Any, host: str) -> tuple[int, str]:
    request = urllib.request.Request(c.knative_url + "/", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), ""
    except OSError as err:
        return 0, str(err)


def test_a_knative_service_is_served_and_survives_a_cluster_restart(knative_cluster: Any, tmp_path: Path) -> None:
    c = knative_cluster
    c.kubectl("create", "namespace", "kn")
    c.kubectl("apply", "-f", "-", input=ksvc("hello", "one"))
    obj = wait_for("the Knative Service Ready", lambda: _ready(c, "hello"), timeout=180)
    host = obj["status"]["url"].split("://", 1)[1]
    revision = obj["status"]["latestReadyRevisionName"]
    assert _get(c, host) == (200, revision)
    # The KIngress Traefik serves names Traefik's own Service as the load balancer (Knative then points the
    # route's ExternalName Service at it).
    kingress = json.loads(c.kubectl("-n", "kn", "get", "ingresses.networking.internal.knative.dev", "hello",
                                    "-o", "json").stdout)  # fmt: skip
    balancers = kingress["status"]["publicLoadBalancer"]["ingress"]
    assert balancers == [{"domainInternal": "traefik-knative.traefik.svc.cluster.local"}]

    # Stopped and started again, Knative's webhook must admit its own ConfigMaps' re-application and the data
    # plane (kube-proxy, Traefik, in a fresh node namespace) serve the same Service.
    c.down()
    c.up(timeout=300)
    wait_for("served after the restart", lambda: _get(c, host) == (200, revision) or None, timeout=120)
    c.kubectl("apply", "-f", "-", input=ksvc("hello", "two"))  # a new revision: the webhook admits it

    def second() -> dict[str, Any] | None:
        obj = _ready(c, "hello")
        return obj if obj and obj["status"]["latestReadyRevisionName"] != revision else None

    newer = wait_for("the second revision Ready", second, timeout=180)["status"]["latestReadyRevisionName"]
    wait_for("the second revision served", lambda: _get(c, host) == (200, newer) or None, timeout=60)
