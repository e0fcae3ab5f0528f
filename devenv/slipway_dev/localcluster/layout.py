"""Where things are: the repository, the binaries, the state dir, the CRDs, and the ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from slipway_dev import REPO

REPO_ROOT = REPO

# Built by hack/build-controlplane.sh; shared by every checkout on the machine because a
# build takes minutes and the binaries depend only on the pins under hack/controlplane/.
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")
KSERVE_FIXTURE = Path("shared") / "fixtures" / "kserve-v0.20.0"


def default_bin_dir() -> Path:
    return Path(os.environ.get("SLIPWAY_BIN") or Path.home() / ".cache" / "slipway" / "bin")


def default_state_dir() -> Path:
    return Path(os.environ.get("SLIPWAY_CLUSTER_DIR") or REPO_ROOT / ".cluster")


def default_etcd() -> Path:
    return Path(os.environ.get("SLIPWAY_ETCD") or "/usr/bin/etcd")


def default_kserve_crds() -> Path:
    """The KServe CRD fixtures: $SLIPWAY_KSERVE_CRDS, else <repo>/../shared/fixtures/....

    A fresh `git clone` of the repo elsewhere (e.g. /tmp/check) has no ../shared next to it;
    if the clone's origin is a local path we look next to the origin instead, so
    `git clone . /tmp/check && make test` finds the same fixtures.
    """
    env = os.environ.get("SLIPWAY_KSERVE_CRDS")
    if env:
        return Path(env)
    candidate = REPO_ROOT.parent / KSERVE_FIXTURE
    if candidate.is_dir():
        return candidate
    try:
        origin = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin.startswith("file://"):
        origin = origin[len("file://") :]
    if origin.startswith("/"):
        fallback = Path(origin).parent / KSERVE_FIXTURE
        if fallback.is_dir():
            return fallback
    return candidate  # missing: Cluster.up() reports it with this path, before starting anything


@dataclass(frozen=True)
class Ports:
    """Every port the cluster listens on, all bound to 127.0.0.1.

    The defaults stay clear of the well-known Kubernetes ports (6443, 2379, 10257, 10259)
    so the local cluster can coexist with a real one on the same machine.
    """

    apiserver: int = 16443
    etcd_client: int = 12379
    etcd_peer: int = 12380
    controller_manager: int = 16257
    scheduler: int = 16259
    prometheus: int = 19090  # Cluster(prometheus=True)
    # Cluster(serving=True): Traefik's web entry point (the Gateway's listener) and its own
    # entry point (ping, metrics); KServe's webhook server, metrics and health probes.
    ingress: int = 18086
    traefik: int = 18087
    kserve_webhook: int = 19443
    kserve_metrics: int = 18443
    kserve_probe: int = 18444

    @classmethod
    def free(cls) -> Ports:
        """Ports the kernel says are free right now (a private cluster, e.g. for tests).

        All sockets are held open until every port is picked, so the ports are distinct.
        """
        socks = []
        try:
            for _ in fields(cls):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind(("127.0.0.1", 0))
                socks.append(s)
            return cls(*(s.getsockname()[1] for s in socks))
        finally:
            for s in socks:
                s.close()

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, int]) -> Ports:
        known = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in data.items() if k in known})


def port_in_use(port: int) -> bool:
    # SO_REUSEADDR as Go's listeners use it: a port left in TIME_WAIT by our previous run
    # is free for them, only a live listener is a conflict.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class StateDir:
    """The layout of a cluster's state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pki = root / "pki"
        self.etcd_data = root / "etcd"
        self.logs = root / "logs"
        self.run = root / "run"
        self.kubeconfig = root / "kubeconfig"
        self.component_kubeconfigs = root / "kubeconfigs"
        self.kwok_workdir = root / "kwok"
        self.executor = root / "executor"  # the local executor's logs, scratch dirs, ready file
        self.prometheus = root / "prometheus"  # its config and TSDB
        self.kserve = root / "kserve"  # KServe's manager: its home, webhook certificate, kubeconfig
        self.traefik = root / "traefik"  # Traefik's home and kubeconfig
        self.knative = root / "knative"  # Knative's processes' homes, kubeconfigs, hosts file, CRDs
        self.kueue = root / "kueue"  # Kueue's manager: its configuration, certificates, kubeconfig, CRDs
        self.argo_rollouts = root / "argo-rollouts"  # Argo Rollouts' analysis controller: its home and kubeconfig
        self.sysnet = root / "sysnet"  # addresses of the components run in network namespaces
        self.kube_cache = root / "kube-cache"
        self.settings = root / "cluster.json"
        self.audit_policy = root / "audit-policy.json"  # components.audit_policy, written at each apiserver start
        self.audit_log = self.logs / "audit.log"
        self.crds_record = root / "crds-applied.json"

    def load_ports(self) -> Ports | None:
        try:
            return Ports.from_json(json.loads(self.settings.read_text())["ports"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save_ports(self, ports: Ports) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.settings.write_text(json.dumps({"ports": ports.to_json()}, indent=2) + "\n")
