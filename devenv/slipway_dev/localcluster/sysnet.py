"""Network namespaces for the local cluster's own components that listen on every address.

Everything here must listen on loopback or inside network namespaces the tooling creates. Some
real components cannot be told where to listen: KServe's manager passes controller-runtime only
a port for its webhook server, so it binds 0.0.0.0 (Knative's components do the same). Each such
component runs in a namespace of its own, made like a pod's by the executor's code
(localexec.podnet): an address from SYSTEM_RANGE on a veth to the host, no default route, its
127.0.0.1:P for ports it does not serve itself DNATed to the host's 127.0.0.1 (so a kubeconfig
naming https://127.0.0.1:<apiserver port> works unchanged), and nothing but the host can reach
it. The apiserver calls the webhook at https://<component address>:<port>.

Names are `lxs-<cluster id>-<ip>` (the id from the state dir), so clusters on one machine and
the executors (`lxp-…`) leave each other's namespaces alone; the address of each component is
kept in the state dir, so a restarted component gets the one its webhook registration names.

One namespace per cluster may be on node duty (`prepare(..., node=True)`, slipway_dev/localcluster/kubeproxy.py):
kube-proxy runs in it, and it reaches the executor's pods (DEFAULT_RANGE) and ClusterIPs
besides the other system namespaces, behind a guard that lets nothing DNATed leave
(localexec.podnet, "node duty"). The root namespace keeps its `unreachable` Service CIDR.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from slipway_dev.localexec.podnet import (
    DEFAULT_RANGE,
    SYSTEM_PREFIX,
    SYSTEM_RANGE,
    NetworkError,
    PodNetworks,
    PodRange,
    wrap,
)

__all__ = ["NetworkError", "SystemNetworks"]


class SystemNetworks:
    def __init__(self, root: Path, service_cidr: str) -> None:
        self.root = root
        self._nets = PodNetworks(root, PodRange.parse(SYSTEM_RANGE), service_cidr=service_cidr, prefix=SYSTEM_PREFIX)

    def address(self, component: str) -> str:
        """The component's address: the same one for as long as the state dir lives."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self._nets.allocate(component)

    def prepare(self, component: str, ports: Iterable[int], *, node: bool = False) -> str:
        """A fresh namespace for the component, which is about to start (one a dead process
        of it left is made anew), serving `ports` itself. Returns its address. With `node`,
        the namespace is on node duty: it also reaches the executor's pods, and ClusterIPs
        are routed (to a sink, for kube-proxy's rules to DNAT) behind the guard."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._nets.host_setup()
        return self._nets.ensure(component, ports, node=PodRange.parse(DEFAULT_RANGE) if node else None)

    def wrap(self, component: str, argv: Sequence[str]) -> list[str]:
        """argv run inside the component's namespace (nsenter; the pid stays the process's)."""
        return wrap(argv, self._nets.path(self.address(component)), [])

    def remove_all(self) -> None:
        """At cluster shutdown: every namespace of this cluster goes (addresses are kept)."""
        self._nets.stop()
