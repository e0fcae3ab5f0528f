"""Pod networks: each pod the executor runs gets a network namespace and a pod IP.

Pod IPs come from 198.18.0.0/16 by default (RFC 2544's benchmarking range, never routed on
the internet; its first address is the host's end, the "gateway"). Not from loopback, which
the apiserver refuses in EndpointSlices. Every pod has an address of its own: two pods can
both listen on 0.0.0.0:8080, the containers of one pod share its 127.0.0.1, and
EndpointSlices (podIP + containerPort) point at something real.

Nothing can leave the machine:

- in the root namespace (`host_guard_commands`, at executor start, idempotent):
  `unreachable 198.18.0.0/15` (pod ranges, kwok's simulated pods' 198.19.0.0/17 too) and
  `unreachable <service CIDR>` (no kube-proxy: a ClusterIP leads nowhere), so a packet for a
  pod IP without its /32 route, or for a ClusterIP, fails at once (EHOSTUNREACH) instead of
  taking the default route out of the VM; the gateway address on `lo`;
- `ip_forward` stays off: forwarding is on only on the host ends of the pods' veths, and the
  host's nftables (table `ip localexec`, chain `forward`) accept only pod range to pod range
  between those veths and drop anything else to or from them;
- a pod has no default route: only the gateway and the pod range via `eth0`; its nftables
  drop anything leaving `eth0` that is not from its IP to the pod range;
- the one system namespace per cluster on node duty (kube-proxy's, see "node duty" below)
  routes ClusterIPs and everything else to a device that drops all it is sent, behind a
  guard that refuses whatever kube-proxy DNATs anywhere but loopback and the two ranges.

Per pod (all created by `PodNetworks.ensure`, all gone with `remove`, i.e. `ip netns del`):

- a named netns `lxp-<executor id>-<pod ip>` with `lo` up;
- a veth pair: `lxp<ip as 8 hex digits>` on the host, `eth0` in the pod with the pod IP/32;
- on the host, `<pod ip>/32 dev lxp… src <gateway>` (main table), forwarding on the host end;
- in the pod, `<gateway>/32 dev eth0` and `<range> via <gateway>` (main table);
- nftables in the pod: a connection to 127.0.0.1:P for a port the pod does not serve itself
  (its declared containerPorts and the well-known sidecar ports in SIDECAR_PORTS) is
  DNATed to the gateway and SNATed to the pod IP; on the host, what arrives from a pod for
  the gateway is DNATed to 127.0.0.1. So `http://127.0.0.1:<port>` of a host service (S3,
  the apiserver, Prometheus) works from a pod as it did when pods were the host. This is
  the only use of `route_localnet=1`, on the two ends of each pod's veth and nowhere else:
  in the pod, re-routing the DNATed packet (still from 127.0.0.1 until the SNAT) out of
  `eth0` needs it; on the host, accepting a packet DNATed to 127.0.0.1 from the veth and
  sending the replies (from 127.0.0.1 until conntrack rewrites them) back out of it do.

Names carry an executor id (from its state dir), so executors of several clusters on one
machine leave each other's namespaces alone; a pid file per executor id in RUN_DIR tells a
live executor's namespaces from those a killed one left behind (removed at start).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("localexec.podnet")

DEFAULT_RANGE = "198.18.0.0/16"
# Every pod range lies inside this one (RFC 2544's benchmarking range, 198.18.0.0/15), kwok's
# simulated pods get 198.19.0.0/17 (slipway_dev/localcluster/kwok.yaml) and the local cluster's own
# components 198.19.128.0/17 (SYSTEM_RANGE): the host routes all of it to `unreachable` except
# the /32 of each namespace set up here.
POD_NETWORK = "198.18.0.0/15"
DEFAULT_SERVICE_CIDR = "10.96.0.0/16"  # slipway_dev/localcluster/components.py SERVICE_CIDR
HOST_IP = "127.0.0.1"
NETNS_DIR = Path("/run/netns")
RUN_DIR = Path("/run/localexec")
NETNS_PREFIX = "lxp-"
VETH_PREFIX = "lxp"
HOST_TABLE = "localexec"
# Ports a pod's sidecars listen on without declaring them (KServe's agent, Knative's
# queue-proxy and its metrics): a pod's own 127.0.0.1:P for these, never the host's.
SIDECAR_PORTS = (8012, 8022, 9081, 9088, 9090, 9091)
# The local cluster's own components that bind every address (slipway_dev/localcluster/sysnet.py) get
# namespaces of the same make under another prefix, from SYSTEM_RANGE: executors leave them alone.
SYSTEM_PREFIX = "lxs-"
SYSTEM_RANGE = "198.19.128.0/17"


def _netns_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix)}(?P<id>[0-9a-f]{{6}})-(?P<ip>\d+\.\d+\.\d+\.\d+)$")


class NetworkError(Exception):
    """The pod's network could not be set up (the kubelet's FailedCreatePodSandBox)."""


def executor_id(root: Path) -> str:
    return hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:6]


def netns_name(exec_id: str, ip: str, prefix: str = NETNS_PREFIX) -> str:
    return f"{prefix}{exec_id}-{ip}"


def veth_name(ip: str) -> str:
    """The host end's name: unique per IP, 11 characters (the limit is 15)."""
    return f"{VETH_PREFIX}{int(ipaddress.IPv4Address(ip)):08x}"


