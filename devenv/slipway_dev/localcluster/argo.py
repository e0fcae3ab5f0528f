"""Argo Rollouts v1.10.1's analysis controller on the local control plane (bench/compare_argo.py, issue 15).

Everything comes from the module pinned in hack/argo-rollouts (built by hack/build-argo-rollouts.sh): the
controller binary (upstream's cmd/rollouts-controller) and, from the module's manifests/, its five CRDs and the
objects of its cluster-wide installation that a process needs (cited as A = github.com/argoproj/argo-rollouts@v1.10.1):
the namespace `argo-rollouts`, its ServiceAccount, the ClusterRole `argo-rollouts` and its binding, and the
(empty) ConfigMap `argo-rollouts-config` the controller reads at start-up (A/utils/config/config.go:36).

What changes is only what running it as a process beside the other components needs:

- it runs only the analysis controller (`--controllers=analysis`, A/cmd/rollouts-controller/main.go:356): it
  reconciles AnalysisRuns (measurements against Prometheus) and nothing else; no Rollout, ReplicaSet or Service
  of slipway's is touched;
- leader election is off (one process, no standby; its lease would only delay the start);
- its healthz and metrics servers bind 0.0.0.0 whatever it is told (A/controller/controller.go:100), so it runs
  in a network namespace of its own (slipway_dev/localcluster/sysnet.py), reachable only from this machine: its
  127.0.0.1:<apiserver port> and 127.0.0.1:<Prometheus port> reach the host's, so the cluster's kubeconfig and
  the local Prometheus URL work unchanged from inside;
- `POD_NAMESPACE` says where its ConfigMap is, as the Deployment's downward API would
  (A/utils/defaults/defaults.go:257).

Argo's CRDs stay in the cluster once applied (an `up` without it stops only the process), and with them kubectl
takes `rollout` for Argo's Rollout (argoproj.io): name slipway's `mro` or `rollouts.slipway.dev` there, or use a
state dir of its own (bench/compare_argo.py does).

It authenticates as its ServiceAccount (`argo-rollouts:argo-rollouts`), so Argo's own ClusterRole is what
authorizes it. The Deployment and the metrics Service are not applied: the process replaces them.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from . import kubeconfig
from .procs import ProcessSpec
from .serving import HACK_DIR, Obj, ServingError, answers, apply_objects, module_source, service_account

MODULE = "github.com/argoproj/argo-rollouts"
PROCESS = "argo-rollouts-controller"
NAMESPACE = "argo-rollouts"
ACCOUNT = "argo-rollouts"
CONFIG_MAP = "argo-rollouts-config"
HEALTHZ_PORT = 8080  # A/controller/controller.go DefaultHealthzPort, the Deployment's `healthz` port
METRICS_PORT = 8090  # DefaultMetricsPort, the Deployment's `metrics` port
PORTS = (HEALTHZ_PORT, METRICS_PORT)
CONTROLLER_USER = service_account(NAMESPACE, ACCOUNT)
# The installation's files (A/manifests/cluster-install/kustomization.yaml: ../crds, ../base, ../role and the
# binding), less base/'s Deployment, metrics Service and notification Secret.
BASE_FILES = (
    "base/argo-rollouts-sa.yaml",
    "base/argo-rollouts-config.yaml",
    "role/argo-rollouts-clusterrole.yaml",
    "cluster-install/argo-rollouts-clusterrolebinding.yaml",
)


class ArgoError(ServingError):
    pass


def source_dir() -> Path:
    """Argo Rollouts' module in the Go module cache, at the version hack/argo-rollouts/go.mod pins."""
    try:
        return module_source("SLIPWAY_ARGO_ROLLOUTS_MODULE", HACK_DIR / "argo-rollouts", MODULE)
    except ServingError as err:
        raise ArgoError(f"{err} (for Argo Rollouts: run hack/build-argo-rollouts.sh)") from err


def crd_files(src: Path) -> list[Path]:
    """The CRDs in the order A/manifests/crds/kustomization.yaml lists them."""
    crds = src / "manifests" / "crds"
    listed = yaml.safe_load((crds / "kustomization.yaml").read_text())["resources"]
    files = [crds / name for name in listed]
    missing = [str(f) for f in files if not f.is_file()]
    if missing or not files:
        raise ArgoError(f"Argo Rollouts' CRDs are missing: {missing or crds}")
    return files


def base_objects(src: Path) -> list[Obj]:
    """The namespace, ServiceAccount, ConfigMap and RBAC, namespaced as Argo's install.yaml has them."""
    out: list[Obj] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}]
    for name in BASE_FILES:
        for obj in yaml.safe_load_all((src / "manifests" / name).read_text()):
            if not isinstance(obj, dict):
                continue
            obj = copy.deepcopy(obj)
            if obj["kind"] in ("ServiceAccount", "ConfigMap"):
                obj["metadata"]["namespace"] = NAMESPACE
            out.append(obj)
    binding = next(o for o in out if o["kind"] == "ClusterRoleBinding")
    if [(s["kind"], s["name"], s.get("namespace")) for s in binding["subjects"]] != [
        ("ServiceAccount", ACCOUNT, NAMESPACE)
    ]:
        raise ArgoError(f"Argo's ClusterRoleBinding no longer names {NAMESPACE}:{ACCOUNT}: {binding['subjects']}")
    return out


def argv(binary: Path, client: Path) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={client}",
        "--controllers=analysis",
        "--leader-elect=false",
        f"--healthzPort={HEALTHZ_PORT}",
        f"--metricsPort={METRICS_PORT}",
        "--loglevel=info",
    ]


def env(home: Path, client: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "KUBECONFIG": str(client),
        "POD_NAMESPACE": NAMESPACE,
    }


class ArgoStack:
    """Starts Argo Rollouts' analysis controller on a running control plane (Cluster(argo_rollouts=True))."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster  # a localcluster.Cluster (not imported: it imports us)
        self.home: Path = cluster.state.argo_rollouts

    def binary(self) -> Path:
        path = Path(self.cluster.bin_dir) / PROCESS
        if not os.access(path, os.X_OK):
            raise ArgoError(f"{path} is missing: run hack/build-argo-rollouts.sh (make argo-rollouts)")
        return path

    def healthz_url(self) -> str:
        return f"http://{self.cluster.sysnet.address(PROCESS)}:{HEALTHZ_PORT}/healthz"

    def metrics_url(self) -> str:
        return f"http://{self.cluster.sysnet.address(PROCESS)}:{METRICS_PORT}/metrics"

    def start(self, deadline: float) -> None:
        binary = self.binary()
        src = source_dir()
        self.home.mkdir(parents=True, exist_ok=True)
        if self.cluster.procs.pid(PROCESS) is None:
            self.cluster.install_crds(crd_files(src))
            apply_objects(self.cluster, base_objects(src), "Argo Rollouts' namespace, ConfigMap and RBAC")
            self.cluster.sysnet.prepare(PROCESS, PORTS)
            client = kubeconfig.for_identity(self.cluster.pki, self.cluster.server, CONTROLLER_USER,
                                             self.home / "kubeconfig")  # fmt: skip
            spec = ProcessSpec(PROCESS, self.cluster.sysnet.wrap(PROCESS, argv(binary, client)), env(self.home, client))
            self.cluster._start(spec)
        self.cluster._wait("Argo Rollouts' controller /healthz", answers(self.healthz_url()), deadline, [PROCESS])
