"""Command lines of the control plane's processes, kept apart from the start-up logic so
every flag (and the reason for it) can be reviewed in one place."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .layout import Ports, StateDir, default_bin_dir
from .pki import FRONT_PROXY_CLIENT, PKI

ETCD = "etcd"
APISERVER = "kube-apiserver"
CONTROLLER_MANAGER = "kube-controller-manager"
SCHEDULER = "kube-scheduler"
KWOK = "kwok"
EXECUTOR = "localexec"
PROMETHEUS = "prometheus"

SERVICE_CIDR = "10.96.0.0/16"
KWOK_CONFIG = Path(__file__).with_name("kwok.yaml")


def etcd(binary: Path, state: StateDir, p: Ports) -> list[str]:
    return [
        str(binary),
        "--name=slipway",
        f"--data-dir={state.etcd_data}",
        f"--listen-client-urls=http://127.0.0.1:{p.etcd_client}",
        f"--advertise-client-urls=http://127.0.0.1:{p.etcd_client}",
        f"--listen-peer-urls=http://127.0.0.1:{p.etcd_peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{p.etcd_peer}",
        f"--initial-cluster=slipway=http://127.0.0.1:{p.etcd_peer}",
        "--initial-cluster-state=new",
        # A single member has no peers to lose touch with, so a short election timeout
        # is safe, and it is what a restart waits for before etcd serves (default 1s-2s).
        "--heartbeat-interval=100",
        "--election-timeout=500",
        "--logger=zap",
        "--log-outputs=stderr",
    ]


def apiserver(binary: Path, state: StateDir, p: Ports, k: PKI) -> list[str]:
    proxy_cert, proxy_key = k.client_cert(FRONT_PROXY_CLIENT)
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{p.etcd_client}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={p.apiserver}",
        f"--cert-dir={state.pki / 'generated' / APISERVER}",
        f"--tls-cert-file={k.apiserver_cert}",
        f"--tls-private-key-file={k.apiserver_key}",
        f"--client-ca-file={k.ca_cert}",
        "--authorization-mode=Node,RBAC",
        "--anonymous-auth=false",
        f"--requestheader-client-ca-file={k.front_proxy_ca.cert}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT.name}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={proxy_cert}",
        f"--proxy-client-key-file={proxy_key}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={k.sa_pub}",
        f"--service-account-signing-key-file={k.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # The default reconciler would publish 127.0.0.1 as the endpoint of the
        # `kubernetes` Service, which validation rejects (loopback), logging an error
        # every 10s. Nothing here reaches the apiserver through that Service anyway.
        "--endpoint-reconciler-type=none",
        # Debian's etcd 3.4.23 lacks the progress notifications watch-list streaming needs
        # (the apiserver reports RequestWatchProgress unsupported), yet with WatchList on
        # (the 1.34 default) the apiserver turns every watch from resourceVersion 0 into a
        # watch-list request, which then fails. kwok watches that way, so its watches ended
        # at once and it only saw new pods on relists, seconds to tens of seconds late.
        "--feature-gates=WatchList=false",
        "--allow-privileged=true",
        "--profiling=false",
        # Admission webhooks and APIServices registered through a Service are called at an
        # address from its EndpointSlices instead of its ClusterIP (no kube-proxy on the
        # host): Knative keeps its webhooks' Service clientConfigs (knative.py).
        "--enable-aggregator-routing=true",
        # What an application's ServiceAccount asked and what it was answered (audit_policy): the chart's tests
        # judge its RBAC by the apiserver's own answers, not by what a client library logs.
        f"--audit-policy-file={state.audit_policy}",
        f"--audit-log-path={state.audit_log}",
        "--audit-log-format=json",
        "--audit-log-maxsize=100",
        "--audit-log-maxbackup=1",
    ]


def audit_policy(platform_namespaces: Iterable[str]) -> dict[str, Any]:
    """The apiserver's audit policy: one line (Metadata, once the response is complete) per request made by a
    ServiceAccount outside the platform's own namespaces, i.e. an application's or an operator's under test.
    The platform's controllers (the controller-manager's alone would write thousands of lines a minute) and the
    admin are not logged."""
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived", "ResponseStarted"],
        "rules": [
            {"level": "None", "userGroups": sorted({f"system:serviceaccounts:{ns}" for ns in platform_namespaces})},
            {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
            {"level": "None"},
        ],
    }


def controller_manager(binary: Path, state: StateDir, p: Ports, k: PKI, kubeconfig: Path) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={p.controller_manager}",
        f"--cert-dir={state.pki / 'generated' / CONTROLLER_MANAGER}",
        "--leader-elect=false",
        "--controllers=*",
        # Each controller acts as its own service account, so RBAC is exercised as in a
        # real cluster; this needs the token controller, hence the signing key below.
        "--use-service-account-credentials=true",
        f"--root-ca-file={k.ca_cert}",
        f"--service-account-private-key-file={k.sa_key}",
        f"--cluster-signing-cert-file={k.ca.cert}",
        f"--cluster-signing-key-file={k.ca.key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--profiling=false",
    ]


def scheduler(binary: Path, state: StateDir, p: Ports, kubeconfig: Path) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={p.scheduler}",
        f"--cert-dir={state.pki / 'generated' / SCHEDULER}",
        "--leader-elect=false",
        "--profiling=false",
    ]


def executor(python: str, state: StateDir, kubeconfig: Path, pod_python: str, bin_dir: Path | None = None) -> list[str]:
    # The local executor (slipway_dev/localexec) plays the kubelet for the pods kwok.yaml leaves
    # alone; as admin, like kwok: it writes pod status, reads Secrets, deletes pods. It
    # routes the Service CIDR to `unreachable` (there is no kube-proxy) and runs KServe's
    # agent from the cluster's bin dir.
    return [
        python,
        "-m",
        "slipway_dev.localexec",
        f"--kubeconfig={kubeconfig}",
        f"--state-dir={state.root}",
        f"--python={pod_python}",
        f"--service-cidr={SERVICE_CIDR}",
        f"--bin-dir={bin_dir if bin_dir is not None else default_bin_dir()}",
    ]


def kwok(binary: Path, kubeconfig: Path) -> list[str]:
    # kwok runs as the admin: it writes node status, leases and pod status, and deletes pods.
    return [str(binary), f"--kubeconfig={kubeconfig}", f"--config={KWOK_CONFIG}"]