@dataclass(frozen=True)
class PodRange:
    network: ipaddress.IPv4Network

    @classmethod
    def parse(cls, cidr: str) -> PodRange:
        net = ipaddress.IPv4Network(cidr, strict=False)
        if not net.subnet_of(ipaddress.IPv4Network(POD_NETWORK)):
            raise ValueError(
                f"pod range {cidr} is not inside {POD_NETWORK}, which the host routes nowhere but to its pods"
            )
        if net.num_addresses < 4:
            raise ValueError(f"pod range {cidr} is too small")
        return cls(net)

    @property
    def gateway(self) -> str:
        """The host's end: the range's first address."""
        return str(self.network.network_address + 1)

    def candidates(self) -> Iterator[str]:
        for n in range(2, self.network.num_addresses - 1):
            yield str(self.network.network_address + n)

    def __contains__(self, ip: object) -> bool:
        try:
            return ipaddress.IPv4Address(str(ip)) in self.network and str(ip) != self.gateway
        except ValueError:
            return False


class Allocator:
    """One IP per pod (by uid), lowest free first; kept in a JSON file so a restarted
    executor gives its pods the IPs they had. `taken_elsewhere` reports IPs other executors
    on this machine hold (their namespaces)."""

    def __init__(self, pod_range: PodRange, path: Path | None) -> None:
        self.range, self.path = pod_range, path
        self.ips: dict[str, str] = {}
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text())
                self.ips = {str(k): str(v) for k, v in data.items() if str(v) in pod_range}
            except (OSError, ValueError, AttributeError):
                self.ips = {}

    def get(self, uid: str) -> str | None:
        return self.ips.get(uid)

    def allocate(self, uid: str, preferred: str | None = None, taken_elsewhere: Iterable[str] = ()) -> str:
        """uid's IP: the one it had, unless another executor or cluster now holds that one (it was
        free while this state dir's owner was stopped: two veths, two /32 routes for one address
        cannot be), then the lowest free one."""
        elsewhere = set(taken_elsewhere)
        if uid in self.ips and self.ips[uid] not in elsewhere:
            return self.ips[uid]
        self.ips.pop(uid, None)
        used = set(self.ips.values()) | elsewhere
        if preferred is not None and preferred in self.range and preferred not in used:
            ip = preferred
        else:
            ip = next((c for c in self.range.candidates() if c not in used), "")
            if not ip:
                raise NetworkError(f"pod range {self.range.network} is exhausted")
        self.ips[uid] = ip
        self._save()
        return ip

    def release(self, uid: str) -> str | None:
        ip = self.ips.pop(uid, None)
        if ip is not None:
            self._save()
        return ip

    def retain(self, uids: Iterable[str]) -> list[str]:
        """Release every uid not in `uids`; the released uids."""
        keep = set(uids)
        gone = [u for u in self.ips if u not in keep]
        for uid in gone:
            del self.ips[uid]
        if gone:
            self._save()
        return gone

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.ips, sort_keys=True))
        tmp.replace(self.path)


# ---- what is run: pure builders, unit-tested -----------------------------------------


def unreachable_routes(service_cidr: str) -> list[list[str]]:
    """`unreachable` routes for the whole pod network and the Service CIDR (idempotent), so
    what has no /32 route of a live pod fails at once instead of following the default route
    off the machine. The local cluster installs them too, before kwok hands out addresses."""
    return [["ip", "route", "replace", "unreachable", cidr] for cidr in (POD_NETWORK, service_cidr)]


