"""Knative Serving v0.48.1 on the local control plane (issue 12): pure builders.

Everything comes from the Go modules pinned in hack/knative (built by hack/build-knative.sh):
the binaries, and the manifests from the modules' own `config/` folders, read as they are and
changed only where Knative's binaries run as processes outside a pod in place of its Deployments. The facts
cited below (S = knative.dev/serving@v0.48.1, P = the knative.dev/pkg it requires, N = the
knative.dev/networking it requires, C = knative.dev/caching, K = k8s.io/kubernetes@v1.34.4)
are collected in hack/knative/NOTES.md.

How it fits together:

- Knative's controller, webhook, autoscaler and activator run as host processes, each in a
  network namespace of its own (sysnet.py), because their ports are hard-coded and bind every
  address (`:8080` for the controller's probes and the autoscaler's stats server, `:8008`
  pprof, `:8443` webhook, `:8012`/`:8013` activator). Each gets an address from sysnet's range.
- The kube-apiserver runs with `--enable-aggregator-routing=true`: it calls an admission
  webhook's Service at an address from the Service's EndpointSlices instead of its ClusterIP
  (K/cmd/kube-apiserver/app/server.go:283-309, k8s.io/apiserver@v0.34.4
  pkg/util/proxy/proxy.go:59-124). So Knative's webhook configurations keep their Service
  clientConfigs, and Knative manages its own certificate (the Secret `webhook-certs`,
  installed empty), caBundles, rules and paths, as in a real cluster: no URL rewriting here.
- The Services `webhook`, `autoscaler` and `activator-service` are Knative's own, without a
  selector, with EndpointSlices (and Endpoints) naming the processes' addresses.

Nothing here starts anything; the builders return objects, environments and file contents.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .serving import HACK_DIR, Obj, ServingError, load_all, module_source, traefik_common_flags

SERVING_MODULE = "knative.dev/serving"
NETWORKING_MODULE = "knative.dev/networking"
CACHING_MODULE = "knative.dev/caching"

NAMESPACE = "knative-serving"
CLUSTER_DOMAIN = "cluster.local"
TRAEFIK_INGRESS_CLASS = "traefik.ingress.networking.knative.dev"
# A KIngress is marked ready only after its configuration can have reached the routers (traefik_argv).
TRAEFIK_CONFIG_THROTTLE = "200ms"
TRAEFIK_STATUS_DELAY = "600ms"

CONTROLLER = "controller"
WEBHOOK = "webhook"
AUTOSCALER = "autoscaler"
ACTIVATOR = "activator"
COMPONENTS = (CONTROLLER, WEBHOOK, AUTOSCALER, ACTIVATOR)

# The Services Knative's processes are reached through, and the component behind each; the
# Service definitions are those in S/config/core/deployments/<component>.yaml.
SYSTEM_SERVICES = {"webhook": WEBHOOK, "autoscaler": AUTOSCALER, "activator-service": ACTIVATOR}

# The ports each process serves itself (for sysnet.prepare: its own 127.0.0.1:P is not
# DNATed to the host's). 8008 is pprof (P/observability/runtime/pprof.go:31,81-96: it always
# listens, serving 404s while profiling is disabled), 9090 Prometheus metrics (only with
# metrics-protocol prometheus, which we leave off). controller: probes :8080
# (P/injection/health_check.go, P/injection/sharedmain/main.go:342); webhook: WEBHOOK_PORT;
# autoscaler: stats :8080 (S/cmd/autoscaler/main.go:68); activator: :8012 http1, :8013 h2c
# (S/cmd/activator/main.go:289-292).
WEBHOOK_PORT = 8443
LISTEN_PORTS: dict[str, tuple[int, ...]] = {
    CONTROLLER: (8080, 8008, 9090),
    WEBHOOK: (WEBHOOK_PORT, 8008, 9090),
    AUTOSCALER: (8080, 8008, 9090),
    ACTIVATOR: (8012, 8013, 8008, 9090),
}

# EndpointSlices labelled with a manager other than kube-controller-manager's
# (endpointslice-controller.k8s.io, endpointslicemirroring-controller.k8s.io) are left alone
# by both of its EndpointSlice controllers.
MANAGED_BY = "localcluster.slipway.dev"  # a label value: no "/"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"

# Knative's default for registries-skipping-tag-resolving (S/pkg/deployment/config.go:117):
# setting the key replaces it, so these are kept.
DEFAULT_SKIPPED_REGISTRIES = ("kind.local", "ko.local", "dev.local")

EXAMPLE_KEY = "_example"
EXAMPLE_CHECKSUM = "knative.dev/example-checksum"


class KnativeError(ServingError):
    pass


# ---- sources -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    serving: Path  # knative.dev/serving: config/core (CRDs, RBAC, ConfigMaps, webhooks, Services)
    networking: Path  # knative.dev/networking: its 4 CRDs and config-network (absent from serving's zip)
    caching: Path  # knative.dev/caching: the Image CRD (absent from serving's zip)

    @classmethod
    def locate(cls) -> Sources:
        """The modules at the versions hack/knative/go.mod selects (SLIPWAY_KNATIVE_*_MODULE
        override each)."""
        tooling = HACK_DIR / "knative"
        dirs = []
        for module, env in (
            (SERVING_MODULE, "SLIPWAY_KNATIVE_SERVING_MODULE"),
            (NETWORKING_MODULE, "SLIPWAY_KNATIVE_NETWORKING_MODULE"),
            (CACHING_MODULE, "SLIPWAY_KNATIVE_CACHING_MODULE"),
        ):
            try:
                dirs.append(module_source(env, tooling, module))
            except ServingError as err:
                why = err.__cause__ or "not in the Go module cache"
                raise KnativeError(
                    f"{module} not found through {tooling}/go.mod ({why}): run hack/build-knative.sh"
                ) from err
        return cls(*dirs)

    @property
    def core(self) -> Path:
        return self.serving / "config" / "core"


def _load(path: Path) -> list[Obj]:
    return load_all(path.read_text())


def _load_dir(directory: Path) -> list[Obj]:
    return [obj for path in sorted(directory.glob("*.yaml")) for obj in _load(path)]


# ---- CRDs ----------------------------------------------------------------------------------

# In the upstream repository config/core/300-imagecache.yaml and the networking CRDs are
# symlinks into vendor/, which Go module zips drop: they come from the modules serving requires.
NETWORKING_CRD_FILES = ("ingress.yaml", "serverlessservice.yaml", "certificate.yaml", "domain-claim.yaml")


def crds(src: Sources) -> list[Obj]:
    """Serving's 7 CRDs (config/core/300-resources), networking's ingresses, serverlessservices,
    certificates and clusterdomainclaims, caching's images. The controller starts informers on
    all of them even when unused (S/pkg/reconciler/revision/controller.go:27-28,85 for Images),
    and none has a conversion webhook, so they are served without Knative's webhook."""
    objs = _load_dir(src.core / "300-resources")
    for name in NETWORKING_CRD_FILES:
        objs += _load(src.networking / "config" / name)
    objs += _load(src.caching / "config" / "image.yaml")
    return [o for o in objs if o["kind"] == "CustomResourceDefinition"]


