"""The local control plane (slipway_dev/localcluster) against its real components.

A private cluster (own state dir, free ports) is started once for the module, so these
tests never touch a developer's <repo>/.cluster. They need the binaries from
hack/build-controlplane.sh and etcd from hack/install-system-deps.sh; without them the
fixture fails with a message naming the script (deselect with `-m "not integration"`).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from slipway_dev.localcluster import Cluster

pytestmark = pytest.mark.integration

KSERVE_CRDS = (
    "clusterservingruntimes.serving.kserve.io",
    "inferenceservices.serving.kserve.io",
    "servingruntimes.serving.kserve.io",
)
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("localcluster"), free_ports=True)
    timings = c.up()
    print("localcluster start-up:", {k: round(v, 1) for k, v in timings.items()})
    try:
        yield c
    finally:
        c.down()


def kubectl(
    cluster: Cluster, *args: str, kubeconfig: Path | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The built kubectl, as admin unless another kubeconfig is given; never raises."""
    return cluster.kubectl(*args, input=input, check=False, timeout=60, kubeconfig=kubeconfig)


def get(cluster: Cluster, *args: str) -> Any | None:
    """`kubectl get ... -o json` parsed, or None when the object does not exist."""
    proc = kubectl(cluster, "get", *args, "-o", "json", "--ignore-not-found")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def create(cluster: Cluster, obj: dict[str, Any]) -> dict[str, Any]:
    proc = kubectl(cluster, "create", "-o", "json", "-f", "-", input=json.dumps(obj))
    assert proc.returncode == 0, proc.stderr
    created: dict[str, Any] = json.loads(proc.stdout)
    return created


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_up_is_idempotent(cluster: Cluster) -> None:
    before = cluster.status()["processes"]
    assert cluster.up() == {}
    status = cluster.status()
    assert status["processes"] == before  # the same pids: nothing was started again
    assert status["ready"] is True
    assert all(status["processes"].values()), status