def host_guard_commands(pod_range: PodRange, service_cidr: str) -> list[list[str]]:
    """Root-namespace set-up shared by every pod (and every executor): idempotent. The
    gateway on `lo` (the source of the host's packets to pods) and the unreachable routes."""
    return [["ip", "addr", "replace", f"{pod_range.gateway}/32", "dev", "lo"], *unreachable_routes(service_cidr)]


def check_service_cidr(cidr: str) -> str:
    """The Service CIDR, normalised; ValueError unless it is a private range the host can
    route to `unreachable` without losing anything (not loopback, not the pod network, not
    wider than a /8)."""
    net = ipaddress.IPv4Network(cidr, strict=False)
    if not net.is_private or net.prefixlen < 8 or net.overlaps(ipaddress.IPv4Network("127.0.0.0/8")):
        raise ValueError(f"service CIDR {cidr} must be a private range no wider than a /8, outside 127.0.0.0/8")
    if net.overlaps(ipaddress.IPv4Network(POD_NETWORK)):
        raise ValueError(f"service CIDR {cidr} overlaps the pod network {POD_NETWORK}")
    return str(net)


def host_commands(ip: str, gateway: str, netns: str) -> list[list[str]]:
    """Root-namespace side of one pod: the veth pair, sysctls, the route to the pod."""
    veth = veth_name(ip)
    return [
        ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns],
        ["sysctl", "-qw", f"net.ipv4.conf.{veth}.route_localnet=1", f"net.ipv4.conf.{veth}.forwarding=1"],
        ["ip", "link", "set", veth, "up"],
        ["ip", "route", "replace", f"{ip}/32", "dev", veth, "src", gateway],
    ]


def pod_commands(ip: str, pod_range: PodRange) -> list[list[str]]:
    """Inside the pod's namespace (run with `ip netns exec`): lo, eth0, routes (no default
    route: only the gateway and the pod range)."""
    gateway = pod_range.gateway
    return [
        ["ip", "link", "set", "lo", "up"],
        ["sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"],
        ["ip", "addr", "add", f"{ip}/32", "dev", "eth0"],
        ["ip", "link", "set", "eth0", "up"],
        ["ip", "route", "add", f"{gateway}/32", "dev", "eth0", "src", ip],
        ["ip", "route", "add", str(pod_range.network), "via", gateway, "dev", "eth0", "src", ip],
    ]


def pod_nft(ip: str, pod_range: PodRange, own_ports: Iterable[int], reach: Sequence[PodRange] = ()) -> str:
    """The pod's NAT (127.0.0.1:P to the host for ports the pod does not serve itself) and
    its egress filter: out of eth0 only from its IP to the pod range (and the ranges in
    `reach`: a node namespace's pods)."""
    keep = sorted({int(p) for p in own_ports} | set(SIDECAR_PORTS))
    ports = ", ".join(str(p) for p in keep)
    nets = [str(pod_range.network), *(str(r.network) for r in reach)]
    dests = nets[0] if len(nets) == 1 else "{ " + ", ".join(nets) + " }"
    return (
        "table ip localexec {\n"
        "  chain output {\n"
        "    type nat hook output priority -100; policy accept;\n"
        f"    ip daddr {HOST_IP} tcp dport != {{ {ports} }} dnat to {pod_range.gateway}\n"
        "  }\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority 100; policy accept;\n"
        f'    oifname "eth0" ip saddr 127.0.0.0/8 ip saddr != {ip} snat to {ip}\n'
        "  }\n"
        "  chain egress {\n"
        "    type filter hook postrouting priority 200; policy accept;\n"
        f'    oifname "eth0" ip saddr {ip} ip daddr {dests} accept\n'
        '    oifname "eth0" drop\n'
        "  }\n"
        "}\n"
    )


def host_rule(pod_range: PodRange) -> str:
    """The host's DNAT of what a pod sends to the gateway: to the host's 127.0.0.1."""
    return f'iifname "{VETH_PREFIX}*" ip saddr {pod_range.network} ip daddr {pod_range.gateway} dnat to {HOST_IP}'