# ---- ConfigMaps ----------------------------------------------------------------------------


def example_checksum(example: str) -> str:
    """P/configmap/example.go:40-42 Checksum: crc32 (IEEE) of the trimmed text with runs of
    newlines collapsed to one. Knative's ConfigMap webhook refuses a ConfigMap whose `_example`
    no longer matches its `knative.dev/example-checksum` annotation
    (P/webhook/configmaps/configmaps.go:205-213), so `_example` is never edited here."""
    normalized = re.sub(r"(?:\r?\n)+", r"\\n", example.strip())
    return f"{zlib.crc32(normalized.encode()):08x}"


def image_registry(image: str) -> str:
    """The registry go-containerregistry's name.NewTag(image, WeakValidation) gives, as the
    revision reconciler compares it with registries-skipping-tag-resolving
    (S/pkg/reconciler/revision/resolve.go:107-114): the first path element if it has a '.' or
    ':' (name/repository.go:80-87), otherwise Docker Hub; `docker.io` is `index.docker.io`
    (name/registry.go:127-131). `localhost/x` is a Docker Hub repository by this rule."""
    base = image.split("@", 1)[0]
    parts = base.split(":")
    if len(parts) > 1 and "/" not in parts[-1]:
        base = ":".join(parts[:-1])  # drop the tag, not a registry's port (name/tag.go:78-83)
    first, slash, _ = base.partition("/")
    registry = first if slash and ("." in first or ":" in first) else ""
    return "index.docker.io" if registry in ("", "docker.io") else registry


