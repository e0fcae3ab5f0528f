"""The serving stack's builders: what is applied instead of KServe's in-cluster wiring."""

from __future__ import annotations

import base64
import ipaddress
import json
from pathlib import Path

import pytest
import yaml
from slipway_dev.localcluster import serving, sysnet
from slipway_dev.localcluster.layout import Ports
from slipway_dev.localexec import podnet

CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "inferenceservice-config", "namespace": "kserve"},
    "data": {
        "_example": "long documentation",
        "ingress": json.dumps({"enableGatewayApi": False, "ingressDomain": "example.com", "urlScheme": "http"}),
        "deploy": json.dumps({"defaultDeploymentMode": "Serverless"}),
        "logger": json.dumps({"image": "kserve/agent:latest"}),
    },
}


def test_isvc_config_turns_on_gateway_api_and_standard_mode_and_keeps_the_rest() -> None:
    cm = serving.isvc_config(CONFIGMAP, 18080)
    ingress = json.loads(cm["data"]["ingress"])
    assert ingress["enableGatewayApi"] is True
    assert ingress["kserveIngressGateway"] == "kserve/kserve-ingress-gateway"
    assert ingress["disableIstioVirtualHost"] is True, "Serverless mode's URL comes from the Knative Service"
    assert json.loads(cm["data"]["deploy"]) == {"defaultDeploymentMode": "RawDeployment"}
    assert cm["data"]["logger"] == CONFIGMAP["data"]["logger"]
    assert "_example" not in cm["data"]
    assert "_example" in CONFIGMAP["data"], "the input is not changed"


def test_webhooks_point_at_the_url_with_the_ca_and_keep_their_paths() -> None:
    cfg = {
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "inferenceservice.serving.kserve.io"},
        "webhooks": [
            {
                "name": "inferenceservice.kserve-webhook-server.validator",
                "clientConfig": {"service": {"name": "$(webhookServiceName)", "path": "/validate-x"}},
                "rules": [{"operations": ["CREATE"]}],
            }
        ],
    }
    (out,) = serving.webhooks_by_url([cfg], "https://127.0.0.1:19443/", b"PEM")
    hook = out["webhooks"][0]
    assert hook["clientConfig"] == {
        "url": "https://127.0.0.1:19443/validate-x",
        "caBundle": base64.b64encode(b"PEM").decode(),
    }
    assert hook["rules"] == cfg["webhooks"][0]["rules"]  # type: ignore[index]


def test_base_objects_put_kserve_rbac_in_its_namespace_and_add_the_gateway() -> None:
    rendered = [
        CONFIGMAP,
        {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": {"name": "kserve-controller-manager"}},
        {
            "kind": "ClusterRoleBinding",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": "kserve-manager-rolebinding"},
            "subjects": [{"kind": "ServiceAccount", "name": "kserve-controller-manager", "namespace": "system"}],
        },
        {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "metrics"}},  # not needed: no Deployment
    ]
    objs = serving.kserve_base_objects(rendered, 18080)
    by_kind = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    assert by_kind[("ServiceAccount", "kserve-controller-manager")]["metadata"]["namespace"] == "kserve"
    binding = by_kind[("ClusterRoleBinding", "kserve-manager-rolebinding")]
    assert binding["subjects"][0]["namespace"] == "kserve"
    assert ("Service", "metrics") not in by_kind
    gateway = by_kind[("Gateway", "kserve-ingress-gateway")]
    assert gateway["spec"]["listeners"][0]["port"] == 18080, "Traefik binds the listener to the entry point's port"
    assert by_kind[("GatewayClass", "traefik")]["spec"]["controllerName"] == "traefik.io/gateway-controller"
    assert ("ClusterRoleBinding", "traefik-gateway-controller") in by_kind


def test_identities_are_the_service_accounts_rbac_binds() -> None:
    assert serving.MANAGER_USER.name == "system:serviceaccount:kserve:kserve-controller-manager"
    assert "system:serviceaccounts:kserve" in serving.MANAGER_USER.groups


