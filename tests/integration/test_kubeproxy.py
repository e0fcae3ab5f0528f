"""kube-proxy in the cluster's node namespace (slipway_dev/localcluster/kubeproxy.py) against a real control plane.

A private cluster (own state dir, free ports, executor on) is started once for the module; the
test starts kube-proxy itself in a system namespace on node duty, as the cluster will. From
inside that namespace a ClusterIP reaches an executor pod and another system namespace; a
ClusterIP that kube-proxy would DNAT off the machine (a hand-written EndpointSlice to 8.8.8.8),
one of a kwok pod and an unallocated one are refused at once; the root namespace and the pods
see nothing new.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from slipway_dev.kube import Api
from slipway_dev.localcluster import Cluster, ClusterError, kubeproxy
from slipway_dev.localcluster.pki import ADMIN
from slipway_dev.localcluster.procs import ProcessSpec
from slipway_dev.localexec import podnet

from tests.conftest import REQUIRE_CLUSTER, wait_for

pytestmark = pytest.mark.integration

TRAINER_IMAGE = "ghcr.io/slipway-dev/trainer:0.1.0"
PEER = "kp-peer"  # another system namespace, like Knative's activator behind its Service
PEER_PORT = 8012
TRAEFIK_LIKE_PORT = 8080  # a port the node namespace serves itself (as Traefik will)

# A pod's web server that answers every GET with the address the request came from.
ECHO_SERVER = """
import http.server
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.client_address[0].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Echo).serve_forever()
"""

# Run inside the node namespace: one HTTP request, its outcome as JSON.
CLIENT = """
import json, sys, time, urllib.request
start = time.monotonic()
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
        out = {"status": r.status, "body": r.read(4096).decode(errors="replace")}
except OSError as e:
    out = {"error": str(getattr(e, "reason", e))}
out["seconds"] = time.monotonic() - start
print(json.dumps(out))
"""


@dataclass
class Node:
    cluster: Cluster
    address: str
    node_name: str
    started: float

    def get(self, url: str, timeout: float = 3.0) -> dict[str, Any]:
        argv = self.cluster.sysnet.wrap(kubeproxy.NODE, [sys.executable, "-c", CLIENT, url, str(timeout)])
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 20)
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("kubeproxy"), free_ports=True)
    try:
        timings = c.up()
        c.binary(kubeproxy.BINARY)
    except (ClusterError, OSError) as e:
        c.down(purge=True)
        if REQUIRE_CLUSTER:
            pytest.fail(f"local control plane did not start: {e}")
        pytest.skip(f"local control plane unavailable: {e}")
    print("localcluster start-up:", {k: round(v, 1) for k, v in timings.items()})
    try:
        yield c
    finally:
        c.procs.stop([kubeproxy.PROCESS, PEER], 10.0)
        c.down(purge=True)


@pytest.fixture(scope="module")
def node(cluster: Cluster) -> Node:
    """What cluster.py will do: the Node's address, the namespace, kube-proxy in it."""
    node_name = cluster.fake_nodes[0].name
    address = cluster.sysnet.address(kubeproxy.NODE)
    api = Api.with_client_cert(cluster.server, cluster.pki.ca_cert, *cluster.pki.client_cert(ADMIN))
    kubeproxy.give_node_address(api, node_name, address)
    assert cluster.sysnet.prepare(kubeproxy.NODE, [*kubeproxy.PORTS, TRAEFIK_LIKE_PORT], node=True) == address
    path = kubeproxy.write_kubeconfig(cluster.pki, cluster.server, cluster.state.root / "kube-proxy.kubeconfig")
    spec = kubeproxy.spec(cluster.binary(kubeproxy.BINARY), cluster.sysnet, path, node_name)
    started = time.monotonic()
    cluster.procs.start(spec)

    def healthy() -> bool:
        assert cluster.procs.pid(kubeproxy.PROCESS) is not None, cluster.procs.tail(kubeproxy.PROCESS)
        try:
            return urllib.request.urlopen(kubeproxy.healthz_url(address), timeout=2).status == 200
        except OSError:
            return False

    wait_for("kube-proxy /healthz", healthy, timeout=60)
    print(f"kube-proxy healthy {time.monotonic() - started:.1f}s after its start")
    return Node(cluster, address, node_name, started)


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> str:
    name = f"kp-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    return name