def _set_data(cm: Obj, values: Mapping[str, str]) -> Obj:
    if EXAMPLE_KEY in values:
        raise KnativeError(f"{cm['metadata']['name']}: {EXAMPLE_KEY} is documentation, not configuration")
    out = copy.deepcopy(cm)
    out.setdefault("data", {}).update(values)
    return out


def deployment_config(cm: Obj, queue_image: str, skip_registries: Iterable[str] = ()) -> Obj:
    """config-deployment with our queue-proxy image and the registries whose tags are not
    resolved to digests.

    `queue-sidecar-image` ships as `ko://knative.dev/serving/cmd/queue`
    (S/config/core/configmaps/deployment.yaml:29) and may not be empty
    (S/pkg/deployment/config.go:212-213); the local executor maps our name to the
    knative-queue binary. The controller copies it into every revision's pod spec verbatim
    (S/pkg/reconciler/revision/resources/queue.go:349). What it does resolve over the network
    is every *revision container's* image: a tag whose registry is not in
    `registries-skipping-tag-resolving` gets a HEAD to the registry, through the keychains of
    k8schain (docker config, Google, ECR, ACR helpers) (S/pkg/reconciler/revision/
    revision.go:102, resolve.go:91-119). So the key lists Knative's defaults (setting it
    replaces them, S/pkg/deployment/config.go:117), the queue image's registry and
    `skip_registries`: those of the images revisions will run (see image_registry), unless
    they are pinned by digest."""
    if not queue_image or queue_image.startswith("ko://"):
        raise KnativeError(f"queue-proxy image {queue_image!r}: an image name the local executor maps is needed")
    registries = [*DEFAULT_SKIPPED_REGISTRIES, image_registry(queue_image), *skip_registries]
    unique = list(dict.fromkeys(r.strip() for r in registries if r.strip()))
    return _set_data(cm, {"queue-sidecar-image": queue_image, "registries-skipping-tag-resolving": ",".join(unique)})


def network_config(cm: Obj, ingress_class: str) -> Obj:
    """config-network (N/config/config-network.yaml, only `_example` as shipped) with:

    - `ingress-class`: the KIngress class the routes get (N/pkg/config/config.go:104,352,
      default Istio's); Traefik's Knative provider serves only
      `traefik.ingress.networking.knative.dev`;
    - `mesh-compatibility-mode: disabled` (N/pkg/config/config.go:119,361; default `auto`):
      in `auto`, when scraping a revision's pods directly fails, the autoscaler falls back to
      `http://<private service>.<namespace>:9090/metrics` (S/pkg/autoscaler/metrics/
      stats_scraper.go:214-216,240-258), a name only DNS resolves (a nameserver off this
      machine), and the activator falls back to the private Service's ClusterIP
      (S/pkg/activator/net/revision_backends.go:384-389), which leads nowhere without
      kube-proxy. `disabled` keeps both on pod IPs."""
    return _set_data(cm, {"ingress-class": ingress_class, "mesh-compatibility-mode": "disabled"})


def observability_config(cm: Obj) -> Obj:
    """config-observability with:

    - `request-metrics-protocol: prometheus`: the queue-proxy's request metrics (OTel) are
      served as Prometheus text on :9091 (S/pkg/observability/config.go:115 reads the
      `request-` prefixed keys of P/observability/metrics/config.go:78-84; S/pkg/queue/
      sharedmain/otel.go:51-54); the default is `none` (P/observability/metrics/config.go:66-69);
    - `metrics-protocol: none`, `tracing-protocol: none`, `runtime-profiling: disabled`: the
      defaults (P/observability/metrics/config.go:66-69, P/observability/tracing/config.go:61-64,
      P/observability/runtime/config.go:54-57), written out so nothing turns on an OTLP
      exporter (the only outbound observability traffic; with `none` the providers are no-ops,
      P/observability/metrics/provider.go:58, P/observability/tracing/provider.go:59)."""
    return _set_data(
        cm,
        {
            "request-metrics-protocol": "prometheus",
            "metrics-protocol": "none",
            "tracing-protocol": "none",
            "runtime-profiling": "disabled",
        },
    )