def forward_rule(pod_range: PodRange) -> str:
    """The only forwarding the host does: pod to pod, between pods' veths."""
    net = pod_range.network
    return f'iifname "{VETH_PREFIX}*" oifname "{VETH_PREFIX}*" ip saddr {net} ip daddr {net} accept'


FORWARD_JUMP = f'iifname "{VETH_PREFIX}*" jump pods'
FORWARD_DROPS = (f'iifname "{VETH_PREFIX}*" drop', f'oifname "{VETH_PREFIX}*" drop')


def host_nft(pod_range: PodRange, existing: str) -> str | None:
    """nft input that adds to the shared table (`ip localexec`) whatever of the host's DNAT
    and forward filter for `pod_range` `existing` (the table as `nft list` prints it)
    lacks; None when it has all of it. The forward chain: pod-range rules in `pods` (one
    per range, added by the executors that use it), then drop anything else to or from a
    pod's veth."""
    adds = []
    if host_rule(pod_range) not in existing:
        adds.append(f"add rule ip {HOST_TABLE} prerouting {host_rule(pod_range)}")
    if forward_rule(pod_range) not in existing:
        adds.append(f"add rule ip {HOST_TABLE} pods {forward_rule(pod_range)}")
    if FORWARD_JUMP not in existing:
        adds += [f"add rule ip {HOST_TABLE} forward {r}" for r in (FORWARD_JUMP, *FORWARD_DROPS)]
    if not adds:
        return None
    return (
        f"table ip {HOST_TABLE} {{\n"
        "  chain prerouting {\n"
        "    type nat hook prerouting priority -100; policy accept;\n"
        "  }\n"
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        "  }\n"
        "  chain pods {\n"
        "  }\n"
        "}\n" + "".join(a + "\n" for a in adds)
    )


# ---- node duty: a system namespace kube-proxy runs in (slipway_dev/localcluster/kubeproxy.py) ------
#
# The root namespace gets no kube-proxy (ClusterIPs stay `unreachable` there). One system
# namespace per cluster (sysnet.py's "node") plays the node: kube-proxy's nftables rules live
# in it, and processes there (Traefik) dial ClusterIPs and reach the pods behind them and the
# other system namespaces. What that takes besides a system namespace's usual set-up:
#
# - inside (`node_commands`): the whole pod network via the gateway, and the Service CIDR
#   and everything else (the default route) to an `ifb` device, which drops everything it is
#   sent (no `dummy` on this kernel): connect() looks the route up before kube-proxy's DNAT,
#   so a ClusterIP needs a route, and what is still addressed to one after kube-proxy's rules
#   dies there; the default route lets a packet DNATed elsewhere reach the guard;
# - inside (`pod_nft` with `reach`): egress out of eth0 to the pod range too;
# - inside (`guard_nft`): our own table refusing anything still addressed to the Service CIDR
#   after kube-proxy's DNAT, and anything DNATed (an EndpointSlice can name any address) or
#   addressed to somewhere other than loopback, the pod range and the system range. Without
#   it an EndpointSlice to 8.8.8.8 would send packets out on a host with a default route
#   (hack/knative/KUBE-PROXY.md section 5); here they would die in the sink, after a timeout;
# - on the host (`node_host_nft`, shared table, added once): the forward filter accepts the
#   system range to the pod range and the replies (established only: a pod still cannot open
#   anything to a system namespace), and those packets are SNATed to the pod range's gateway.
#   Pods route only their range and filter egress to it; seen from a pod the node namespace is
#   the host (as the host's own requests are), so pods need no change. The system range as a
#   whole is accepted: every other system namespace's egress filter drops the pod range, and
#   no per-namespace rules pile up in the shared table.
#
# Everything inside goes with the namespace; nothing in the root namespace changes but the
# three shared rules.

SERVICE_SINK = "slipway-svc"
GUARD_TABLE = "slipway-guard"
GUARD_REJECT = "reject with icmp type host-unreachable"