def test_a_failed_restart_of_one_component_leaves_the_running_cluster_alone(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (bench/chaos.py: bringing Prometheus back, a CRD apply timed out and the failed start stopped the
    whole cluster). A start over a running cluster that fails stops only what it started; the next one succeeds."""
    import os
    import signal

    from slipway_dev.localcluster.components import SCHEDULER

    before = cluster.status()["processes"]
    scheduler = cluster.procs.pid(SCHEDULER)
    assert scheduler is not None
    os.kill(scheduler, signal.SIGKILL)
    wait_for("the scheduler gone", lambda: cluster.procs.pid(SCHEDULER) is None or None)

    def fail() -> None:
        raise RuntimeError("a step of the start failed")

    monkeypatch.setattr(cluster, "_install_crds_if_changed", fail)
    with pytest.raises(RuntimeError, match="a step of the start failed"):
        cluster.up()
    after = cluster.status()["processes"]
    assert after[SCHEDULER] is None  # started by the failed start, stopped by it
    assert {k: v for k, v in after.items() if k != SCHEDULER} == {k: v for k, v in before.items() if k != SCHEDULER}
    monkeypatch.undo()
    assert cluster.up() and cluster.status()["ready"] is True and cluster.procs.pid(SCHEDULER) is not None


def test_apiserver_enforces_rbac(cluster: Cluster) -> None:
    readyz = kubectl(cluster, "get", "--raw", "/readyz")
    assert readyz.returncode == 0 and readyz.stdout.strip() == "ok", readyz.stderr

    admin = kubectl(cluster, "get", "pods", "-n", "kube-system", "-o", "json")
    assert admin.returncode == 0, admin.stderr

    # A valid client certificate from the cluster CA authenticates, but RBAC grants
    # CN=nobody nothing: the request must be refused as forbidden, not unauthorized.
    nobody = cluster.user_kubeconfig("nobody")
    denied = kubectl(cluster, "get", "pods", "-n", "default", kubeconfig=nobody)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr and 'User "nobody"' in denied.stderr, denied.stderr
    can_i = kubectl(cluster, "auth", "can-i", "create", "configmaps", "-n", "default", kubeconfig=nobody)
    assert can_i.stdout.strip() == "no", can_i.stdout + can_i.stderr


def test_kserve_crds_established(cluster: Cluster) -> None:
    for name in KSERVE_CRDS:
        crd = get(cluster, "crd", name)
        assert crd is not None, f"CRD {name} not installed"
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", conditions
    # Reinstalling (what a test does after regenerating CRDs) is idempotent.
    assert set(KSERVE_CRDS) <= set(cluster.install_crds())


def test_fake_nodes(cluster: Cluster) -> None:
    listing = get(cluster, "nodes")
    assert listing is not None
    by_name = {n["metadata"]["name"]: n for n in listing["items"]}
    assert {"cpu-0", "cpu-1", "gpu-0", "gpu-1"} <= set(by_name)
    for name in ("gpu-0", "gpu-1"):
        node = by_name[name]
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert by_name["cpu-0"]["status"]["allocatable"]["cpu"] == "8"
    assert "nvidia.com/gpu" not in by_name["cpu-0"]["status"]["allocatable"]


def _pod(name: str, *, gpus: int = 0) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "registry.invalid/fake:latest"}
    spec: dict[str, Any] = {"containers": [container]}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
        spec["tolerations"] = [GPU_TOLERATION]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def test_gpu_pod_scheduled_on_gpu_node(cluster: Cluster) -> None:
    gpu_pod, cpu_pod = unique("gpu"), unique("cpu")
    create(cluster, _pod(gpu_pod, gpus=1))
    create(cluster, _pod(cpu_pod))

    def running(name: str) -> dict[str, Any] | None:
        pod = get(cluster, "pod", "-n", "default", name)
        return pod if pod and pod["status"].get("phase") == "Running" else None

    # kwok's default pod stages take a bound pod to Running on the fake node.
    scheduled = wait_for(f"pod {gpu_pod} Running", lambda: running(gpu_pod))
    assert scheduled["spec"]["nodeName"] in ("gpu-0", "gpu-1")
    # Without the toleration the GPU taint keeps a pod on the CPU nodes.
    plain = wait_for(f"pod {cpu_pod} Running", lambda: running(cpu_pod))
    assert plain["spec"]["nodeName"] in ("cpu-0", "cpu-1")

    for name in (gpu_pod, cpu_pod):
        assert kubectl(cluster, "delete", "pod", "-n", "default", name, "--wait=false").returncode == 0


def test_garbage_collector_deletes_dependents(cluster: Cluster) -> None:
    owner_name, child_name = unique("owner"), unique("child")
    owner = create(
        cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": owner_name, "namespace": "default"}}
    )
    create(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": child_name,
                "namespace": "default",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": owner_name, "uid": owner["metadata"]["uid"]}
                ],
            },
        },
    )
    assert kubectl(cluster, "delete", "configmap", "-n", "default", owner_name).returncode == 0
    wait_for(
        f"configmap {child_name} garbage-collected",
        lambda: get(cluster, "configmap", "-n", "default", child_name) is None,
    )


def test_namespace_deletion_completes(cluster: Cluster) -> None:
    ns = unique("doomed")
    create(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    create(cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "content", "namespace": ns}})
    # The namespace controller must empty it and remove the finalizer for this to finish.
    assert kubectl(cluster, "delete", "namespace", ns, "--wait=false").returncode == 0
    wait_for(f"namespace {ns} gone", lambda: get(cluster, "namespace", ns) is None)


def test_audit_log_records_applications_service_accounts_only(cluster: Cluster, tmp_path: Path) -> None:
    """The apiserver's audit log holds what an application's ServiceAccount asked and was answered (the chart's
    RBAC test reads it), and nothing of the platform's own controllers, which never stop asking."""
    ns = unique("audit")
    assert kubectl(cluster, "create", "namespace", ns).returncode == 0
    assert kubectl(cluster, "-n", ns, "create", "serviceaccount", "app").returncode == 0
    token = kubectl(cluster, "-n", ns, "create", "token", "app").stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    config = {"apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
              "users": [{"name": "app", "user": {"token": token}}],
              "contexts": [{"name": "app", "context": {"cluster": admin["clusters"][0]["name"], "user": "app"}}],
              "current-context": "app"}  # fmt: skip
    path = tmp_path / "app.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    denied = kubectl(cluster, "-n", ns, "get", "secrets", kubeconfig=path)
    assert denied.returncode != 0

    user = f"system:serviceaccount:{ns}:app"

    def refusal() -> list[dict[str, Any]]:
        events = [json.loads(line) for line in cluster.audit_log.read_text().splitlines() if line.strip()]
        return [e for e in events if e["user"]["username"] == user and e["verb"] == "list"
                and e["objectRef"]["resource"] == "secrets" and e["responseStatus"]["code"] == 403]  # fmt: skip

    wait_for("the refused list in the audit log", refusal, timeout=30)
    # Not vacuous: the controller-manager, as its kube-system ServiceAccounts, gave the new namespace its
    # `default` ServiceAccount and its root CA ConfigMap meanwhile; none of its requests is logged.
    wait_for("the namespace's default ServiceAccount", lambda: get(cluster, "-n", ns, "serviceaccount", "default"))
    wait_for("the namespace's root CA", lambda: get(cluster, "-n", ns, "configmap", "kube-root-ca.crt"))
    events = [json.loads(line) for line in cluster.audit_log.read_text().splitlines() if line.strip()]
    platform = {e["user"]["username"] for e in events} - {user}
    assert not {u for u in platform if u.startswith("system:serviceaccount:kube-system:")}, sorted(platform)