def configmaps(
    src: Sources,
    queue_image: str,
    ingress_class: str = TRAEFIK_INGRESS_CLASS,
    skip_registries: Iterable[str] = (),
) -> list[Obj]:
    """Every ConfigMap of config/core/configmaps plus networking's config-network, as Knative
    ships them (`_example` and its checksum included) but for the edits above. All must
    exist: the processes' ConfigMap watcher fails to start on a watched one that is absent
    (P/injection/sharedmain/main.go:272,308-312), and the controller reads config-network
    before anything else (S/cmd/controller/main.go:98-99). config-tracing is deprecated and
    read by nothing in v0.48.1, but shipped, so installed."""
    edits = {
        "config-deployment": lambda cm: deployment_config(cm, queue_image, skip_registries),
        "config-network": lambda cm: network_config(cm, ingress_class),
        "config-observability": observability_config,
    }
    objs = _load_dir(src.core / "configmaps") + _load(src.networking / "config" / "config-network.yaml")
    out = []
    for cm in objs:
        if cm["kind"] != "ConfigMap":
            continue
        edit = edits.get(cm["metadata"]["name"])
        out.append(edit(cm) if edit else copy.deepcopy(cm))
    missing = set(edits) - {cm["metadata"]["name"] for cm in out}
    if missing:
        raise KnativeError(f"ConfigMaps missing from Knative's config/: {sorted(missing)}")
    return out


# ---- namespace, RBAC, webhooks --------------------------------------------------------------


def webhook_configurations(src: Sources) -> list[Obj]:
    """Knative's three webhook configurations, unchanged: Service `webhook` clientConfigs,
    which the webhook's own reconcilers complete (caBundle, rules, paths) once it runs.

    All have failurePolicy Fail: while the webhook is down nothing they match can be written,
    including (once Knative filled in its rules) the ConfigMaps config-validation selects."""
    objs = _load_dir(src.core / "webhooks")
    return [o for o in objs if o["kind"] in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")]


def webhook_secret(src: Sources) -> Obj:
    """The Secret `webhook-certs`, empty: the webhook's certificates reconciler fills it only
    if it exists (P/webhook/certificates/certificates.go:65-110)."""
    (secret,) = [o for o in _load(src.core / "webhooks" / "secret.yaml") if o["kind"] == "Secret"]
    return secret


def base_objects(
    src: Sources,
    queue_image: str,
    ingress_class: str = TRAEFIK_INGRESS_CLASS,
    skip_registries: Iterable[str] = (),
) -> list[Obj]:
    """What Knative's processes need before they start, in the order to apply it: the
    namespace, the ServiceAccounts, ClusterRoles and bindings of config/core/200-*, the
    ConfigMaps (see configmaps), the empty Secret `webhook-certs`, and last the webhook
    configurations (see webhook_configurations).

    Left out: 300-knativecertificate.yaml (a Certificate for system-internal TLS, which needs
    cert-manager), 999-cache.yaml (a caching Image of the `ko://` queue image), deployments/
    (the same binaries run as our processes instead; their Services come from system_services)."""
    out = _load(src.core / "100-namespace.yaml")
    out += _load(src.core / "200-serviceaccount.yaml")
    out += _load_dir(src.core / "200-roles")
    out += configmaps(src, queue_image, ingress_class, skip_registries)
    out.append(webhook_secret(src))
    out += webhook_configurations(src)
    return out


# ---- Services and endpoints -----------------------------------------------------------------


def _check_address(component: str, address: str) -> str:
    ip = ipaddress.ip_address(address)
    # The apiserver refuses these in Endpoints and EndpointSlices
    # (K/pkg/apis/core/validation/validation.go:8009-8028 ValidateEndpointIP), and the
    # autoscaler writes its POD_IP into an Endpoints object (NOTES.md (d)).
    if ip.version != 4 or ip.is_loopback or ip.is_unspecified or ip.is_link_local or ip.is_multicast:
        raise KnativeError(f"{component}: {address} cannot be a pod's address (an IPv4 one of its network namespace)")
    return str(ip)


def _addresses(addresses: Mapping[str, str], components: Iterable[str]) -> dict[str, str]:
    missing = [c for c in components if c not in addresses]
    if missing:
        raise KnativeError(f"no address for {missing}")
    return {c: _check_address(c, addresses[c]) for c in components}


def _service(src: Sources, name: str, component: str) -> Obj:
    objs = _load(src.core / "deployments" / f"{component}.yaml")
    (svc,) = [o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == name]
    svc = copy.deepcopy(svc)
    # Without a selector kube-controller-manager writes no Endpoints and no EndpointSlices
    # for the Service (K/pkg/controller/endpoint/endpoints_controller.go:382-386): there are
    # no pods to select, our processes' addresses are written below instead.
    svc["spec"].pop("selector", None)
    return svc


def _target_port(port: Obj) -> int:
    target = port.get("targetPort", port["port"])
    if not isinstance(target, int):
        raise KnativeError(f"named targetPort {target!r}: no container to look it up in")
    return target


def _endpoint_slice(svc: Obj, address: str) -> Obj:
    name = svc["metadata"]["name"]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-local",
            "namespace": svc["metadata"]["namespace"],
            "labels": {SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True, "serving": True, "terminating": False}}],
        # As the EndpointSlice controller writes them: the Service port's name, the target port.
        # The apiserver matches a webhook's Service port to the slice's port by name
        # (k8s.io/apiserver@v0.34.4 pkg/util/proxy/proxy.go:100-110).
        "ports": [
            {"name": p["name"], "port": _target_port(p), "protocol": p.get("protocol", "TCP")}
            for p in svc["spec"]["ports"]
        ],
    }


