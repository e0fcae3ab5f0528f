"""The real serving stack of the local cluster: KServe's controller manager with its webhooks,
the Gateway API CRDs, and Traefik as the Gateway API data plane (Standard mode).

Everything comes from the Go modules pinned in hack/kserve and hack/traefik (built by
hack/build-serving.sh): the binaries, and the manifests from the modules' own `config/`
folders, rendered by kubectl's kustomize and changed only where the binary runs as a process on
loopback in place of an in-cluster Deployment:

- KServe's webhooks are registered by URL (https://<manager address>:<port>/...) with a
  serving certificate from the cluster CA, instead of through their Service and cert-manager;
  the manager runs in a network namespace of its own (sysnet.py), because its webhook server
  binds every address;
- `inferenceservice-config` gets Gateway API ingress on (`enableGatewayApi`, the Gateway
  `kserve/kserve-ingress-gateway` we create for Traefik) and Standard (RawDeployment) as the
  default deployment mode, as KServe's Standard-mode installation sets them;
- the manager and Traefik authenticate with client certificates naming their
  ServiceAccounts (`system:serviceaccount:<ns>:<name>`), so the RBAC from KServe's
  `config/rbac` (and the ClusterRole Traefik documents) is what authorizes them.

The pure builders here take rendered manifests and return what to apply; `Cluster` does the
applying, starting and waiting.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import ssl
import subprocess
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from slipway_dev import HACK

from . import kubeconfig
from .layout import Ports, StateDir
from .pki import ClientIdentity
from .procs import ProcessSpec
from .prometheus import Discovery

Obj = dict[str, Any]

KSERVE_MANAGER = "kserve-manager"
TRAEFIK = "traefik"

KSERVE_MODULE = "github.com/kserve/kserve"
GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api"
HACK_DIR = HACK

NAMESPACE = "kserve"
GATEWAY = "kserve-ingress-gateway"  # the name KServe's ingress config refers to
GATEWAY_CLASS = "traefik"
GATEWAY_CONTROLLER = "traefik.io/gateway-controller"
TRAEFIK_NAMESPACE = "traefik"
INGRESS_DOMAIN = "example.com"
LISTENER = "http"


def service_account(namespace: str, name: str) -> ClientIdentity:
    # The groups the apiserver gives a ServiceAccount token, so bindings to either work.
    return ClientIdentity(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}"),
    )


MANAGER_USER = service_account(NAMESPACE, "kserve-controller-manager")
TRAEFIK_USER = service_account(TRAEFIK_NAMESPACE, "traefik")
MONITORING_NAMESPACE = "monitoring"
PROMETHEUS_USER = service_account(MONITORING_NAMESPACE, "prometheus")


class ServingError(RuntimeError):
    pass


# ---- sources -------------------------------------------------------------------------------


def module_dir(tooling: Path, module: str) -> Path:
    """Where the Go module cache holds `module` at the version `tooling`'s go.mod selects
    (hack/build-serving.sh has downloaded it)."""
    try:
        out = subprocess.run(
            ["go", "list", "-m", "-f", "{{.Dir}}", module],
            cwd=tooling,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        raise ServingError(f"cannot locate {module} through {tooling}/go.mod ({err}): run build-serving.sh") from err
    path = Path(out)
    if not out or not (path / "go.mod").exists():
        raise ServingError(f"{module} is not in the Go module cache: run hack/build-serving.sh")
    return path


def module_source(variable: str, tooling: Path, module: str) -> Path:
    """A module's directory: the one the environment variable names (a checkout, for tests), else the Go module
    cache's at the version `tooling`'s go.mod selects (module_dir)."""
    override = os.environ.get(variable)
    return Path(override) if override else module_dir(tooling, module)


@dataclass(frozen=True)
class Sources:
    kserve: Path  # the KServe module: config/ (CRDs, RBAC, ConfigMap, webhooks, runtimes)
    gateway_api: Path  # the Gateway API module Traefik is built against: config/crd/standard

    @classmethod
    def locate(cls) -> Sources:
        kserve = module_source("SLIPWAY_KSERVE_MODULE", HACK_DIR / "kserve", KSERVE_MODULE)
        gateway_api = module_source("SLIPWAY_GATEWAY_API_MODULE", HACK_DIR / "traefik", GATEWAY_API_MODULE)
        return cls(kserve, gateway_api)


def gateway_api_crds() -> list[Path]:
    """The Gateway API's standard-channel CRDs, at the version Traefik is built against. Every local cluster
    has them: a Standard-mode Rollout writes an HTTPRoute, whatever serves it."""
    module = module_source("SLIPWAY_GATEWAY_API_MODULE", HACK_DIR / "traefik", GATEWAY_API_MODULE)
    return sorted((module / "config" / "crd" / "standard").glob("*.yaml"))


def load_all(text: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind")]


# ---- KServe manifests ----------------------------------------------------------------------


def isvc_config(configmap: Obj, ingress_port: int) -> Obj:
    """KServe's `inferenceservice-config` set up for Standard mode behind our Gateway."""
    cm = copy.deepcopy(configmap)
    data = cm.setdefault("data", {})
    data.pop("_example", None)  # documentation only, and 30 KB of it
    ingress = json.loads(data["ingress"])
    ingress.update(
        enableGatewayApi=True,
        kserveIngressGateway=f"{NAMESPACE}/{GATEWAY}",
        ingressDomain=INGRESS_DOMAIN,
        urlScheme="http",
        # Serverless mode: no Istio here. KServe then takes the InferenceService's URL from its
        # predictor's Knative Service, served by Traefik's Knative provider, instead of making an
        # Istio VirtualService (KServe v0.20.0 pkg/controller/v1beta1/inferenceservice/
        # reconcilers/ingress/ingress_reconciler.go:191-233, controller.go:366-371).
        disableIstioVirtualHost=True,
    )
    data["ingress"] = json.dumps(ingress, indent=2)
    deploy = json.loads(data["deploy"])
    deploy["defaultDeploymentMode"] = "RawDeployment"
    data["deploy"] = json.dumps(deploy, indent=2)
    return cm


