"""Pure builders for Kueue v0.17.0 on the local control plane (issue 16).

Everything comes from the module pinned in hack/kueue (built by hack/build-kueue.sh): the
manager binary, and its installation as Kueue's own `config/default` renders it (kustomize:
namespace `kueue-system`, name prefix `kueue-`). Cited below as Q = sigs.k8s.io/kueue@v0.17.0.
What changes is only what running the manager as a process on loopback needs:

- the webhooks and the five CRDs' conversion webhooks are registered by URL
  (https://<manager address>:9443/...) with a serving certificate from the cluster CA, as
  KServe's are (serving.webhooks_by_url): Kueue's internal certificate management issues a
  certificate for the Service's DNS name only (Q/pkg/util/cert/cert.go:118-173), which no
  apiserver here resolves to a process, so it is off and Kueue patches no caBundle
  (Q/cmd/kueue/main.go:253-258);
- Kueue's own `controller_manager_config.yaml` (its ConfigMap) is the configuration, with the
  edits in `manager_config`;
- the Deployment, its Services, the certificate Secret and the visibility APIServices are
  not applied: the process, its address and the disabled visibility server replace them.

The manager authenticates as its ServiceAccount (`kueue-system:kueue-controller-manager`), so
Kueue's ClusterRole `kueue-manager-role` is what authorizes it.
"""

from __future__ import annotations

import base64
import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .serving import HACK_DIR, Obj, ServingError, module_source, webhooks_by_url

MODULE = "sigs.k8s.io/kueue"
PROCESS = "kueue-manager"
NAMESPACE = "kueue-system"
ACCOUNT = "kueue-controller-manager"
CONFIG_MAP = "kueue-manager-config"
CONFIG_KEY = "controller_manager_config.yaml"
WEBHOOK_PORT = 9443  # Q/config/components/manager/controller_manager_config.yaml
HEALTH_PORT = 8081
METRICS_PORT = 8443
PORTS = (WEBHOOK_PORT, HEALTH_PORT, METRICS_PORT)
# With internal certificate management off, the manager reads its metrics server's certificate
# from this fixed path and exits without it (Q/cmd/kueue/main.go:204-223), even with metrics
# off: the stack bind-mounts a directory of the cluster's own over it.
METRICS_CERT_DIR = Path("/etc/kueue/metrics/certs")
# What a Deployment-less process on loopback replaces (see the module docstring).
NOT_APPLIED = frozenset({"Deployment", "Service", "Secret", "ConfigMap", "APIService"})
CONVERSION_PATH = "/convert"


class KueueError(ServingError):
    pass


def source_dir() -> Path:
    """Kueue's module in the Go module cache, at the version hack/kueue/go.mod pins."""
    try:
        return module_source("SLIPWAY_KUEUE_MODULE", HACK_DIR / "kueue", MODULE)
    except ServingError as err:
        raise KueueError(f"{err} (for Kueue: run hack/build-kueue.sh)") from err


def default_dir(src: Path) -> Path:
    """The kustomization Kueue installs with (rendered by `kubectl kustomize`)."""
    return src / "config" / "default"


def _bundle(ca_pem: bytes) -> str:
    return base64.b64encode(ca_pem).decode()


def crds(rendered: Sequence[Obj], base_url: str, ca_pem: bytes) -> list[Obj]:
    """Kueue's eleven CRDs; the five with a conversion webhook (v1beta1 <-> v1beta2, kustomize's
    Q/config/components/crd/patches/webhook_in_*.yaml) call it by URL."""
    out = []
    for obj in rendered:
        if obj["kind"] != "CustomResourceDefinition":
            continue
        obj = copy.deepcopy(obj)
        webhook = (obj["spec"].get("conversion") or {}).get("webhook")
        if webhook is not None:
            path = (webhook.get("clientConfig") or {}).get("service", {}).get("path", CONVERSION_PATH)
            webhook["clientConfig"] = {"url": base_url.rstrip("/") + path, "caBundle": _bundle(ca_pem)}
        out.append(obj)
    if not out:
        raise KueueError("Kueue's config/default rendered no CustomResourceDefinitions")
    return out


def base_objects(rendered: Sequence[Obj]) -> list[Obj]:
    """The namespace and RBAC, as Kueue installs them (every other kind: see NOT_APPLIED)."""
    keep = ("Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
    return [copy.deepcopy(o) for o in rendered if o["kind"] in keep]


def webhooks(rendered: Sequence[Obj], base_url: str, ca_pem: bytes) -> list[Obj]:
    """Kueue's mutating and validating webhook configurations (with the namespace selectors
    its kustomization adds: never kube-system or kueue-system), called by URL."""
    kinds = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
    configs = [o for o in rendered if o["kind"] in kinds]
    if len(configs) != 2:
        raise KueueError(f"expected Kueue's two webhook configurations, found {len(configs)}")
    return webhooks_by_url(configs, base_url, ca_pem)


def manager_config(rendered: Sequence[Obj], address: str, cert_dir: Path) -> dict[str, Any]:
    """Kueue's own Configuration (config.kueue.x-k8s.io/v1beta2) with what a process on loopback
    needs; every other setting (integrations, concurrency, client QPS) stays Kueue's."""
    cm = next((o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"] == CONFIG_MAP), None)
    if cm is None:
        raise KueueError(f"Kueue's config/default has no ConfigMap {CONFIG_MAP}")
    config: dict[str, Any] = yaml.safe_load(cm["data"][CONFIG_KEY])
    config["namespace"] = NAMESPACE
    config["health"] = {"healthProbeBindAddress": f"{address}:{HEALTH_PORT}"}
    config["metrics"] = {"bindAddress": f"{address}:{METRICS_PORT}"}
    config["webhook"] = {"host": address, "port": WEBHOOK_PORT, "certDir": str(cert_dir)}
    # One manager, no standby: leader election would only delay the start by a lease.
    config["leaderElection"] = {"leaderElect": False}
    config["internalCertManagement"] = {"enable": False}
    # The visibility API (on by default) serves from /visibility/tls.* behind an APIService
    # (Q/pkg/visibility/server.go:65-113); nothing here queries pending workloads through it.
    config["featureGates"] = {"VisibilityOnDemand": False}
    frameworks = (config.get("integrations") or {}).get("frameworks") or []
    if "pod" not in frameworks:
        raise KueueError("Kueue's configuration no longer enables the plain-Pod integration")
    return config


def argv(binary: Path, config: Path) -> list[str]:
    # The Deployment's own arguments (Q/config/components/manager/manager.yaml).
    return [str(binary), f"--config={config}", "--zap-log-level=2"]


def env(home: Path, kubeconfig: Path) -> dict[str, str]:
    # controller-runtime takes the client from $KUBECONFIG (Q/cmd/kueue/main.go:236).
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": str(kubeconfig)}
