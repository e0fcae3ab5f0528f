"""Pod networks: each pod the executor runs gets a network namespace and a loopback pod IP.

A pod IP comes from a loopback range (127.64.0.0/16 by default; its first address is the
host's end, the "gateway"), so nothing ever leaves the machine, yet every pod has an address
of its own: two pods can both listen on 0.0.0.0:8080, the containers of one pod share its
127.0.0.1, and EndpointSlices (podIP + containerPort) point at something real.

Per pod (all created by `PodNetworks.ensure`, all gone with `remove`, i.e. `ip netns del`):

- a named netns `lxp-<executor id>-<pod ip>` with `lo` up;
- a veth pair: `lxp<ip as 8 hex digits>` on the host, `eth0` in the pod with the pod IP/32;
- `route_localnet=1` on both ends (127/8 addresses are martians on any other device), and
  forwarding on the host end only (pod to pod goes through the host; `ip_forward` stays off);
- on the host, `<pod ip>/32 dev lxp… src <gateway>` in table `local`, more specific than
  `local 127.0.0.0/8`; the `src` matters: 127.0.0.1 is local inside the pod too, so a reply
  to it would never leave the pod;
- in the pod, `<gateway>/32 dev eth0` and `<range> via <gateway>` in table `local` (more
  specific than the pod's own 127/8), so other pods and the host's end go out through eth0;
- nftables in the pod: a connection to 127.0.0.1:P for a port the pod does not serve itself
  (its declared containerPorts and the well-known sidecar ports in SIDECAR_PORTS) is
  DNATed to the gateway and SNATed to the pod IP; on the host (table `ip localexec`, shared
  by executors), what arrives from a pod for the gateway is DNATed to 127.0.0.1. So
  `http://127.0.0.1:<port>` of a host service (S3, the apiserver, Prometheus) works from a
  pod as it did when pods were the host.

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

DEFAULT_RANGE = "127.64.0.0/16"
HOST_IP = "127.0.0.1"
NETNS_DIR = Path("/run/netns")
RUN_DIR = Path("/run/localexec")
NETNS_PREFIX = "lxp-"
VETH_PREFIX = "lxp"
HOST_TABLE = "localexec"
# Ports a pod's sidecars listen on without declaring them (KServe's agent, Knative's
# queue-proxy and its metrics): a pod's own 127.0.0.1:P for these, never the host's.
SIDECAR_PORTS = (8012, 8022, 9081, 9088, 9090, 9091)
_NETNS_NAME = re.compile(r"^lxp-(?P<id>[0-9a-f]{6})-(?P<ip>\d+\.\d+\.\d+\.\d+)$")


class NetworkError(Exception):
    """The pod's network could not be set up (the kubelet's FailedCreatePodSandBox)."""


def executor_id(root: Path) -> str:
    return hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:6]


def netns_name(exec_id: str, ip: str) -> str:
    return f"{NETNS_PREFIX}{exec_id}-{ip}"


def veth_name(ip: str) -> str:
    """The host end's name: unique per IP, 11 characters (the limit is 15)."""
    return f"{VETH_PREFIX}{int(ipaddress.IPv4Address(ip)):08x}"


@dataclass(frozen=True)
class PodRange:
    network: ipaddress.IPv4Network

    @classmethod
    def parse(cls, cidr: str) -> PodRange:
        net = ipaddress.IPv4Network(cidr, strict=False)
        if not net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
            raise ValueError(f"pod range {cidr} is not inside 127.0.0.0/8: pod traffic must stay on the loopback")
        if (
            HOST_IP in [str(a) for a in (net.network_address, net.broadcast_address)]
            or ipaddress.IPv4Address(HOST_IP) in net
        ):
            raise ValueError(f"pod range {cidr} contains {HOST_IP}, the host's own loopback address")
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
        if uid in self.ips:
            return self.ips[uid]
        used = set(self.ips.values()) | set(taken_elsewhere)
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


def host_commands(ip: str, gateway: str, netns: str) -> list[list[str]]:
    """Root-namespace side of one pod: the veth pair, sysctls, the route in table local."""
    veth = veth_name(ip)
    return [
        ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns],
        ["sysctl", "-qw", f"net.ipv4.conf.{veth}.route_localnet=1", f"net.ipv4.conf.{veth}.forwarding=1"],
        ["ip", "link", "set", veth, "up"],
        ["ip", "route", "replace", f"{ip}/32", "dev", veth, "src", gateway, "table", "local"],
    ]


