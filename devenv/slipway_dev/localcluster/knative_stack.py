"""Starting Knative Serving v0.48.1 on a running local control plane (issue 12).

The objects and environments come from knative.py's pure builders; this module applies them,
starts Knative's four processes, each in a network namespace of its own (sysnet.py), and waits
until Knative can serve: its webhook answers and has completed its own configurations, its
controller, autoscaler and activator report ready.

Each process authenticates as the ServiceAccount its Deployment names
(S/config/core/deployments/*.yaml `serviceAccountName`: `controller` for the controller, webhook
and autoscaler, `activator` for the activator), with a client certificate from the cluster's
CA, so Knative's own RBAC (config/core/200-*) is what authorizes it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from . import knative, kubeconfig, kubeproxy
from .layout import StateDir
from .pki import ClientIdentity
from .procs import ProcessSpec, with_bind_mounts
from .serving import Obj, answers, apply_objects, service_account

# The queue-proxy image the revisions' pods get (config-deployment `queue-sidecar-image`); the
# local executor runs the knative-queue binary for it (localexec.images).
QUEUE_IMAGE = "gcr.io/knative-releases/knative.dev/serving/cmd/queue:v1.21.1"
# Registries of the images revisions run here: KServe's model servers (Docker Hub) and our
# runtimes (ghcr.io). Knative resolves any other tag to a digest over the network.
REVISION_REGISTRIES = ("index.docker.io", "ghcr.io")

SERVICE_ACCOUNTS = {
    knative.CONTROLLER: "controller",
    knative.WEBHOOK: "controller",
    knative.AUTOSCALER: "controller",
    knative.ACTIVATOR: "activator",
}
# Process names in the cluster's process table (and sysnet's namespaces).
PROCESSES = {component: f"knative-{component}" for component in knative.COMPONENTS}
# The data plane: kube-proxy and Traefik's Knative provider share the node namespace.
NODE_PROCESSES = (kubeproxy.PROCESS, knative.TRAEFIK_PROCESS)
ALL_PROCESSES = (*PROCESSES.values(), *NODE_PROCESSES)
NODE_PORTS = (*kubeproxy.PORTS, knative.TRAEFIK_WEB_PORT, knative.TRAEFIK_ADMIN_PORT)
TRAEFIK_USER = service_account(knative.TRAEFIK_NAMESPACE, knative.TRAEFIK_ACCOUNT)
WEBHOOK_CONFIGURATIONS = (
    ("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", "webhook.serving.knative.dev"),
    ("admissionregistration.k8s.io/v1", "validatingwebhookconfigurations", "validation.webhook.serving.knative.dev"),
)


def identity(component: str) -> ClientIdentity:
    return service_account(knative.NAMESPACE, SERVICE_ACCOUNTS[component])


def with_hosts_file(hosts: Path, argv: Sequence[str]) -> list[str]:
    """argv with `hosts` over /etc/hosts: the activator dials the autoscaler by its Service's
    DNS name (knative.hosts_file)."""
    return with_bind_mounts([(hosts, Path("/etc/hosts"))], argv)


def probe_url(component: str, address: str) -> str:
    """Where the Deployment's readiness probe looks (S/config/core/deployments/*.yaml)."""
    if component == knative.CONTROLLER:
        return f"http://{address}:8080/readiness"
    if component == knative.AUTOSCALER:
        return f"http://{address}:8080/"
    if component == knative.ACTIVATOR:
        return f"http://{address}:8012/"
    return f"https://{address}:{knative.WEBHOOK_PORT}/"


