"""kube-proxy (nftables mode) in the cluster's node namespace, so that ClusterIPs work there.

Traefik's Knative provider sends requests to Service ClusterIPs, which need kube-proxy. The
root namespace never gets one (its Service CIDR stays `unreachable`, and every local cluster
on the machine allocates ClusterIPs from the same range): kube-proxy runs in a system network
namespace on node duty (sysnet.py, `prepare(NODE, ..., node=True)`), where ClusterIPs are
routed to a sink behind a guard and the executor's pods and the other system namespaces are
reachable; processes that dial ClusterIPs (Traefik) run there too, with `sysnet.wrap(NODE, argv)`.
Flags, facts and caveats: hack/knative/KUBE-PROXY.md.

Start order: the apiserver and the Nodes (kwok keeps an address given to a Node), then
`give_node_address`, then the namespace (`sysnet.prepare(NODE, ports, node=True)`), then
`spec(...)`. kube-proxy reaches the apiserver at https://127.0.0.1:<port> as the host's
components do: the namespace DNATs 127.0.0.1 to the host. Its tables live in the namespace and
go with it; a restarted kube-proxy rewrites its table whole, so no clean-up is ever needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slipway_dev.kube import Api, ApiError, status_message
from slipway_dev.localexec.podnet import POD_NETWORK

from . import kubeconfig
from .pki import PKI, ClientIdentity
from .procs import ProcessSpec
from .sysnet import SystemNetworks

NODE = "node"  # the system namespace on node duty
PROCESS = "kube-proxy"  # its ProcessSpec's name (pid file, log)
BINARY = "kube-proxy"  # built by hack/build-controlplane.sh
# The default RBAC bootstrap policy binds this user to system:node-proxier.
USER = ClientIdentity("system:kube-proxy")
# Inside the namespace, so the defaults collide with nothing on the host or in other clusters.
METRICS_PORT = 10249
HEALTHZ_PORT = 10256
PORTS = (METRICS_PORT, HEALTHZ_PORT)  # served in the namespace itself: give them to prepare()


def argv(binary: Path, kubeconfig_path: Path, node_name: str, address: str) -> list[str]:
    """kube-proxy's command line, for the namespace whose address is `address`.

    - `--hostname-override`: a (kwok) Node, given `address` by give_node_address first, or
      kube-proxy waits 30 s for one; it only reads the Node (and counts only its endpoints
      as local for internal/externalTrafficPolicy: Local);
    - `--cluster-cidr`: the whole pod network; what comes from outside it to a ClusterIP is
      masqueraded;
    - `--nodeport-addresses`: the namespace's own address, never every local address;
    - metrics on 127.0.0.1 in the namespace; healthz on its address, where the host can probe
      it (like the KServe manager's probe: only the host and system namespaces reach it);
    - conntrack flags 0 and `--oom-score-adj=0`: leave sysctls and the OOM score alone (the
      conntrack ones are read-only in a namespace and kube-proxy would exit).
    """
    return [
        str(binary),
        f"--kubeconfig={kubeconfig_path}",
        "--proxy-mode=nftables",
        f"--hostname-override={node_name}",
        f"--cluster-cidr={POD_NETWORK}",
        f"--nodeport-addresses={address}/32",
        f"--metrics-bind-address=127.0.0.1:{METRICS_PORT}",
        f"--healthz-bind-address={address}:{HEALTHZ_PORT}",
        "--conntrack-max-per-core=0",
        "--conntrack-tcp-timeout-established=0",
        "--conntrack-tcp-timeout-close-wait=0",
        "--oom-score-adj=0",
    ]


def spec(
    binary: Path, sysnet: SystemNetworks, kubeconfig_path: Path, node_name: str, env: dict[str, str] | None = None
) -> ProcessSpec:
    """kube-proxy run inside the node namespace (prepared with node=True before)."""
    address = sysnet.address(NODE)
    return ProcessSpec(PROCESS, sysnet.wrap(NODE, argv(binary, kubeconfig_path, node_name, address)), env)


def healthz_url(address: str) -> str:
    """kube-proxy's /healthz, for the host (200 once it serves; 503 while a sync is overdue)."""
    return f"http://{address}:{HEALTHZ_PORT}/healthz"


def write_kubeconfig(pki: PKI, server: str, path: Path) -> Path:
    """A kubeconfig for USER with a client certificate from the cluster's CA (issued once)."""
    return kubeconfig.for_identity(pki, server, USER, path)


def node_address_patch(node_name: str, address: str) -> dict[str, Any]:
    """The Node status merge patch giving it `address` (kwok keeps addresses a Node has)."""
    return {
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": address},
                {"type": "Hostname", "address": node_name},
            ]
        }
    }


def give_node_address(api: Api, node_name: str, address: str) -> None:
    """Patch the Node's status (merge patch on the status subresource)."""
    status, body = api.request(
        "PATCH",
        f"/api/v1/nodes/{node_name}/status",
        json.dumps(node_address_patch(node_name, address)).encode(),
        "application/merge-patch+json",
        timeout=30.0,
    )
    if status != 200:
        raise ApiError(status, f"patch node {node_name} status: {status_message(body)[:500]}")


def cleanup_argv(binary: Path) -> list[str]:
    """Removes kube-proxy's tables (run in the namespace). Not needed when the namespace is
    deleted (SystemNetworks.remove_all) or kube-proxy restarts (it rewrites its table)."""
    return [str(binary), "--cleanup", "--proxy-mode=nftables"]