def node_commands(ip: str, own: PodRange, service_cidr: str) -> list[list[str]]:
    """Inside a node namespace, after pod_commands: the whole pod network via the gateway
    (the pods, and kwok's simulated pods, which the guard refuses), the Service CIDR to the
    sink and everything else too (the default route: the sink drops all it is sent). Every
    destination has a route so that a packet kube-proxy DNATs anywhere survives the NAT's
    re-route and meets the guard, which refuses it at once; without one it would be dropped
    there silently and the client would hang until its timeout. src: the namespace's
    address (what pods would see, were it not for the host's SNAT)."""
    return [
        ["ip", "route", "replace", POD_NETWORK, "via", own.gateway, "dev", "eth0", "src", ip],
        ["ip", "link", "add", SERVICE_SINK, "type", "ifb"],
        ["ip", "link", "set", SERVICE_SINK, "up"],
        ["ip", "route", "replace", service_cidr, "dev", SERVICE_SINK, "src", ip],
        ["ip", "route", "replace", "default", "dev", SERVICE_SINK, "src", ip],
    ]


def guard_nft(own: PodRange, pods: PodRange, service_cidr: str) -> str:
    """The node namespace's guard (idempotent: the table is flushed and written whole). Its
    output and forward chains run after kube-proxy's DNAT (nat, priority -100) and before its
    filter (0) and refuse: what is still addressed to the Service CIDR (no Service, or no
    kube-proxy), what was DNATed anywhere but loopback and the two ranges, and anything
    else addressed there (only the sink's default route leads there). postrouting drops the
    same, last, in case anything slipped past."""
    allowed = f"{{ 127.0.0.0/8, {pods.network}, {own.network} }}"
    checks = (f"ip daddr {service_cidr}", f"ct status dnat ip daddr != {allowed}", f"ip daddr != {allowed}")
    reject = "".join(f"    {c} counter {GUARD_REJECT}\n" for c in checks)
    drop = "".join(f"    {c} counter drop\n" for c in checks)
    return (
        f"add table ip {GUARD_TABLE}\n"
        f"flush table ip {GUARD_TABLE}\n"
        f"table ip {GUARD_TABLE} {{\n"
        "  chain output {\n"
        "    type filter hook output priority -50; policy accept;\n"
        f"{reject}"
        "  }\n"
        "  chain forward {\n"
        "    type filter hook forward priority -50; policy accept;\n"
        f"{reject}"
        "  }\n"
        "  chain postrouting {\n"
        "    type filter hook postrouting priority 300; policy accept;\n"
        f"{drop}"
        "  }\n"
        "}\n"
    )


def node_host_rules(own: PodRange, pods: PodRange) -> dict[str, str]:
    """The host's rules for node namespaces of range `own` reaching the pods of `pods`:
    {rule: chain of the shared table}."""
    veths = f'iifname "{VETH_PREFIX}*" oifname "{VETH_PREFIX}*"'
    there = f"ip saddr {own.network} ip daddr {pods.network}"
    back = f"ip saddr {pods.network} ip daddr {own.network}"
    return {
        f"{veths} {there} accept": "pods",
        f"{veths} {back} ct state established accept": "pods",
        f"{veths} {there} snat to {pods.gateway}": "postrouting",
    }


def node_host_nft(own: PodRange, pods: PodRange, existing: str) -> str | None:
    """nft input adding to the shared table whatever of node_host_rules `existing` (the
    table as `nft list` prints it) lacks; None when it has them all. The table's forward
    chain and its jump to `pods` come from host_nft (set up first)."""
    rules = node_host_rules(own, pods).items()
    adds = [f"add rule ip {HOST_TABLE} {chain} {rule}" for rule, chain in rules if rule not in existing]
    if not adds:
        return None
    return (
        f"table ip {HOST_TABLE} {{\n"
        "  chain pods {\n"
        "  }\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority 100; policy accept;\n"
        "  }\n"
        "}\n" + "".join(a + "\n" for a in adds)
    )


def declared_ports(pod: Mapping[str, object]) -> list[int]:
    """The TCP ports the pod's containers (init containers included) declare."""
    spec = pod.get("spec") or {}
    out: list[int] = []
    assert isinstance(spec, Mapping)
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            for p in c.get("ports") or []:
                n = p.get("containerPort")
                if isinstance(n, int) and p.get("protocol", "TCP") == "TCP" and n not in out:
                    out.append(n)
    return out


# Flags naming a port that a sidecar reaches over the pod's own 127.0.0.1: KServe's agent
# proxies to the model server at 127.0.0.1:<--component-port>, a port the model server's
# container (kserve-container, listening on 8080) does not declare.
LOCAL_PORT_FLAGS = ("--component-port",)


