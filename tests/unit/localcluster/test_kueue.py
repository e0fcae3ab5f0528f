"""Kueue's builders (slipway_dev/localcluster/kueue.py), on Kueue v0.17.0's own config/ from the Go module
cache (`make kueue-sources`). The rendering (`kubectl kustomize config/default`) is what the
integration tests run; here the same files are read as kustomize would feed them."""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import pytest
import yaml
from slipway_dev.localcluster import kueue
from slipway_dev.localcluster.serving import Obj, load_all

ADDRESS = "198.19.128.9"
BASE_URL = f"https://{ADDRESS}:{kueue.WEBHOOK_PORT}"
CA = b"-----BEGIN CERTIFICATE-----\nslipway\n-----END CERTIFICATE-----\n"


@pytest.fixture(scope="module")
def src() -> Path:
    try:
        return kueue.source_dir()
    except kueue.KueueError as err:
        pytest.skip(f"Kueue's module is not in the Go module cache (run make kueue-sources): {err}")


@pytest.fixture(scope="module")
def rendered(src: Path) -> list[Obj]:
    """Kueue's objects as its kustomization lists them (without the name prefix and patches, which
    the builders do not depend on), plus the manager's ConfigMap and one conversion stanza."""
    components = src / "config" / "components"
    objs: list[Obj] = []
    for path in sorted((components / "crd" / "bases").glob("*.yaml")):
        objs += load_all(path.read_text())
    for name in ("role.yaml", "role_binding.yaml", "service_account.yaml"):
        objs += load_all((components / "rbac" / name).read_text())
    objs += load_all((components / "webhook" / "manifests.yaml").read_text())
    objs += load_all((components / "webhook" / "service.yaml").read_text())
    config = (components / "manager" / kueue.CONFIG_KEY).read_text()
    objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": kueue.CONFIG_MAP},
                 "data": {kueue.CONFIG_KEY: config}})  # fmt: skip
    workloads = next(o for o in objs if o["metadata"]["name"] == "workloads.kueue.x-k8s.io")
    service = {"name": "kueue-webhook-service", "namespace": kueue.NAMESPACE, "path": "/convert"}
    webhook = {"clientConfig": {"service": service}, "conversionReviewVersions": ["v1"]}
    workloads["spec"]["conversion"] = {"strategy": "Webhook", "webhook": webhook}
    return objs


def test_the_configuration_is_kueues_own_with_a_process_on_loopbacks_settings(rendered: list[Obj]) -> None:
    cert_dir = Path("/state/kueue/serving-certs")
    config = kueue.manager_config(rendered, ADDRESS, cert_dir)
    assert config["apiVersion"] == "config.kueue.x-k8s.io/v1beta2" and config["kind"] == "Configuration"
    assert config["webhook"] == {"host": ADDRESS, "port": kueue.WEBHOOK_PORT, "certDir": str(cert_dir)}
    assert config["health"]["healthProbeBindAddress"] == f"{ADDRESS}:{kueue.HEALTH_PORT}"
    assert config["metrics"]["bindAddress"] == f"{ADDRESS}:{kueue.METRICS_PORT}"
    assert config["leaderElection"] == {"leaderElect": False}  # Kueue defaults it to true
    assert config["internalCertManagement"] == {"enable": False}
    assert config["featureGates"] == {"VisibilityOnDemand": False}
    assert config["namespace"] == kueue.NAMESPACE
    # Kueue's own choices stay: its integrations (the plain-Pod one among them), no
    # manageJobsWithoutQueueName (pods without a queue name are left alone), its default
    # namespace selector (never kube-system or kueue-system).
    assert "pod" in config["integrations"]["frameworks"]
    assert not config.get("manageJobsWithoutQueueName") and "managedJobsNamespaceSelector" not in config
    original = yaml.safe_load(next(o for o in rendered if o["kind"] == "ConfigMap")["data"][kueue.CONFIG_KEY])
    assert config["controller"] == original["controller"] and config["clientConnection"] == original["clientConnection"]


def test_a_configuration_without_the_pod_integration_is_refused(rendered: list[Obj]) -> None:
    objs = copy.deepcopy(rendered)
    cm = next(o for o in objs if o["kind"] == "ConfigMap")
    config = yaml.safe_load(cm["data"][kueue.CONFIG_KEY])
    config["integrations"]["frameworks"] = ["batch/job"]
    cm["data"][kueue.CONFIG_KEY] = yaml.safe_dump(config)
    with pytest.raises(kueue.KueueError, match="plain-Pod"):
        kueue.manager_config(objs, ADDRESS, Path("/c"))


def test_crds_are_kueues_eleven_and_conversion_is_called_by_url(rendered: list[Obj]) -> None:
    crds = kueue.crds(rendered, BASE_URL, CA)
    assert len(crds) == 11 and all(c["spec"]["group"] == "kueue.x-k8s.io" for c in crds)
    converted = [c for c in crds if c["spec"].get("conversion")]
    assert [c["metadata"]["name"] for c in converted] == ["workloads.kueue.x-k8s.io"]
    client = converted[0]["spec"]["conversion"]["webhook"]["clientConfig"]
    assert client == {"url": f"{BASE_URL}/convert", "caBundle": base64.b64encode(CA).decode()}
    untouched = next(o for o in rendered if o["metadata"]["name"] == "workloads.kueue.x-k8s.io")
    assert "service" in untouched["spec"]["conversion"]["webhook"]["clientConfig"]  # a copy was changed


def test_webhooks_call_the_manager_by_url_with_the_cluster_ca(rendered: list[Obj]) -> None:
    configs = kueue.webhooks(rendered, BASE_URL, CA)
    hooks = [h for c in configs for h in c["webhooks"]]
    assert {h["name"] for h in hooks} >= {"mpod.kb.io", "vpod.kb.io", "mworkload.kb.io", "vclusterqueue.kb.io"}
    for hook in hooks:
        client = hook["clientConfig"]
        assert client["url"].startswith(BASE_URL + "/") and "service" not in client, hook["name"]
        assert base64.b64decode(client["caBundle"]) == CA
    pod = next(h for h in hooks if h["name"] == "mpod.kb.io")
    assert pod["clientConfig"]["url"] == f"{BASE_URL}/mutate--v1-pod" and pod["failurePolicy"] == "Fail"


def test_only_namespace_and_rbac_are_applied_the_process_replaces_the_rest(rendered: list[Obj]) -> None:
    base = kueue.base_objects(rendered)
    assert {o["kind"] for o in base} <= {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole",
                                         "ClusterRoleBinding"}  # fmt: skip
    assert any(o["kind"] == "ClusterRole" and o["metadata"]["name"] == "manager-role" for o in base)
    assert not any(o["kind"] in kueue.NOT_APPLIED for o in base)


def test_the_manager_runs_with_its_deployments_arguments() -> None:
    argv = kueue.argv(Path("/bin/kueue-manager"), Path("/state/config.yaml"))
    assert argv == ["/bin/kueue-manager", "--config=/state/config.yaml", "--zap-log-level=2"]
    env = kueue.env(Path("/state/kueue"), Path("/state/kueue/kubeconfig"))
    assert env["KUBECONFIG"] == "/state/kueue/kubeconfig" and set(env) == {"PATH", "HOME", "KUBECONFIG"}