def _endpoints(svc: Obj, address: str) -> Obj:
    name = svc["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": name,
            "namespace": svc["metadata"]["namespace"],
            # Mirrored into an EndpointSlice by kube-controller-manager otherwise
            # (K/pkg/controller/endpointslicemirroring/endpointslicemirroring_controller.go:364-370),
            # a duplicate of ours.
            "labels": {SKIP_MIRROR_LABEL: "true"},
        },
        "subsets": [
            {
                "addresses": [{"ip": address}],
                "ports": [
                    {"name": p["name"], "port": _target_port(p), "protocol": p.get("protocol", "TCP")}
                    for p in svc["spec"]["ports"]
                ],
            }
        ],
    }


def system_services(src: Sources, addresses: Mapping[str, str]) -> list[Obj]:
    """Knative's Services `webhook` (443->8443, with metrics and profiling), `autoscaler`
    (8080, 9090, 8008) and `activator-service` (80->8012, 81->8013, 443->8112, 9090, 8008) from
    S/config/core/deployments/*.yaml without their selectors, each with an EndpointSlice and an
    Endpoints object naming `addresses[component]` (sysnet's address of the process).

    EndpointSlices are what the apiserver calls a webhook through with
    --enable-aggregator-routing (k8s.io/apiserver@v0.34.4 pkg/util/proxy/proxy.go:59-124) and
    what anything built on EndpointSlices (kube-proxy) reads. Endpoints are what Knative reads:
    the SKS reconciler copies the Endpoints `activator-service` into each revision's public
    Endpoints when the activator is in the path (S/pkg/reconciler/serverlessservice/
    serverlessservice.go:197, resources/services.go:82-128)."""
    addrs = _addresses(addresses, SYSTEM_SERVICES.values())
    out: list[Obj] = []
    for name, component in SYSTEM_SERVICES.items():
        svc = _service(src, name, component)
        out += [svc, _endpoint_slice(svc, addrs[component]), _endpoints(svc, addrs[component])]
    return out


# ---- processes -----------------------------------------------------------------------------


