"""The local executor (slipway_dev/localexec) against a real control plane.

A private cluster (own state dir, free ports) is started once for the module with the
executor on, as `Cluster.up()` runs it by default. Pods labelled slipway.dev/component (or
serving.kserve.io/inferenceservice) are scheduled by the real kube-scheduler and run as local
processes; other pods are still kwok's.
"""

from __future__ import annotations

import errno
import http.server
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from slipway_dev.localcluster import Cluster
from slipway_dev.localexec import podnet

pytestmark = pytest.mark.integration

T = TypeVar("T")
TRAINER_IMAGE = "ghcr.io/slipway-dev/trainer:0.1.0"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

# Reads a Secret-backed env var and a $(VAR)-expanded arg, leaves a termination message.
SUCCEED = """
import json, os, sys
assert os.environ["AWS_SECRET_ACCESS_KEY"] == "s3cr3t", "secret not resolved"
assert sys.argv[1] == "--output=s3://bucket/" + os.environ["JOB"], sys.argv
with open(os.environ["SLIPWAY_TERMINATION_LOG"], "w") as f:
    json.dump({"manifest": sys.argv[1].split("=", 1)[1] + "/manifest.json"}, f)
print("trained")
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("localexec"), free_ports=True)
    timings = c.up()
    print("localcluster start-up:", {k: round(v, 1) for k, v in timings.items()})
    try:
        yield c
    finally:
        c.down()


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> str:
    name = f"lx-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s3-creds", "namespace": name},
        "stringData": {"secretKey": "s3cr3t"},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(secret))
    return name


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def get_pod(cluster: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    proc = cluster.kubectl("get", "pod", "-n", ns, name, "-o", "json", "--ignore-not-found")
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def create_pod(cluster: Cluster, ns: str, container: dict[str, Any], **spec: Any) -> str:
    name = f"p-{uuid.uuid4().hex[:8]}"
    labels = spec.pop("labels", {"slipway.dev/component": "trainer"})
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "trainer", **container}], **spec},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(pod))
    return name


def container_state(pod: dict[str, Any] | None) -> dict[str, Any]:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0].get("state") or {})


def phase_in(cluster: Cluster, ns: str, name: str, *phases: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        pod = get_pod(cluster, ns, name)
        return pod if pod and pod["status"].get("phase") in phases else None

    return check


def test_executor_is_a_managed_process(cluster: Cluster) -> None:
    assert cluster.status()["processes"]["localexec"] is not None
    assert cluster.up() == {}  # idempotent, executor included


def test_pod_succeeds_with_secret_env_expanded_args_and_termination_message(cluster: Cluster, ns: str) -> None:
    env = [
        {"name": "JOB", "value": "job-1"},
        {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": "secretKey"}}},
    ]
    container = {
        "image": TRAINER_IMAGE,
        "command": ["python", "-c", SUCCEED],
        "args": ["--output=s3://bucket/$(JOB)"],
        "env": env,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    name = create_pod(cluster, ns, container)
    pod = wait_for(f"{name} Succeeded", phase_in(cluster, ns, name, "Succeeded", "Failed"))
    terminated = container_state(pod)["terminated"]
    assert pod["status"]["phase"] == "Succeeded", terminated
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    assert json.loads(terminated["message"]) == {"manifest": "s3://bucket/job-1/manifest.json"}
    assert pod["status"]["podIP"].startswith("198.18.") and pod["status"]["hostIP"] == "127.0.0.1"
    assert pod["status"]["startTime"]
    assert pod["spec"]["nodeName"] in ("cpu-0", "cpu-1")
    log = cluster.executor_logs / f"{ns}_{name}_trainer.log"
    assert log.read_text() == "trained\n"


def test_pod_fails_with_exit_code_and_log_fallback(cluster: Cluster, ns: str) -> None:
    container = {
        "image": TRAINER_IMAGE,
        "command": ["python", "-c", "import sys; print('bad hyperparameter'); sys.exit(3)"],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    name = create_pod(cluster, ns, container)
    pod = wait_for(f"{name} Failed", phase_in(cluster, ns, name, "Failed", "Succeeded"))
    terminated = container_state(pod)["terminated"]
    assert pod["status"]["phase"] == "Failed"
    assert terminated["exitCode"] == 3 and terminated["reason"] == "Error"
    assert terminated["message"] == "bad hyperparameter\n"


def test_unknown_image_backs_off(cluster: Cluster, ns: str) -> None:
    name = create_pod(cluster, ns, {"image": "docker.io/library/nginx:1.27"})

    def backing_off() -> dict[str, Any] | None:
        waiting = container_state(get_pod(cluster, ns, name)).get("waiting") or {}
        return waiting if waiting.get("reason") == "ImagePullBackOff" else None

    waiting = wait_for(f"{name} ImagePullBackOff", backing_off)
    assert "not available to the local executor" in waiting["message"]
    # A pod of kwok's own (no executor label) created after it: once kwok's pod-ready stage has made that one
    # Running, the stage has had its turn at ours too.
    control = create_pod(cluster, ns, {"image": "docker.io/library/nginx:1.27"}, labels={})
    wait_for(f"kwok's {control} Running", phase_in(cluster, ns, control, "Running"))
    pod = get_pod(cluster, ns, name) or {}
    # The pod's sandbox (its network namespace) comes before the image, as with a kubelet.
    assert pod["status"]["phase"] == "Pending" and pod["status"]["podIP"].startswith("198.18.")
    # Deleting a pod whose container never started: the executor, not kwok, finishes it.
    cluster.kubectl("delete", "pod", "-n", ns, name, "--wait=false")
    wait_for(f"{name} gone", lambda: get_pod(cluster, ns, name) is None)


def test_missing_secret_is_a_config_error(cluster: Cluster, ns: str) -> None:
    env = [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]
    name = create_pod(cluster, ns, {"image": TRAINER_IMAGE, "command": ["python", "-c", "pass"], "env": env})

    def config_error() -> dict[str, Any] | None:
        waiting = container_state(get_pod(cluster, ns, name)).get("waiting") or {}
        return waiting if waiting.get("reason") == "CreateContainerConfigError" else None

    assert wait_for(f"{name} CreateContainerConfigError", config_error)["message"] == 'secret "absent" not found'


def test_deleting_a_running_pod_kills_its_process(cluster: Cluster, ns: str) -> None:
    name = create_pod(
        cluster, ns, {"image": TRAINER_IMAGE, "command": ["python", "-c", "import time; time.sleep(300)"]}
    )
    pod = wait_for(f"{name} Running", phase_in(cluster, ns, name, "Running"))
    assert container_state(pod)["running"]["startedAt"]
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] is True and status["restartCount"] == 0
    pid = int(status["containerID"].removeprefix("localexec://"))
    assert Path(f"/proc/{pid}").exists()

    cluster.kubectl("delete", "pod", "-n", ns, name, "--wait=false")
    wait_for(f"{name} gone", lambda: get_pod(cluster, ns, name) is None)
    wait_for(f"process {pid} gone", lambda: not _alive(pid), timeout=5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def test_restart_policy_always_restarts_with_back_off(cluster: Cluster, ns: str) -> None:
    container = {"image": TRAINER_IMAGE, "command": ["python", "-c", "raise SystemExit(1)"]}
    name = create_pod(cluster, ns, container, restartPolicy="Always", labels={"slipway.dev/component": "predictor"})

    def restarted() -> dict[str, Any] | None:
        pod = get_pod(cluster, ns, name) or {}
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        return statuses[0] if statuses[0].get("restartCount", 0) >= 1 else None

    status = wait_for(f"{name} restarted", restarted)
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert get_pod(cluster, ns, name)["status"]["phase"] == "Running"  # type: ignore[index]
    cluster.kubectl("delete", "pod", "-n", ns, name, "--wait=false")


GANG_WORKER = """
import os, socket, sys
addr, port, rank = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), os.environ["NODE_RANK"]
assert addr.startswith("198.18.") and port == 29500, (addr, port)  # rank 0's pod IP, the usual port
if rank == "0":
    with socket.create_server((addr, port)) as server:
        conn, _ = server.accept()
        print("rank 0 got", conn.recv(64).decode())