def _apply(cluster: Cluster, *objs: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}))


def _service(ns: str, name: str, selector: dict[str, str] | None, port: int, target: int | str) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"name": "http", "port": port, "targetPort": target}]}
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def _slice(ns: str, service: str, address: str, port: int) -> dict[str, Any]:
    """A hand-written EndpointSlice (anyone who may write EndpointSlices can name any address)."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-manual",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "test"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
    }


def _cluster_ip(cluster: Cluster, ns: str, name: str) -> str:
    return str(cluster.kubectl("get", "service", "-n", ns, name, "-o", "jsonpath={.spec.clusterIP}").stdout)


def _pod(cluster: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    proc = cluster.kubectl("get", "pod", "-n", ns, name, "-o", "json", "--ignore-not-found")
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def _ready_ip(cluster: Cluster, ns: str, name: str) -> str | None:
    pod = _pod(cluster, ns, name) or {}
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions") or [])
    return pod["status"].get("podIP") if ready else None


def test_the_node_namespace_reaches_pods_and_system_namespaces_through_cluster_ips(
    cluster: Cluster, node: Node, ns: str
) -> None:
    serve = {
        "name": "web",
        "image": TRAINER_IMAGE,
        "command": ["python", "-c", ECHO_SERVER],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": ns, "labels": {"slipway.dev/component": "predictor", "app": "web"}},
        "spec": {"containers": [serve]},
    }
    _apply(cluster, pod, _service(ns, "web", {"app": "web"}, 80, "http"))
    pod_ip = wait_for("the executor's pod Ready", lambda: _ready_ip(cluster, ns, "web"), timeout=90)
    assert pod_ip.startswith("198.18.")
    web = _cluster_ip(cluster, ns, "web")
    assert web.startswith("10.96.")

    wait_for("the ClusterIP from the node namespace", lambda: node.get(f"http://{web}/").get("status") == 200)
    print(f"first ClusterIP request answered {time.monotonic() - node.started:.1f}s after kube-proxy's start")
    direct = node.get(f"http://{pod_ip}:8080/")  # the pod IP itself, too
    # The pod sees the host's gateway as the client (the host SNATs the node namespace to it).
    assert direct["status"] == 200 and direct["body"] == "198.18.0.1", direct
    assert node.get(f"http://{web}/")["body"] == "198.18.0.1"

    # Another system namespace (Knative's activator will be one) behind a Service whose
    # EndpointSlice names its address.
    peer = cluster.sysnet.prepare(PEER, [PEER_PORT])
    argv = [sys.executable, "-m", "http.server", str(PEER_PORT), "--bind", peer]
    cluster.procs.start(ProcessSpec(PEER, cluster.sysnet.wrap(PEER, argv)))
    _apply(cluster, _service(ns, "peer", None, 80, PEER_PORT), _slice(ns, "peer", peer, PEER_PORT))
    peer_ip = _cluster_ip(cluster, ns, "peer")
    wait_for("the peer's ClusterIP", lambda: node.get(f"http://{peer_ip}/").get("status") == 200)
    assert node.get(f"http://{peer}:{PEER_PORT}/")["status"] == 200

    # kube-proxy reaches the apiserver at 127.0.0.1 (DNATed to the host) as system:kube-proxy.
    assert "Starting" in cluster.kubectl("get", "events", "-n", "default", "-o", "json").stdout
    # kwok kept the address kube-proxy's start waited for.
    addresses = json.loads(cluster.kubectl("get", "node", node.node_name, "-o", "json").stdout)["status"]["addresses"]
    assert {"type": "InternalIP", "address": node.address} in addresses


def test_nothing_dnated_leaves_and_dead_cluster_ips_fail_at_once(cluster: Cluster, node: Node, ns: str) -> None:
    # An EndpointSlice to the outside: kube-proxy DNATs the ClusterIP to 8.8.8.8, the guard refuses it.
    _apply(cluster, _service(ns, "outside", None, 80, 80), _slice(ns, "outside", "8.8.8.8", 80))
    # A kwok-simulated pod (198.19.0.0/17) behind a Service: nothing behind the address.
    sim = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sim", "namespace": ns, "labels": {"app": "sim"}},
        "spec": {"containers": [{"name": "c", "image": "sim", "ports": [{"containerPort": 80}]}]},
    }
    _apply(cluster, sim, _service(ns, "sim", {"app": "sim"}, 80, 80))
    sim_ip = wait_for("the kwok pod Ready", lambda: _ready_ip(cluster, ns, "sim"), timeout=60)
    assert sim_ip.startswith("198.19.")
    outside, simulated = _cluster_ip(cluster, ns, "outside"), _cluster_ip(cluster, ns, "sim")

    netns = _netns(cluster, node.address)

    def guarded() -> str:
        table = _run("ip", "netns", "exec", netns, "nft", "list", "table", "ip", "kube-proxy").stdout
        return table if "8.8.8.8" in table and sim_ip in table else ""

    wait_for("kube-proxy's rules for both Services", guarded)
    sink_before = _sink_stats(netns)
    for url in (f"http://{outside}/", f"http://{simulated}/", "http://10.96.7.7/", "http://8.8.8.8/"):
        out = node.get(url)
        assert "status" not in out and out["seconds"] < 1.0, (url, out)
    assert _sink_stats(netns) == sink_before  # the guard refused them before the sink
    guard = _run("ip", "netns", "exec", netns, "nft", "list", "table", "ip", podnet.GUARD_TABLE)
    assert "packets 0" not in guard.stdout.split("chain forward")[0], guard.stdout  # all three output rules fired

    # The node namespace: the Service CIDR and everything outside the two ranges to the sink.
    routes = _run("ip", "netns", "exec", netns, "ip", "-4", "route", "show", "table", "all").stdout.splitlines()
    assert [r.split()[:3] for r in routes if r.startswith(("default", "10.96."))] == [
        ["default", "dev", podnet.SERVICE_SINK],
        ["10.96.0.0/16", "dev", podnet.SERVICE_SINK],
    ]
    assert not [
        r for r in routes if " dev " in r and r.split(" dev ")[1].split()[0] not in ("eth0", "lo", "slipway-svc")
    ]
    # The root namespace is unchanged: ClusterIPs lead nowhere.
    proc = _run("ip", "route", "get", "10.96.0.1")
    assert proc.returncode != 0 and "No route to host" in proc.stderr
    # A pod still reaches nothing outside the pod range: not the node namespace either.
    pod_ns = _pod_netns(_ready_ip(cluster, ns, "web") or "")
    probe = [
        "ip",
        "netns",
        "exec",
        pod_ns,
        sys.executable,
        "-c",
        CLIENT,
        kubeproxy.healthz_url(node.address),
        "2",
    ]
    out = json.loads(_run(*probe).stdout)
    assert "status" not in out, out


def _netns(cluster: Cluster, address: str) -> str:
    return podnet.netns_name(podnet.executor_id(cluster.state.sysnet), address, podnet.SYSTEM_PREFIX)


def _pod_netns(ip: str) -> str:
    return next(n for n in _run("ip", "netns", "list").stdout.split() if n.startswith("lxp-") and n.endswith(f"-{ip}"))


def _sink_stats(netns: str) -> Any:
    """The sink's counters (anything addressed to a ClusterIP that kube-proxy and the guard let by)."""
    proc = _run("ip", "netns", "exec", netns, "ip", "-s", "-j", "link", "show", podnet.SERVICE_SINK)
    return json.loads(proc.stdout)[0]["stats64"]