class KnativeStack:
    """Starts Knative Serving on a running control plane (called by Cluster.up before KServe's
    manager, which watches Knative Services only if their CRD exists when it starts)."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster  # a localcluster.Cluster (not imported: it imports us)
        self.state: StateDir = cluster.state

    def addresses(self) -> dict[str, str]:
        return {c: self.cluster.sysnet.address(PROCESSES[c]) for c in knative.COMPONENTS}

    def binary(self, component: str) -> Path:
        path = Path(self.cluster.bin_dir) / f"knative-{component}"
        if not os.access(path, os.X_OK):
            raise knative.KnativeError(f"{path} is missing: run hack/build-knative.sh")
        return path

    def start(self, deadline: float) -> None:
        binaries = {c: self.binary(c) for c in knative.COMPONENTS}
        src = knative.Sources.locate()
        self.state.knative.mkdir(parents=True, exist_ok=True)
        addresses = self.addresses()
        if not any(self.cluster.procs.pid(PROCESSES[c]) for c in knative.COMPONENTS):
            crds = self.state.knative / "crds.yaml"
            crds.write_text(yaml.safe_dump_all(knative.crds(src), sort_keys=False))
            self.cluster.install_crds([crds])
            base = knative.base_objects(src, QUEUE_IMAGE, skip_registries=REVISION_REGISTRIES)
            self._apply([o for o in base if not self._guarded_and_present(o)], "Knative Serving's base objects")
        # At every start: a process's address changes when another cluster took it meanwhile (podnet.Allocator).
        self._apply(knative.system_services(src, addresses), "Knative's Services at its processes' addresses")
        hosts = self.state.knative / "hosts"
        hosts.write_text(knative.hosts_file(addresses))
        for component in knative.COMPONENTS:
            name = PROCESSES[component]
            if self.cluster.procs.pid(name) is not None:
                continue
            # The activator proxies to revision pods' IPs, the autoscaler scrapes their
            # queue-proxies at <pod IP>:9090 (mesh-compatibility-mode disabled, knative.py):
            # both need the pod network, which a namespace gets on node duty (sysnet.py).
            reaches_pods = component in (knative.ACTIVATOR, knative.AUTOSCALER)
            address = self.cluster.sysnet.prepare(name, knative.own_ports(component), node=reaches_pods)
            home = self.state.knative / component
            home.mkdir(parents=True, exist_ok=True)
            config = self._kubeconfig(identity(component), home / "kubeconfig")
            env = knative.process_env(component, address, config, home)
            argv = knative.argv(binaries[component], component)
            if component == knative.ACTIVATOR:
                argv = with_hosts_file(hosts, argv)
            self.cluster._start(ProcessSpec(name, self.cluster.sysnet.wrap(name, argv), env))
        for component in knative.COMPONENTS:
            url = probe_url(component, addresses[component])
            self.cluster._wait(f"Knative's {component} ({url})", answers(url), deadline, [PROCESSES[component]])
        self.cluster._wait(
            "Knative's webhook configurations completed by its webhook",
            self._webhooks_configured,
            deadline,
            [PROCESSES[knative.WEBHOOK]],
        )
        self._start_data_plane(deadline)

    def node_address(self) -> str:
        return str(self.cluster.sysnet.address(kubeproxy.NODE))

    def ingress_url(self) -> str:
        """Traefik's Knative entry point, in the node namespace (reached from the host)."""
        return f"http://{self.node_address()}:{knative.TRAEFIK_WEB_PORT}"

    def _start_data_plane(self, deadline: float) -> None:
        """kube-proxy and Traefik in the node namespace: Traefik's Knative provider sends each
        request to a Service's ClusterIP (T/pkg/provider/kubernetes/knative/kubernetes.go:392-419),
        which only kube-proxy's rules lead anywhere. Both go together: a fresh namespace for one
        would cut the other off."""
        procs = self.cluster.procs
        if any(procs.pid(name) is None for name in NODE_PROCESSES):
            procs.stop(list(NODE_PROCESSES), 20.0)
            objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": knative.TRAEFIK_NAMESPACE}}]
            objs += knative.traefik_rbac() + knative.traefik_service(self.node_address())
            self._apply(objs, "Traefik's Knative RBAC and Service")
            # The Node kube-proxy names has an address first, or kube-proxy waits 30 s for one.
            kubeproxy.give_node_address(self.cluster._api(), self.cluster.fake_nodes[0].name, self.node_address())
            self.cluster.sysnet.prepare(kubeproxy.NODE, NODE_PORTS, node=True)
            self._start_kube_proxy()
            self._start_traefik()
        address = self.node_address()
        self.cluster._wait("kube-proxy /healthz", answers(kubeproxy.healthz_url(address)), deadline,
                           [kubeproxy.PROCESS])  # fmt: skip
        ping = f"http://{address}:{knative.TRAEFIK_ADMIN_PORT}/ping"
        self.cluster._wait("Traefik (Knative) /ping", answers(ping), deadline, [knative.TRAEFIK_PROCESS])

    def _start_kube_proxy(self) -> None:
        home = self.state.knative / "kube-proxy"
        home.mkdir(parents=True, exist_ok=True)
        config = kubeproxy.write_kubeconfig(self.cluster.pki, self.cluster.server, home / "kubeconfig")
        binary = Path(self.cluster.bin_dir) / kubeproxy.BINARY
        if not os.access(binary, os.X_OK):
            raise knative.KnativeError(f"{binary} is missing: run hack/build-controlplane.sh")
        self.cluster._start(kubeproxy.spec(binary, self.cluster.sysnet, config, self.cluster.fake_nodes[0].name))

    def _start_traefik(self) -> None:
        home = self.state.knative / "traefik"
        home.mkdir(parents=True, exist_ok=True)
        config = self._kubeconfig(TRAEFIK_USER, home / "kubeconfig")
        traefik = Path(self.cluster.bin_dir) / "traefik"
        if not os.access(traefik, os.X_OK):
            raise knative.KnativeError(f"{traefik} is missing: run hack/build-serving.sh")
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": str(config)}
        argv = self.cluster.sysnet.wrap(kubeproxy.NODE, knative.traefik_argv(traefik))
        self.cluster._start(ProcessSpec(knative.TRAEFIK_PROCESS, argv, env))

    def _guarded_and_present(self, obj: Obj) -> bool:
        """Whether `obj` is left as it is at a warm start: Knative's ConfigMaps (its webhook,
        not running yet, must admit every write to them once it has completed its
        configurations; failurePolicy Fail) and its webhook configurations (whose rules and
        caBundle its webhook wrote; ours would replace them until it rewrites them)."""
        kind, meta = obj["kind"], obj["metadata"]
        if kind == "ConfigMap":
            path = f"/api/v1/namespaces/{meta['namespace']}/configmaps/{meta['name']}"
        elif kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            path = f"/apis/admissionregistration.k8s.io/v1/{kind.lower()}s/{meta['name']}"
        else:
            return False
        return self.cluster._api().get_json(path) is not None

    def _webhooks_configured(self) -> bool:
        """Knative's webhook fills in its configurations' caBundle (and rules) once it runs
        (P/webhook/resourcesemantics/*): until then nothing it guards can be written."""
        for api_version, plural, name in WEBHOOK_CONFIGURATIONS:
            obj = self.cluster._api().get_json(f"/apis/{api_version}/{plural}/{name}") or {}
            hooks = obj.get("webhooks") or []
            if not hooks or not all((h.get("clientConfig") or {}).get("caBundle") for h in hooks):
                return False
        return True

    def _apply(self, objects: Sequence[Obj], what: str) -> None:
        apply_objects(self.cluster, objects, what)

    def _kubeconfig(self, who: ClientIdentity, path: Path) -> Path:
        return kubeconfig.for_identity(self.cluster.pki, self.cluster.server, who, path)