def own_ports(pod: Mapping[str, object]) -> list[int]:
    """The TCP ports the pod serves itself on its 127.0.0.1: those its containers declare,
    and those a sidecar's args say it reaches there (LOCAL_PORT_FLAGS)."""
    ports = declared_ports(pod)
    spec = pod.get("spec") or {}
    assert isinstance(spec, Mapping)
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            args = [str(a) for a in [*(c.get("command") or []), *(c.get("args") or [])]]
            for i, arg in enumerate(args):
                flag, eq, value = arg.partition("=")
                if flag not in LOCAL_PORT_FLAGS:
                    continue
                if not eq:
                    value = args[i + 1] if i + 1 < len(args) else ""
                if value.isdigit() and 0 < int(value) < 65536 and int(value) not in ports:
                    ports.append(int(value))
    return ports


def wrap(argv: Sequence[str], netns: Path, mounts: Sequence[tuple[str, str, bool]]) -> list[str]:
    """argv run in the pod's network namespace and a mount namespace of its own (private
    propagation) without the host's /run/netns mounts, with `mounts` ((source, target,
    read-only)) bind-mounted first. nsenter,
    unshare and sh each exec the next, so the process keeps the pid Popen gave it."""
    script = []
    for i, (_, _, ro) in enumerate(mounts):
        src, dst = f'"${{{2 * i + 1}}}"', f'"${{{2 * i + 2}}}"'
        script.append(f"mkdir -p {dst} && mount --bind {src} {dst}")
        if ro:
            script.append(f"mount -o remount,bind,ro {dst}")
    shift = f"shift {2 * len(mounts)}" if mounts else ":"
    # The copy of /run/netns this mount namespace got would keep every pod's network
    # namespace alive as long as this container lives: dropped first.
    body = f"{{ umount -R -l {NETNS_DIR} 2>/dev/null; :; }} && " + " && ".join([*script, shift]) + ' && exec "$@"'
    paths = [p for src, dst, _ in mounts for p in (src, dst)]
    return [
        "nsenter",
        f"--net={netns}",
        "--",
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        body,
        "localexec-mounts",
        *paths,
        *argv,
    ]


# ---- doing it --------------------------------------------------------------------------

Runner = Callable[[Sequence[str], str | None], str]


def run_command(argv: Sequence[str], stdin: str | None = None) -> str:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {(proc.stderr or proc.stdout).strip()[:300]}")
    return proc.stdout


def missing_tools() -> list[str]:
    return [t for t in ("ip", "nft", "nsenter", "unshare", "sysctl") if shutil.which(t) is None]