else:
    for _ in range(100):
        try:
            with socket.create_connection((addr, port), timeout=1) as conn:
                conn.sendall(b"hello from rank 1")
                break
        except OSError:
            __import__("time").sleep(0.1)
    else:
        sys.exit("rank 0 unreachable")
"""


def test_gang_finds_its_rank_zero_at_its_pod_ip(cluster: Cluster, ns: str) -> None:
    job = f"job-{uuid.uuid4().hex[:6]}"
    names = []
    for rank in (0, 1):
        env = [
            {"name": "MASTER_ADDR", "value": f"{job}-w0.{job}"},
            {"name": "MASTER_PORT", "value": "29500"},
            {"name": "NODE_RANK", "value": str(rank)},
        ]
        labels = {
            "slipway.dev/component": "trainer",
            "slipway.dev/training-job": job,
            "slipway.dev/attempt": "1",
        }
        container = {"image": TRAINER_IMAGE, "command": ["python", "-c", GANG_WORKER], "env": env}
        names.append(create_pod(cluster, ns, container, labels=labels, hostname=f"{job}-w{rank}", subdomain=job))
    for name in names:
        pod = wait_for(f"{name} finished", phase_in(cluster, ns, name, "Succeeded", "Failed"))
        assert pod["status"]["phase"] == "Succeeded", (cluster.executor_logs / f"{ns}_{name}_trainer.log").read_text()
    assert (cluster.executor_logs / f"{ns}_{names[0]}_trainer.log").read_text() == "rank 0 got hello from rank 1\n"


def test_unlabelled_pod_is_still_kwoks(cluster: Cluster, ns: str) -> None:
    name = create_pod(cluster, ns, {"image": "registry.invalid/anything:1"}, labels={"app": "plain"})
    pod = wait_for(f"{name} Running (kwok)", phase_in(cluster, ns, name, "Running"))
    assert pod["status"]["podIP"].startswith("198.19.")  # kwok's pod CIDR, not the executor's range
    assert not (cluster.executor_logs / f"{ns}_{name}_trainer.log").exists()
    cluster.kubectl("delete", "pod", "-n", ns, name, "--wait=false")
    wait_for(f"{name} deleted by kwok", lambda: get_pod(cluster, ns, name) is None)


def test_gpu_pod_is_scheduled_on_a_gpu_node_and_run(cluster: Cluster, ns: str) -> None:
    container = {
        "image": TRAINER_IMAGE,
        "command": ["python", "-c", "print('on a gpu node')"],
        "resources": {"limits": {"nvidia.com/gpu": "1"}},
    }
    name = create_pod(cluster, ns, container, tolerations=[GPU_TOLERATION])
    pod = wait_for(f"{name} Succeeded", phase_in(cluster, ns, name, "Succeeded", "Failed"))
    assert pod["status"]["phase"] == "Succeeded", container_state(pod)
    assert pod["spec"]["nodeName"] in ("gpu-0", "gpu-1")
    assert (cluster.executor_logs / f"{ns}_{name}_trainer.log").read_text() == "on a gpu node\n"


INIT_WRITE = """
import os, sys, urllib.request
host = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()  # the host's 127.0.0.1, from the pod
with open("/srv/localexec-test/index.html", "w") as f:
    f.write(os.environ["POD_NAME"] + " " + host)