def process_env(
    component: str,
    address: str,
    kubeconfig: Path,
    home: Path,
    path: str | None = None,
) -> dict[str, str]:
    """The whole environment of a Knative process (nothing is inherited from ours: no
    HTTP(S)_PROXY, no OTEL_* variables, which the OTLP exporters would honour, no
    KUBERNETES_SERVICE_HOST for an in-cluster config).

    - KUBECONFIG: the default of `--kubeconfig` (P/environment/client_config.go:47);
    - SYSTEM_NAMESPACE: required (P/system/env.go:37-58);
    - POD_NAME: leader election identity and logs (P/system/env.go:85-89); the component's
      name, stable, so a restarted autoscaler keeps its bucket lease holder identity
      `POD_NAME_POD_IP`;
    - POD_IP: sysnet's address; required by the autoscaler (S/pkg/autoscaler/bucket/
      bucket.go:57-65), which writes it into an Endpoints object (so not loopback), and by
      the activator (S/cmd/activator/main.go:78-79); set for all four;
    - CONFIG_LOGGING_NAME, CONFIG_OBSERVABILITY_NAME: as the Deployments set them;
    - CLUSTER_DOMAIN: otherwise taken from a `search svc.*` line of /etc/resolv.conf
      (P/network/domain.go:46-77); it names the autoscaler the activator dials (hosts_file);
    - HOME: a directory of our own: resolving a tag, the controller's keychain reads
      $HOME/.docker/config.json (go-containerregistry pkg/authn/keychain.go:96-100);
    - WEBHOOK_NAME (required, P/webhook/env.go:53-65) and WEBHOOK_PORT for the webhook;
      GOGC=500 for the activator, as their Deployments set them.
    """
    if component not in COMPONENTS:
        raise KnativeError(f"unknown Knative component {component!r}")
    env = {
        "PATH": path if path is not None else os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": str(home),
        "KUBECONFIG": str(kubeconfig),
        "SYSTEM_NAMESPACE": NAMESPACE,
        "POD_NAME": component,
        "POD_IP": _check_address(component, address),
        "CONFIG_LOGGING_NAME": "config-logging",
        "CONFIG_OBSERVABILITY_NAME": "config-observability",
        "CLUSTER_DOMAIN": CLUSTER_DOMAIN,
    }
    if component == WEBHOOK:
        env |= {"WEBHOOK_NAME": "webhook", "WEBHOOK_PORT": str(WEBHOOK_PORT)}
    if component == ACTIVATOR:
        env["GOGC"] = "500"
    return env


def argv(binary: Path, component: str) -> list[str]:
    """The command line: the binary alone. Its apiserver comes from KUBECONFIG, everything else
    from the ConfigMaps; none of the four has a flag for an address to listen on."""
    if component not in COMPONENTS:
        raise KnativeError(f"unknown Knative component {component!r}")
    return [str(binary)]


def own_ports(component: str) -> tuple[int, ...]:
    """The ports the component listens on itself, in its network namespace (sysnet.prepare)."""
    return LISTEN_PORTS[component]


def service_hostnames(name: str) -> list[str]:
    return [f"{name}.{NAMESPACE}.svc.{CLUSTER_DOMAIN}", f"{name}.{NAMESPACE}.svc", f"{name}.{NAMESPACE}"]


def hosts_file(addresses: Mapping[str, str]) -> str:
    """An /etc/hosts for the activator's mount namespace (and any other Knative process): the
    system Services' names at their processes' addresses.

    The activator dials `ws://autoscaler.knative-serving.svc.<cluster domain>:8080`, name and
    port fixed (S/cmd/activator/main.go:74,218-221; P/network/domain.go:40-42), with a plain
    websocket dialer (P/websocket/connection.go:158-163). Go's resolver consults /etc/hosts
    before DNS (`hosts: files dns`, its default without nsswitch.conf), so with this file the
    name never reaches a nameserver."""
    addrs = _addresses(addresses, SYSTEM_SERVICES.values())
    lines = [
        "# Knative Serving's system Services at their processes' addresses (slipway localcluster).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost",
    ]
    for name, component in SYSTEM_SERVICES.items():
        lines.append(f"{addrs[component]}\t" + " ".join(service_hostnames(name)))
    return "\n".join(lines) + "\n"