def webhooks_by_url(configs: Iterable[Obj], base_url: str, ca_pem: bytes) -> list[Obj]:
    """Webhook configurations pointing at `base_url` + each webhook's service path, with the
    CA that signed the webhook server's certificate, instead of at KServe's Service."""
    out = []
    bundle = base64.b64encode(ca_pem).decode()
    for cfg in configs:
        cfg = copy.deepcopy(cfg)
        for hook in cfg.get("webhooks") or []:
            service = (hook.get("clientConfig") or {}).get("service") or {}
            hook["clientConfig"] = {"url": base_url.rstrip("/") + service.get("path", "/"), "caBundle": bundle}
        out.append(cfg)
    return out


def kserve_base_objects(rendered: Sequence[Obj], ingress_port: int) -> list[Obj]:
    """What the manager needs before it starts: its namespace, RBAC and ConfigMap (from
    config/rbac and config/configmap, rendered), the Gateway its routes attach to, Traefik's
    namespace and RBAC."""
    out: list[Obj] = [_namespace(n) for n in (NAMESPACE, TRAEFIK_NAMESPACE, MONITORING_NAMESPACE)]
    for obj in rendered:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "inferenceservice-config":
            out.append(isvc_config(obj, ingress_port))
        elif obj["kind"] in ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
            obj = copy.deepcopy(obj)
            if obj["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
                obj["metadata"]["namespace"] = NAMESPACE
            for subject in obj.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount":
                    subject["namespace"] = NAMESPACE
            out.append(obj)
    out += traefik_rbac()
    out += prometheus_rbac()
    out += gateway_objects(ingress_port)
    return out


def _namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def gateway_objects(ingress_port: int) -> list[Obj]:
    """The GatewayClass Traefik implements and the Gateway KServe's HTTPRoutes attach to.
    Traefik binds a listener to the entry point with the same port."""
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": GATEWAY_CLASS},
            "spec": {"controllerName": GATEWAY_CONTROLLER},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": GATEWAY, "namespace": NAMESPACE},
            "spec": {
                "gatewayClassName": GATEWAY_CLASS,
                "listeners": [
                    {
                        "name": LISTENER,
                        "protocol": "HTTP",
                        "port": ingress_port,
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
    ]


def traefik_rbac() -> list[Obj]:
    """What Traefik's Kubernetes Gateway provider reads and writes (its documented RBAC)."""
    name = "traefik-gateway-controller"
    read = ["get", "list", "watch"]
    gateway_kinds = ["gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants", "backendtlspolicies"]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "traefik", "namespace": TRAEFIK_NAMESPACE}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [
                {"apiGroups": [""], "resources": ["namespaces", "services", "secrets", "configmaps"], "verbs": read},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
                {"apiGroups": ["gateway.networking.k8s.io"], "resources": gateway_kinds, "verbs": read},
                {
                    "apiGroups": ["gateway.networking.k8s.io"],
                    "resources": [f"{k}/status" for k in gateway_kinds],
                    "verbs": ["update", "patch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "traefik", "namespace": TRAEFIK_NAMESPACE}],
        },
    ]


def prometheus_rbac() -> list[Obj]:
    """What Prometheus' Kubernetes discovery of pods reads (as in its own examples)."""
    name = "prometheus-discovery"
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "prometheus", "namespace": MONITORING_NAMESPACE},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [
                {"apiGroups": [""], "resources": ["pods", "services", "endpoints"], "verbs": ["get", "list", "watch"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": MONITORING_NAMESPACE}],
        },
    ]


# ---- processes -----------------------------------------------------------------------------


def manager_argv(binary: Path, p: Ports, address: str) -> list[str]:
    # The webhook server's address cannot be chosen (KServe passes only a port to
    # controller-runtime), so it binds every address: the manager runs in a network namespace
    # of its own (sysnet), where `address` is its only one besides loopback.
    return [
        str(binary),
        f"--metrics-addr={address}:{p.kserve_metrics}",
        f"--health-probe-addr={address}:{p.kserve_probe}",
        f"--webhook-port={p.kserve_webhook}",
        "--zap-log-level=info",
    ]


def manager_env(state: StateDir, kubeconfig: Path) -> dict[str, str]:
    # controller-runtime reads its serving certificate from $TMPDIR/k8s-webhook-server/serving-certs.
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(state.kserve),
        "KUBECONFIG": str(kubeconfig),
        "POD_NAMESPACE": NAMESPACE,
        "TMPDIR": str(state.kserve / "tmp"),
    }


def webhook_cert_dir(state: StateDir) -> Path:
    return state.kserve / "tmp" / "k8s-webhook-server" / "serving-certs"


TRAEFIK_BUCKETS = "0.005,0.01,0.025,0.05,0.075,0.1,0.15,0.2,0.3,0.5,0.75,1,2.5,5,10"


def traefik_argv(binary: Path, p: Ports) -> list[str]:
    return [
        str(binary),
        f"--entryPoints.web.address=127.0.0.1:{p.ingress}",
        f"--entryPoints.traefik.address=127.0.0.1:{p.traefik}",
        "--ping=true",
        # Its API, on the loopback-only traefik entry point: which pod addresses each service balances over now,
        # for tests that must know the gateway has dropped a rolled Deployment's old pod (EndpointSlices lead
        # Traefik's reloads by up to its throttle).
        "--api.insecure=true",
        "--providers.kubernetesgateway=true",
        "--providers.kubernetesgateway.statusAddress.ip=127.0.0.1",
        *traefik_common_flags(),
    ]


def traefik_common_flags() -> list[str]:
    """What every Traefik of the local cluster runs with, whichever its provider."""
    return [
        # Per-backend request counts by status code and a latency histogram: the
        # runtime-independent signals canary analysis compares.
        "--metrics.prometheus=true",
        "--metrics.prometheus.addServicesLabels=true",
        "--metrics.prometheus.addRoutersLabels=true",
        f"--metrics.prometheus.buckets={TRAEFIK_BUCKETS}",
        # Nothing may leave the machine: no update check, no usage report.
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        "--log.level=INFO",
    ]


def traefik_env(state: StateDir, kubeconfig: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(state.traefik), "KUBECONFIG": str(kubeconfig)}


# ---- start-up ------------------------------------------------------------------------------


class Stack:
    """Starts the serving stack on a running control plane (called by Cluster.up)."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster  # a localcluster.Cluster (not imported: it imports us)
        self.state: StateDir = cluster.state
        self.ports: Ports = cluster.ports

    def render(self, directory: Path) -> list[Obj]:
        return load_all(self.cluster.kubectl("kustomize", str(directory), timeout=300).stdout)

    def apply(self, objects: Sequence[Obj], what: str) -> None:
        apply_objects(self.cluster, objects, what)

    def start(self, deadline: float) -> None:
        manager_bin = self._binary("kserve-manager")
        traefik_bin = self._binary("traefik")
        src = Sources.locate()
        for d in (self.state.kserve, self.state.traefik, webhook_cert_dir(self.state)):
            d.mkdir(parents=True, exist_ok=True)
        if self.cluster.procs.pid(KSERVE_MANAGER) is None:
            self._install_crds(src)
            base = self.render(src.kserve / "config" / "rbac") + self.render(src.kserve / "config" / "configmap")
            self.apply(kserve_base_objects(base, self.ports.ingress), "KServe's RBAC and ConfigMap, the Gateway")
            kubeconfig = self._kubeconfig(MANAGER_USER, self.state.kserve / "kubeconfig")
            p = self.ports
            address = self.cluster.sysnet.prepare(KSERVE_MANAGER, [p.kserve_webhook, p.kserve_metrics, p.kserve_probe])
            cert, key = self.cluster.pki.server_cert("kserve-webhook", [f"IP:{address}"])
            (webhook_cert_dir(self.state) / "tls.crt").write_bytes(cert.read_bytes())
            (webhook_cert_dir(self.state) / "tls.key").write_bytes(key.read_bytes())
            env = manager_env(self.state, kubeconfig)
            argv = self.cluster.sysnet.wrap(KSERVE_MANAGER, manager_argv(manager_bin, p, address))
            self.cluster._start(ProcessSpec(KSERVE_MANAGER, argv, env))
        address = self.cluster.sysnet.address(KSERVE_MANAGER)
        probe = f"http://{address}:{self.ports.kserve_probe}/readyz"
        self.cluster._wait("KServe's manager /readyz", answers(probe), deadline, [KSERVE_MANAGER])
        hooks = load_all((src.kserve / "config" / "webhook" / "manifests.yaml").read_text())
        base_url = f"https://{address}:{self.ports.kserve_webhook}"
        self.apply(webhooks_by_url(hooks, base_url, self.cluster.pki.ca_cert.read_bytes()), "KServe's webhooks")
        runtimes = self.render(src.kserve / "config" / "runtimes")
        storage = self.render(src.kserve / "config" / "storagecontainers")
        self.apply(runtimes + storage, "KServe's ClusterServingRuntimes and ClusterStorageContainer")
        if self.cluster.procs.pid(TRAEFIK) is None:
            kubeconfig = self._kubeconfig(TRAEFIK_USER, self.state.traefik / "kubeconfig")
            spec = ProcessSpec(TRAEFIK, traefik_argv(traefik_bin, self.ports), traefik_env(self.state, kubeconfig))
            self.cluster._start(spec, self.ports.ingress, self.ports.traefik)
        ping = f"http://127.0.0.1:{self.ports.traefik}/ping"
        self.cluster._wait("Traefik /ping", answers(ping), deadline, [TRAEFIK])
        self.cluster._wait("the Gateway Programmed by Traefik", self._gateway_programmed, deadline, [TRAEFIK])

    def discovery(self) -> Discovery:
        """Prometheus' view of this stack (its client certificate is issued here)."""
        self.cluster.pki.ensure_client(PROMETHEUS_USER)
        cert, key = self.cluster.pki.client_cert(PROMETHEUS_USER)
        return Discovery(
            api_server=self.cluster.server,
            ca_file=self.cluster.pki.ca_cert,
            cert_file=cert,
            key_file=key,
            gateway_target=f"127.0.0.1:{self.ports.traefik}",
        )

    def _binary(self, name: str) -> Path:
        path = Path(self.cluster.bin_dir) / name
        if not os.access(path, os.X_OK):
            raise ServingError(f"{path} is missing: run hack/build-serving.sh")
        return path

    def _install_crds(self, src: Sources) -> None:
        # All of KServe's own CRDs (the cluster's CRD phase installs only those the operator writes).
        crds = self.state.kserve / "crds.yaml"
        crds.write_text(yaml.safe_dump_all(self.render(src.kserve / "config" / "crd"), sort_keys=False))
        self.cluster.install_crds([crds])

    def _kubeconfig(self, who: ClientIdentity, path: Path) -> Path:
        return kubeconfig.for_identity(self.cluster.pki, self.cluster.server, who, path)

    def _gateway_programmed(self) -> bool:
        gw = self.cluster._api().get_json(
            f"/apis/gateway.networking.k8s.io/v1/namespaces/{NAMESPACE}/gateways/{GATEWAY}"
        )
        conditions = ((gw or {}).get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Programmed" and c.get("status") == "True" for c in conditions)


def apply_objects(cluster: Any, objects: Sequence[Obj], what: str) -> None:
    """Server-side apply, as the local cluster's field manager, forcing conflicts (it owns what it installs)."""
    text = yaml.safe_dump_all(objects, sort_keys=False)
    args = ["apply", "--server-side", "--force-conflicts", "--field-manager=slipway-localcluster", "-f", "-"]
    proc = cluster.kubectl(*args, input=text, check=False, timeout=300)
    if proc.returncode != 0:
        raise ServingError(f"applying {what} failed: {proc.stderr.strip()}")


def answers(url: str) -> Callable[[], bool]:
    """A readiness check as the kubelet's HTTP probe makes it: 2xx or 3xx passes; a User-Agent
    `kube-probe/` (Knative's activator and autoscaler tell a kubelet's probe by it, P/network/handlers);
    HTTPS without verifying the certificate (Knative's webhook serves its own), so only that TLS is
    served is checked."""
    context = ssl._create_unverified_context()

    def ok() -> bool:
        request = urllib.request.Request(url, headers={"User-Agent": "kube-probe/1.34"})
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as resp:
                return 200 <= int(resp.status) < 400
        except OSError:
            return False

    return ok