def pod_commands(ip: str, pod_range: PodRange) -> list[list[str]]:
    """Inside the pod's namespace (run with `ip netns exec`): lo, eth0, routes."""
    gateway = pod_range.gateway
    return [
        ["ip", "link", "set", "lo", "up"],
        ["sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"],
        ["ip", "addr", "add", f"{ip}/32", "dev", "eth0"],
        ["ip", "link", "set", "eth0", "up"],
        ["ip", "route", "add", f"{gateway}/32", "dev", "eth0", "src", ip, "table", "local"],
        ["ip", "route", "add", str(pod_range.network), "via", gateway, "dev", "eth0", "src", ip, "table", "local"],
    ]


def pod_nft(ip: str, gateway: str, own_ports: Iterable[int]) -> str:
    """The pod's NAT: 127.0.0.1:P to the host for ports the pod does not serve itself."""
    keep = sorted({int(p) for p in own_ports} | set(SIDECAR_PORTS))
    ports = ", ".join(str(p) for p in keep)
    return (
        "table ip localexec {\n"
        "  chain output {\n"
        "    type nat hook output priority -100; policy accept;\n"
        f"    ip daddr {HOST_IP} tcp dport != {{ {ports} }} dnat to {gateway}\n"
        "  }\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority 100; policy accept;\n"
        f'    oifname "eth0" ip saddr 127.0.0.0/8 ip saddr != {ip} snat to {ip}\n'
        "  }\n"
        "}\n"
    )


def host_rule(gateway: str) -> str:
    return f'iifname "{VETH_PREFIX}*" ip daddr {gateway} dnat to {HOST_IP}'


def host_nft(gateway: str, existing: str) -> str | None:
    """nft input that adds the host's DNAT for `gateway` to the shared table, None when
    `existing` (the table as `nft list` prints it) has it already."""
    if host_rule(gateway) in existing:
        return None
    return (
        f"table ip {HOST_TABLE} {{\n"
        "  chain prerouting {\n"
        "    type nat hook prerouting priority -100; policy accept;\n"
        "  }\n"
        "}\n"
        f"add rule ip {HOST_TABLE} prerouting {host_rule(gateway)}\n"
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

    def __init__(self, root: Path, pod_range: PodRange, run: Runner = run_command) -> None:
        self.root, self.range, self.run = root, pod_range, run
        self.id = executor_id(root)
        self.allocator = Allocator(pod_range, root / "pod-ips.json")
        self.ready: set[str] = set()  # IPs whose namespace this executor set up

    def path(self, ip: str) -> Path:
        return NETNS_DIR / netns_name(self.id, ip)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Host-wide: executors of other clusters allocate from the same loopback."""
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        with open(RUN_DIR / "lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def start(self) -> list[str]:
        """At executor start: claim the id, remove this id's namespaces (their processes
        died with the previous executor) and those of executors that are gone; set up the
        host's DNAT. The namespaces removed."""
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
            existing = ""
            with contextlib.suppress(NetworkError):
                existing = self.run(["nft", "list", "table", "ip", HOST_TABLE], None)
            text = host_nft(self.range.gateway, existing)
            if text is not None:
                self.run(["nft", "-f", "-"], text)
        return removed

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
            m = _NETNS_NAME.match(entry.name)
            if m:
                out.append((entry.name, m.group("id"), m.group("ip")))
        return out

    def allocate(self, uid: str, preferred: str | None = None) -> str:
        ip = self.allocator.get(uid)
        if ip is not None:
            return ip
        with self._lock():
            others = [ip for _, owner, ip in self._namespaces() if owner != self.id]
            return self.allocator.allocate(uid, preferred, others)

    def ensure(self, uid: str, own_ports: Iterable[int], preferred: str | None = None) -> str:
        """The pod's IP, its namespace set up (once)."""
        ip = self.allocate(uid, preferred)
        if ip in self.ready and self.path(ip).exists():
            return ip
        name = netns_name(self.id, ip)
        with self._lock():
            self._delete(name)  # a half-made one from a failed try
            try:
                self.run(["ip", "netns", "add", name], None)
                for cmd in host_commands(ip, self.range.gateway, name):
                    self.run(cmd, None)
                for cmd in pod_commands(ip, self.range):
                    self.run(["ip", "netns", "exec", name, *cmd], None)
                self.run(["ip", "netns", "exec", name, "nft", "-f", "-"], pod_nft(ip, self.range.gateway, own_ports))
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
            self._delete(netns_name(self.id, ip))
            self.ready.discard(ip)
        if release:
            self.allocator.release(uid)

    def _delete(self, name: str) -> None:
        if not (NETNS_DIR / name).exists():
            return
        m = _NETNS_NAME.match(name)
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