# ---- Traefik's Knative provider -------------------------------------------------------------

TRAEFIK_PROCESS = "traefik-knative"
TRAEFIK_NAMESPACE = "traefik"
TRAEFIK_ACCOUNT = "traefik-knative"
# Traefik runs in the cluster's node network namespace (kube-proxy's, see kubeproxy.py), whose
# ports are its own: fixed numbers, not allocated on the host.
TRAEFIK_WEB_PORT = 8080
TRAEFIK_ADMIN_PORT = 9000


def traefik_rbac() -> list[Obj]:
    """What Traefik's Knative provider reads and writes, as Traefik documents it
    (T/docs/content/reference/dynamic-configuration/kubernetes-knative-rbac.yml): Services and
    Secrets, Knative's Ingresses, and their status."""
    name = "traefik-knative-networking"
    read = ["get", "list", "watch"]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": TRAEFIK_ACCOUNT, "namespace": TRAEFIK_NAMESPACE},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [
                {"apiGroups": [""], "resources": ["services", "secrets"], "verbs": read},
                {"apiGroups": ["networking.internal.knative.dev"], "resources": ["ingresses"], "verbs": read},
                {
                    "apiGroups": ["networking.internal.knative.dev"],
                    "resources": ["ingresses/status"],
                    "verbs": ["update"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": TRAEFIK_ACCOUNT, "namespace": TRAEFIK_NAMESPACE}],
        },
    ]


def traefik_service(address: str) -> list[Obj]:
    """The Service the provider names in every KIngress' status (publicservice/privateservice):
    Knative's route reconciler makes each route's Service an ExternalName to
    `<name>.<namespace>.svc.<domain>` (S/pkg/reconciler/route/resources/service.go:74-86). Without
    a selector, its endpoints are Traefik's address in the node namespace."""
    svc: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": TRAEFIK_PROCESS, "namespace": TRAEFIK_NAMESPACE},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": TRAEFIK_WEB_PORT, "protocol": "TCP"}]},
    }
    return [svc, _endpoint_slice(svc, _check_address(TRAEFIK_PROCESS, address)), _endpoints(svc, address)]


def traefik_argv(binary: Path) -> list[str]:
    """Traefik with the Knative provider only (experimental in Traefik v3.6: refused without
    `--experimental.knative`, T/pkg/config/static/static_config.go:432-434). Cluster-local
    rules (KServe's predictors' Knative Services) are served only with private entry points
    (T/pkg/provider/kubernetes/knative/kubernetes.go:289-294): both visibilities on `web`.
    The provider's client comes from KUBECONFIG (kubernetes.go:168-178).

    Ready must mean routed: the provider marks a KIngress ready after sleeping its own
    throttleDuration (kubernetes.go:124-135, default 0), while the aggregator holds the
    configuration back for up to providersThrottleDuration (default 2s,
    T/pkg/provider/aggregator/aggregator.go:32-59). With the defaults a Knative Service was
    Ready and its host answered 404 for up to 2 s. The status now waits longer than the
    configuration can be held; the short aggregator throttle also shortens traffic shifts."""
    return [
        str(binary),
        f"--entryPoints.web.address=:{TRAEFIK_WEB_PORT}",
        f"--entryPoints.traefik.address=:{TRAEFIK_ADMIN_PORT}",
        "--ping=true",
        "--experimental.knative=true",
        "--providers.knative=true",
        f"--providers.providersThrottleDuration={TRAEFIK_CONFIG_THROTTLE}",
        f"--providers.knative.throttleDuration={TRAEFIK_STATUS_DELAY}",
        "--providers.knative.publicEntrypoints=web",
        "--providers.knative.privateEntrypoints=web",
        f"--providers.knative.publicService.namespace={TRAEFIK_NAMESPACE}",
        f"--providers.knative.publicService.name={TRAEFIK_PROCESS}",
        f"--providers.knative.privateService.namespace={TRAEFIK_NAMESPACE}",
        f"--providers.knative.privateService.name={TRAEFIK_PROCESS}",
        *traefik_common_flags(),
    ]