class PodNetworks:
    """The pod namespaces of one executor (root is its state dir's executor dir)."""

    def __init__(
        self,
        root: Path,
        pod_range: PodRange,
        run: Runner = run_command,
        service_cidr: str = DEFAULT_SERVICE_CIDR,
        prefix: str = NETNS_PREFIX,
    ) -> None:
        self.root, self.range, self.run, self.prefix = root, pod_range, run, prefix
        self._pattern = _netns_pattern(prefix)
        self.service_cidr = check_service_cidr(service_cidr)
        self.id = executor_id(root)
        self.allocator = Allocator(pod_range, root / "pod-ips.json")
        self.ready: set[str] = set()  # IPs whose namespace this executor set up

    def path(self, ip: str) -> Path:
        return NETNS_DIR / netns_name(self.id, ip, self.prefix)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Host-wide: executors of other clusters allocate from the same range."""
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        with open(RUN_DIR / "lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def start(self) -> list[str]:
        """At executor start: claim the id, remove this id's namespaces (their processes
        died with the previous executor) and those of executors that are gone; set up the
        host's guard routes, DNAT and forward filter (idempotent). The namespaces removed."""
        missing = missing_tools()
        if missing:
            raise NetworkError(f"missing {', '.join(missing)} (hack/install-system-deps.sh installs them)")
        removed = []
        with self._lock():
            (RUN_DIR / f"{self.id}.pid").write_text(f"{os.getpid()}\n")
            for name, owner, _ in self._namespaces():
                if owner == self.id or not _alive_owner(owner):
                    self._delete(name)
                    removed.append(name)
            self._host_setup()
        return removed

    def host_setup(self) -> None:
        """The host's guard routes, gateway address, DNAT and forward filter for this range
        (idempotent): what `start` sets up, without claiming or cleaning anything."""
        with self._lock():
            self._host_setup()

    def _host_setup(self) -> None:
        for cmd in host_guard_commands(self.range, self.service_cidr):
            self.run(cmd, None)
        existing = ""
        with contextlib.suppress(NetworkError):
            existing = self.run(["nft", "list", "table", "ip", HOST_TABLE], None)
        text = host_nft(self.range, existing)
        if text is not None:
            self.run(["nft", "-f", "-"], text)

    def _node_host_setup(self, pods: PodRange) -> None:
        existing = ""
        with contextlib.suppress(NetworkError):
            existing = self.run(["nft", "list", "table", "ip", HOST_TABLE], None)
        text = node_host_nft(self.range, pods, existing)
        if text is not None:
            self.run(["nft", "-f", "-"], text)

    def stop(self) -> None:
        """At executor shutdown: every namespace of this executor goes."""
        for name, owner, _ in self._namespaces():
            if owner == self.id:
                self._delete(name)
        (RUN_DIR / f"{self.id}.pid").unlink(missing_ok=True)
        self.ready.clear()

    def _namespaces(self) -> list[tuple[str, str, str]]:
        if not NETNS_DIR.is_dir():
            return []
        out = []
        for entry in sorted(NETNS_DIR.iterdir()):
            m = self._pattern.match(entry.name)
            if m:
                out.append((entry.name, m.group("id"), m.group("ip")))
        return out

    def allocate(self, uid: str, preferred: str | None = None) -> str:
        ip = self.allocator.get(uid)
        if ip is not None and (ip in self.ready or self.path(ip).exists()):
            return ip  # its namespace is ours and up
        with self._lock():
            others = [ip for _, owner, ip in self._namespaces() if owner != self.id]
            return self.allocator.allocate(uid, preferred, others)

    def ensure(
        self, uid: str, own_ports: Iterable[int], preferred: str | None = None, node: PodRange | None = None
    ) -> str:
        """The pod's IP, its namespace set up (once). With `node` (a pod range), the namespace
        is on node duty: it reaches that range's pods and routes the Service CIDR to a sink
        behind a guard (node_commands, guard_nft, node_host_nft)."""
        ip = self.allocate(uid, preferred)
        if ip in self.ready and self.path(ip).exists():
            return ip
        name = netns_name(self.id, ip, self.prefix)
        reach = [node] if node is not None else []
        with self._lock():
            self._delete(name)  # a half-made one from a failed try
            try:
                if node is not None:
                    self._node_host_setup(node)
                self.run(["ip", "netns", "add", name], None)
                for cmd in host_commands(ip, self.range.gateway, name):
                    self.run(cmd, None)
                inside = pod_commands(ip, self.range)
                if node is not None:
                    inside += node_commands(ip, self.range, self.service_cidr)
                for cmd in inside:
                    self.run(["ip", "netns", "exec", name, *cmd], None)
                text = pod_nft(ip, self.range, own_ports, reach)
                if node is not None:
                    text += guard_nft(self.range, node, self.service_cidr)
                self.run(["ip", "netns", "exec", name, "nft", "-f", "-"], text)
            except NetworkError:
                self._delete(name)
                raise
        self.ready.add(ip)
        log.info("pod %s: network namespace %s, IP %s", uid[:8], name, ip)
        return ip

    def remove(self, uid: str, release: bool) -> None:
        """Tear the pod's namespace down (veth, routes and NAT go with it); with `release`
        its IP goes back to the pool too."""
        ip = self.allocator.get(uid)
        if ip is None:
            return
        if ip in self.ready or self.path(ip).exists():
            self._delete(netns_name(self.id, ip, self.prefix))
            self.ready.discard(ip)
        if release:
            self.allocator.release(uid)

    def _delete(self, name: str) -> None:
        if not (NETNS_DIR / name).exists():
            return
        m = self._pattern.match(name)
        try:
            self.run(["ip", "netns", "del", name], None)
        except NetworkError as err:
            log.warning("could not delete %s: %s", name, err)
        if m:  # deleting the namespace deletes the veth pair, and the route with it
            with contextlib.suppress(NetworkError):
                self.run(["ip", "link", "del", veth_name(m.group("ip"))], None)


def _alive_owner(exec_id: str) -> bool:
    try:
        pid = int((RUN_DIR / f"{exec_id}.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"localexec" in cmdline or b"pytest" in cmdline