def test_processes_listen_on_loopback_or_in_their_namespace_and_send_nothing_out() -> None:
    p = Ports()
    # The manager's webhook server binds every address: in its own namespace (sysnet), whose
    # only other address is the one it is given here.
    manager = serving.manager_argv(Path("/bin/kserve-manager"), p, "198.19.128.2")
    assert f"--metrics-addr=198.19.128.2:{p.kserve_metrics}" in manager
    assert f"--health-probe-addr=198.19.128.2:{p.kserve_probe}" in manager
    traefik = serving.traefik_argv(Path("/bin/traefik"), p)
    addresses = [a for a in traefik if ".address=" in a]
    assert addresses and all("=127.0.0.1:" in a for a in addresses)
    assert "--global.checkNewVersion=false" in traefik and "--global.sendAnonymousUsage=false" in traefik


def test_prometheus_discovers_kserve_pods_through_the_apiserver_and_scrapes_the_gateway(tmp_path: Path) -> None:
    import subprocess

    import yaml
    from slipway_dev.localcluster import prometheus

    for name in ("ca.crt", "c.crt", "c.key"):
        (tmp_path / name).write_text("x")
    d = prometheus.Discovery("https://127.0.0.1:6443", tmp_path / "ca.crt", tmp_path / "c.crt", tmp_path / "c.key",
                             "127.0.0.1:18082")  # fmt: skip
    text = prometheus.config("1s", d)
    jobs = {j["job_name"]: j for j in yaml.safe_load(text)["scrape_configs"]}
    sd = jobs[prometheus.KSERVE_JOB]["kubernetes_sd_configs"][0]
    assert sd["role"] == "pod" and sd["api_server"] == "https://127.0.0.1:6443"
    assert jobs[prometheus.GATEWAY_JOB]["static_configs"] == [{"targets": ["127.0.0.1:18082"]}]
    from slipway_dev.localcluster.layout import default_bin_dir

    promtool = default_bin_dir() / "promtool"
    assert promtool.exists(), "hack/build-serving.sh builds promtool with Prometheus"
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    proc = subprocess.run([promtool, "check", "config", "--syntax-only", str(config)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("marker", "job_name", "relabelling"),
    [
        ("predictor-scrape-job", "KSERVE_JOB", "predictor_relabelling"),
        ("queue-proxy-scrape-job", "QUEUE_PROXY_JOB", "queue_proxy_relabelling"),
    ],
)
def test_the_documented_scrape_jobs_are_the_ones_the_local_cluster_runs(
    marker: str, job_name: str, relabelling: str
) -> None:
    import re

    import yaml
    from slipway_dev.localcluster import prometheus

    text = (Path(__file__).resolve().parents[3] / "docs" / "install.md").read_text()
    block = re.search(rf"<!-- {marker} -->\n```yaml\n(.*?)```", text, re.S)
    assert block, f"docs/install.md lost its {marker}"
    (job,) = yaml.safe_load(block.group(1))
    assert job["job_name"] == getattr(prometheus, job_name)
    assert job["relabel_configs"] == getattr(prometheus, relabelling)()


def test_system_namespaces_are_apart_from_pods_and_kwok(tmp_path: Path) -> None:
    """The manager's namespace takes an address outside both the executor's pod range and kwok's
    simulated pods' (which nothing must ever reach), inside what the host routes to `unreachable`,
    and a name no executor cleans up."""
    system = ipaddress.IPv4Network(podnet.SYSTEM_RANGE)
    kwok = yaml.safe_load_all((Path(serving.__file__).parent / "kwok.yaml").read_text())
    kwok_cidr = ipaddress.IPv4Network(next(kwok)["options"]["cidr"], strict=False)
    assert not system.overlaps(ipaddress.IPv4Network(podnet.DEFAULT_RANGE)) and not system.overlaps(kwok_cidr)
    assert system.subnet_of(ipaddress.IPv4Network(podnet.POD_NETWORK))
    nets = sysnet.SystemNetworks(tmp_path, "10.96.0.0/16")
    address = nets.address("kserve-manager")
    assert ipaddress.IPv4Address(address) in system and nets.address("kserve-manager") == address
    argv = nets.wrap("kserve-manager", ["/bin/kserve-manager"])
    assert argv[0] == "nsenter" and argv[1] == f"--net=/run/netns/lxs-{podnet.executor_id(tmp_path)}-{address}"
    assert argv[-1] == "/bin/kserve-manager"