"""


def test_pods_have_own_ips_init_containers_and_empty_dirs(cluster: Cluster, ns: str) -> None:
    """Two pods both listen on 0.0.0.0:8080, each serving the file its init container wrote
    into an emptyDir (the same mountPath, a different directory per pod); the init container
    reached a server of the host's at 127.0.0.1 from inside its pod."""

    class Host(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(f"host-saw-{self.client_address[0]}".encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Host)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    mount = [{"name": "data", "mountPath": "/srv/localexec-test"}]
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    init = {
        "name": "init",
        "image": TRAINER_IMAGE,
        "command": ["python", "-c", INIT_WRITE, f"http://127.0.0.1:{server.server_address[1]}/"],
        "env": env,
        "volumeMounts": mount,
    }
    serve = {
        "image": TRAINER_IMAGE,
        "command": ["python", "-m", "http.server", "8080", "--bind", "0.0.0.0", "--directory", "/srv/localexec-test"],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        "volumeMounts": mount,
    }
    try:
        names = [
            create_pod(
                cluster,
                ns,
                serve,
                restartPolicy="Always",
                labels={"slipway.dev/component": "predictor"},
                initContainers=[init],
                volumes=[{"name": "data", "emptyDir": {}}],
            )
            for _ in range(2)
        ]

        def ready(name: str) -> Callable[[], dict[str, Any] | None]:
            def check() -> dict[str, Any] | None:
                pod = get_pod(cluster, ns, name) or {}
                conditions = (pod.get("status") or {}).get("conditions") or []
                return pod if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None

            return check

        pods = [wait_for(f"{name} Ready", ready(name), timeout=60) for name in names]
        ips = [p["status"]["podIP"] for p in pods]
        assert len(set(ips)) == 2 and all(ip.startswith("198.18.") for ip in ips)
        for name, pod, ip in zip(names, pods, ips, strict=True):
            init_status = pod["status"]["initContainerStatuses"][0]
            assert init_status["state"]["terminated"]["reason"] == "Completed"
            body = urllib.request.urlopen(f"http://{ip}:8080/index.html", timeout=5).read().decode()
            assert body == f"{name} host-saw-{ip}"  # its own file; the host saw the pod's IP
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert all(f"-{ip}" in listed for ip in ips)
        for name in names:
            cluster.kubectl("delete", "pod", "-n", ns, name, "--wait=false")
        for name in names:
            wait_for(f"{name} gone", lambda name=name: get_pod(cluster, ns, name) is None)  # type: ignore[misc]

        def namespaces_gone() -> bool:
            listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
            names = {line.split()[0] for line in listed.splitlines() if line.strip()}
            return not any(n.endswith(f"-{ip}") for n in names for ip in ips)

        wait_for("the pods' network namespaces removed", namespaces_gone, timeout=10)
    finally:
        server.shutdown()


def test_kserve_labelled_pod_is_the_executors(cluster: Cluster, ns: str) -> None:
    labels = {"serving.kserve.io/inferenceservice": "iris", "component": "predictor"}
    container = {"image": TRAINER_IMAGE, "command": ["python", "-c", "print('run by the executor')"]}
    name = create_pod(cluster, ns, container, labels=labels)
    pod = wait_for(f"{name} Succeeded", phase_in(cluster, ns, name, "Succeeded", "Failed"))
    assert pod["status"]["phase"] == "Succeeded" and pod["status"]["podIP"].startswith("198.18.")
    assert (cluster.executor_logs / f"{ns}_{name}_trainer.log").read_text() == "run by the executor\n"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def test_pod_ips_are_in_endpoint_slices_and_nothing_leaves_the_machine(cluster: Cluster, ns: str) -> None:
    serve = {
        "image": TRAINER_IMAGE,
        "command": ["python", "-m", "http.server", "8080", "--bind", "0.0.0.0"],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    }
    app = f"web-{uuid.uuid4().hex[:6]}"
    name = create_pod(
        cluster, ns, serve, restartPolicy="Always", labels={"slipway.dev/component": "predictor", "app": app}
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app, "namespace": ns},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(service))

    def endpoints() -> list[str]:
        proc = cluster.kubectl(
            "get", "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={app}", "-o", "json"
        )
        items = json.loads(proc.stdout)["items"]
        return [a for s in items for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")
                for a in e["addresses"]]  # fmt: skip

    addresses = wait_for("the Service's EndpointSlice to list the pod", endpoints, timeout=60)
    ip = (get_pod(cluster, ns, name) or {})["status"]["podIP"]
    assert addresses == [ip] and ip.startswith("198.18.")
    assert urllib.request.urlopen(f"http://{ip}:8080/", timeout=5).status == 200  # from the root namespace

    # The root namespace: a pod IP without a pod, kwok's pods and ClusterIPs are unreachable,
    # never the default route; the pod's own /32 goes to its veth.
    for dead in ("198.18.9.9", "198.19.0.5", "10.96.0.1"):
        proc = _run("ip", "route", "get", dead)
        assert proc.returncode != 0 and "No route to host" in proc.stderr, (dead, proc.stdout, proc.stderr)
    assert _run("ip", "route", "get", ip).stdout.split()[1:3] == ["dev", podnet.veth_name(ip)]
    netns = next(n for n in _run("ip", "netns", "list").stdout.split() if n.endswith(f"-{ip}"))
    # In the pod: no default route, nothing outside the pod range (and its own loopback).
    for outside in (("8.8.8.8", "from", ip), ("8.8.8.8",), ("192.0.2.1",), ("10.96.0.1",), ("198.19.0.5",)):
        proc = _run("ip", "netns", "exec", netns, "ip", "route", "get", *outside)
        assert proc.returncode != 0 and "unreachable" in proc.stderr.lower(), (outside, proc.stdout, proc.stderr)
    assert "default" not in _run("ip", "netns", "exec", netns, "ip", "route", "show", "table", "all").stdout
    # The host forwards nothing but pod to pod: ip_forward stays off, the veths' filter is there.
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"
    table = _run("nft", "list", "table", "ip", "localexec").stdout
    assert 'iifname "lxp*" drop' in table and 'oifname "lxp*" drop' in table
    cluster.kubectl("delete", "pod", "-n", ns, name, "--wait=false")
    wait_for(f"{name} gone", lambda: get_pod(cluster, ns, name) is None)
    # A deleted pod's IP has no route any more: refused by the routing table (an errno saying so), not sent
    # elsewhere and left to time out.
    proc = _run("ip", "route", "get", ip)
    assert proc.returncode != 0 and "No route to host" in proc.stderr, (proc.stdout, proc.stderr)
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"http://{ip}:8080/", timeout=5)
    reason = refused.value.reason
    assert isinstance(reason, OSError) and reason.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH), reason


def test_failed_init_container_fails_the_pod(cluster: Cluster, ns: str) -> None:
    init = {"name": "init", "image": TRAINER_IMAGE, "command": ["python", "-c", "raise SystemExit(2)"]}
    name = create_pod(cluster, ns, {"image": TRAINER_IMAGE, "command": ["python", "-c", "pass"]}, initContainers=[init])
    pod = wait_for(f"{name} Failed", phase_in(cluster, ns, name, "Failed", "Succeeded"))
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["initContainerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 2 and terminated["reason"] == "Error"  # kubectl shows Init:Error
    assert container_state(pod)["waiting"]["reason"] == "PodInitializing"
    initialized = next(c for c in pod["status"]["conditions"] if c["type"] == "Initialized")
    assert initialized["status"] == "False"
