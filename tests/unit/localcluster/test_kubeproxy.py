"""kube-proxy's command line, identity and Node patch (slipway_dev/localcluster/kubeproxy.py), without running it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from slipway_dev.kube import ApiError
from slipway_dev.localcluster import kubeproxy, sysnet
from slipway_dev.localexec import podnet

BIN = Path("/bin/kube-proxy")
KUBECONFIG = Path("/state/kube-proxy.kubeconfig")


def test_argv_keeps_kube_proxy_off_the_hosts_settings_and_addresses() -> None:
    argv = kubeproxy.argv(BIN, KUBECONFIG, "cpu-0", "198.19.128.7")
    assert argv[0] == str(BIN)
    assert argv[1:] == [
        "--kubeconfig=/state/kube-proxy.kubeconfig",
        "--proxy-mode=nftables",
        "--hostname-override=cpu-0",
        "--cluster-cidr=198.18.0.0/15",
        "--nodeport-addresses=198.19.128.7/32",  # never every local address
        "--metrics-bind-address=127.0.0.1:10249",
        "--healthz-bind-address=198.19.128.7:10256",
        "--conntrack-max-per-core=0",  # sysctls untouched (read-only in a namespace: it would exit)
        "--conntrack-tcp-timeout-established=0",
        "--conntrack-tcp-timeout-close-wait=0",
        "--oom-score-adj=0",
    ]
    assert f"--cluster-cidr={podnet.POD_NETWORK}" in argv
    assert set(kubeproxy.PORTS) == {10249, 10256}
    assert kubeproxy.healthz_url("198.19.128.7") == "http://198.19.128.7:10256/healthz"
    assert kubeproxy.cleanup_argv(BIN) == [str(BIN), "--cleanup", "--proxy-mode=nftables"]


def test_spec_runs_it_inside_the_node_namespace(tmp_path: Path) -> None:
    nets = sysnet.SystemNetworks(tmp_path / "sysnet", "10.96.0.0/16")
    spec = kubeproxy.spec(BIN, nets, KUBECONFIG, "cpu-0")
    address = nets.address(kubeproxy.NODE)
    assert spec.name == "kube-proxy" and spec.env is None
    netns = podnet.netns_name(podnet.executor_id(tmp_path / "sysnet"), address, podnet.SYSTEM_PREFIX)
    assert spec.argv[:2] == ["nsenter", f"--net={podnet.NETNS_DIR / netns}"]
    assert spec.argv[-12:] == kubeproxy.argv(BIN, KUBECONFIG, "cpu-0", address)


def test_write_kubeconfig_names_the_user_rbac_binds_to_node_proxier(tmp_path: Path) -> None:
    calls: list[Any] = []

    class FakePKI:
        ca_cert = tmp_path / "ca.crt"

        def ensure_client(self, who: Any) -> bool:
            calls.append(who)
            return True

        def client_cert(self, who: Any) -> tuple[Path, Path]:
            return tmp_path / "c.crt", tmp_path / "c.key"

    for name in ("ca.crt", "c.crt", "c.key"):
        (tmp_path / name).write_text(name)
    path = kubeproxy.write_kubeconfig(FakePKI(), "https://127.0.0.1:6443", tmp_path / "kp.kubeconfig")  # type: ignore[arg-type]
    assert calls == [kubeproxy.USER] and kubeproxy.USER.name == "system:kube-proxy" and not kubeproxy.USER.groups
    text = path.read_text()
    assert "https://127.0.0.1:6443" in text and "system:kube-proxy" in text


class FakeApi:
    def __init__(self, status: int) -> None:
        self.status = status
        self.calls: list[tuple[str, str, Any, str]] = []

    def request(self, method: str, path: str, body: bytes, content_type: str, timeout: float) -> tuple[int, bytes]:
        self.calls.append((method, path, json.loads(body), content_type))
        return self.status, b"nope"


def test_the_node_gets_an_address_so_kube_proxy_does_not_wait() -> None:
    api = FakeApi(200)
    kubeproxy.give_node_address(api, "cpu-0", "198.19.128.7")  # type: ignore[arg-type]
    method, path, body, content_type = api.calls[0]
    assert (method, path, content_type) == ("PATCH", "/api/v1/nodes/cpu-0/status", "application/merge-patch+json")
    assert body == kubeproxy.node_address_patch("cpu-0", "198.19.128.7")
    assert body["status"]["addresses"] == [
        {"type": "InternalIP", "address": "198.19.128.7"},
        {"type": "Hostname", "address": "cpu-0"},
    ]
    with pytest.raises(ApiError, match="HTTP 404"):
        kubeproxy.give_node_address(FakeApi(404), "gone", "198.19.128.7")  # type: ignore[arg-type]
