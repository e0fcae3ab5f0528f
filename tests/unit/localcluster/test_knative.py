"""Knative Serving's builders (slipway_dev/localcluster/knative.py), on Knative's own config/ from the
Go module cache (hack/build-knative.sh downloads it)."""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from slipway_dev.localcluster import knative
from slipway_dev.localcluster.serving import Obj, load_all

# k8s.io/apimachinery validation.IsValidLabelValue
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")

QUEUE_IMAGE = "slipway.local/knative-queue:v0.48.1"
ADDRESSES = {
    "controller": "198.19.128.2",
    "webhook": "198.19.128.3",
    "autoscaler": "198.19.128.4",
    "activator": "198.19.128.5",
}
ALLOWED_NETWORKS = [ipaddress.IPv4Network(n) for n in ("127.0.0.0/8", "198.18.0.0/15", "10.96.0.0/16")]


@pytest.fixture(scope="module")
def src() -> knative.Sources:
    try:
        return knative.Sources.locate()
    except knative.KnativeError as err:
        pytest.skip(f"Knative's modules are not in the Go module cache (run hack/build-knative.sh): {err}")


def _by_name(objs: Sequence[Obj]) -> dict[tuple[str, str], Obj]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def _shipped(path: Path) -> dict[tuple[str, str], Obj]:
    return _by_name(load_all(path.read_text()))


def _strings(obj: object, where: str = "") -> Iterator[tuple[str, str]]:
    """(path, string) for every key and string value in obj."""
    if isinstance(obj, str):
        yield where, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield f"{where}/{k}", str(k)
            yield from _strings(v, f"{where}/{k}")
    elif isinstance(obj, Sequence):
        for i, v in enumerate(obj):
            yield from _strings(v, f"{where}[{i}]")


def _everything(src: knative.Sources) -> list[Obj]:
    return [*knative.crds(src), *knative.base_objects(src, QUEUE_IMAGE), *knative.system_services(src, ADDRESSES)]


def _slices(objs: Iterable[Obj], service: str) -> list[Obj]:
    return [
        o
        for o in objs
        if o["kind"] == "EndpointSlice" and o["metadata"]["labels"][knative.SERVICE_NAME_LABEL] == service
    ]


# ---- CRDs and base objects -------------------------------------------------------------------


def test_crds_are_servings_networkings_and_cachings_twelve(src: knative.Sources) -> None:
    kinds = {(c["spec"]["group"], c["spec"]["names"]["kind"]) for c in knative.crds(src)}
    assert kinds == {
        ("serving.knative.dev", "Configuration"),
        ("serving.knative.dev", "DomainMapping"),
        ("serving.knative.dev", "Revision"),
        ("serving.knative.dev", "Route"),
        ("serving.knative.dev", "Service"),
        ("autoscaling.internal.knative.dev", "Metric"),
        ("autoscaling.internal.knative.dev", "PodAutoscaler"),
        ("networking.internal.knative.dev", "Ingress"),
        ("networking.internal.knative.dev", "ServerlessService"),
        ("networking.internal.knative.dev", "Certificate"),
        ("networking.internal.knative.dev", "ClusterDomainClaim"),
        ("caching.internal.knative.dev", "Image"),
    }
    assert all(not (c["spec"].get("conversion") or {}).get("webhook") for c in knative.crds(src))


def test_base_objects_are_namespace_rbac_configmaps_secret_then_webhooks(src: knative.Sources) -> None:
    objs = knative.base_objects(src, QUEUE_IMAGE)
    kinds = [o["kind"] for o in objs]
    assert (objs[0]["kind"], objs[0]["metadata"]["name"]) == ("Namespace", "knative-serving")
    assert set(kinds[-3:]) == {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
    assert kinds.index("Secret") > max(i for i, k in enumerate(kinds) if k == "ConfigMap")
    names = _by_name(objs)
    assert ("ServiceAccount", "controller") in names and ("ClusterRole", "knative-serving-core") in names
    assert {n for k, n in names if k == "ConfigMap"} == {
        "config-autoscaler", "config-certmanager", "config-defaults", "config-deployment", "config-domain",
        "config-features", "config-gc", "config-leader-election", "config-logging", "config-observability",
        "config-tracing", "config-network",
    }  # fmt: skip
    # No Deployment (the binaries run as our processes), no cert-manager Certificate, no caching Image of ko://.
    assert not {"Deployment", "Certificate", "Image", "HorizontalPodAutoscaler", "PodDisruptionBudget"} & set(kinds)
    assert all(o["metadata"].get("namespace", "knative-serving") == "knative-serving" for o in objs)


def test_nothing_names_a_ko_image(src: knative.Sources) -> None:
    leftovers = [(where, s) for o in _everything(src) for where, s in _strings(o) if "ko://" in s]
    assert leftovers == []


def test_webhooks_keep_their_service_client_configs_and_the_secret_is_empty(src: knative.Sources) -> None:
    hooks = knative.webhook_configurations(src)
    shipped: dict[tuple[str, str], Obj] = {}
    for name in ("defaulting", "resource-validation", "configmap-validation"):
        shipped |= _shipped(src.core / "webhooks" / f"{name}.yaml")
    assert _by_name(hooks) == shipped, "applied as Knative ships them: its webhook completes them"
    for cfg in hooks:
        for hook in cfg["webhooks"]:
            assert hook["clientConfig"] == {"service": {"name": "webhook", "namespace": "knative-serving"}}
    secret = knative.webhook_secret(src)
    assert (secret["metadata"]["name"], secret["metadata"]["namespace"]) == ("webhook-certs", "knative-serving")
    assert not secret.get("data") and not secret.get("stringData"), "Knative's certificates reconciler fills it"


# ---- ConfigMaps ------------------------------------------------------------------------------


def test_configmaps_carry_the_edits_and_nothing_else_changes(src: knative.Sources) -> None:
    cms = {o["metadata"]["name"]: o for o in knative.configmaps(src, QUEUE_IMAGE)}
    deployment = cms["config-deployment"]["data"]
    assert deployment["queue-sidecar-image"] == QUEUE_IMAGE
    skipped = [r.strip() for r in deployment["registries-skipping-tag-resolving"].split(",")]
    assert "slipway.local" in skipped
    assert {"kind.local", "ko.local", "dev.local"} <= set(skipped), "Knative's defaults are kept"
    network = cms["config-network"]["data"]
    assert network["ingress-class"] == "traefik.ingress.networking.knative.dev"
    assert network["mesh-compatibility-mode"] == "disabled"
    observability = cms["config-observability"]["data"]
    assert observability["request-metrics-protocol"] == "prometheus"
    assert observability["metrics-protocol"] == "none" and observability["tracing-protocol"] == "none"
    assert "request-metrics-endpoint" not in observability, "queue-proxy then serves on :9091"

    shipped = _shipped(src.networking / "config" / "config-network.yaml")
    for path in (src.core / "configmaps").glob("*.yaml"):
        shipped |= _shipped(path)
    edits = {
        "config-deployment": {"queue-sidecar-image", "registries-skipping-tag-resolving"},
        "config-network": {"ingress-class", "mesh-compatibility-mode"},
        "config-observability": {
            "request-metrics-protocol",
            "metrics-protocol",
            "tracing-protocol",
            "runtime-profiling",
        },
    }
    for name, cm in cms.items():
        orig = shipped[("ConfigMap", name)]
        assert cm["metadata"] == orig["metadata"]
        assert cm["data"]["_example"] == orig["data"]["_example"]
        changed = {k for k in cm["data"].keys() | orig["data"].keys() if cm["data"].get(k) != orig["data"].get(k)}
        assert changed == edits.get(name, set()), name


def test_every_example_still_matches_its_checksum(src: knative.Sources) -> None:
    """Knative's ConfigMap webhook refuses a ConfigMap whose _example does not match its
    knative.dev/example-checksum annotation; our port of the checksum agrees with Knative's."""
    cms = knative.configmaps(src, QUEUE_IMAGE)
    assert cms
    for cm in cms:
        annotation = cm["metadata"]["annotations"][knative.EXAMPLE_CHECKSUM]
        assert knative.example_checksum(cm["data"]["_example"]) == annotation, cm["metadata"]["name"]
    assert knative.example_checksum("a\n\n\nb\n") == knative.example_checksum("  a\nb")


def test_edits_never_touch_the_example() -> None:
    cm: Obj = {"kind": "ConfigMap", "metadata": {"name": "config-x"}, "data": {"_example": "doc"}}
    with pytest.raises(knative.KnativeError):
        knative._set_data(cm, {"_example": "changed"})
    assert knative.network_config(cm, "c")["data"]["_example"] == "doc"
    assert cm["data"] == {"_example": "doc"}, "the input is not changed"


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("slipway.local/knative-queue:v0.48.1", "slipway.local"),
        ("kserve/sklearnserver:v0.14.0", "index.docker.io"),
        ("python", "index.docker.io"),
        ("docker.io/library/python:3.12", "index.docker.io"),
        ("localhost:5000/model:1", "localhost:5000"),
        ("localhost/model:1", "index.docker.io"),  # no '.' or ':' in the first element
        ("ghcr.io/org/img@sha256:" + "0" * 64, "ghcr.io"),
        ("registry.example:5000/a/b", "registry.example:5000"),
    ],
)
def test_image_registry_is_go_containerregistrys(image: str, registry: str) -> None:
    assert knative.image_registry(image) == registry


def test_user_image_registries_are_skipped_too_and_ko_is_refused() -> None:
    cm: Obj = {"kind": "ConfigMap", "metadata": {"name": "config-deployment"}, "data": {"_example": ""}}
    out = knative.deployment_config(cm, QUEUE_IMAGE, ["index.docker.io", "slipway.local"])
    skipped = out["data"]["registries-skipping-tag-resolving"].split(",")
    assert skipped == ["kind.local", "ko.local", "dev.local", "slipway.local", "index.docker.io"]
    for bad in ("", "ko://knative.dev/serving/cmd/queue"):
        with pytest.raises(knative.KnativeError):
            knative.deployment_config(cm, bad)


# ---- Services and endpoints ------------------------------------------------------------------


def test_services_are_knatives_without_selector_and_their_slices_name_the_addresses(src: knative.Sources) -> None:
    objs = _by_name(knative.system_services(src, ADDRESSES))
    expected = {
        "webhook": ("webhook", {"https-webhook": 8443, "http-metrics": 9090, "http-profiling": 8008}),
        "autoscaler": ("autoscaler", {"http": 8080, "http-metrics": 9090, "http-profiling": 8008}),
        "activator-service": (
            "activator",
            {"http": 8012, "http2": 8013, "https": 8112, "http-metrics": 9090, "http-profiling": 8008},
        ),
    }
    assert {n for k, n in objs if k == "Service"} == set(expected)
    for name, (component, ports) in expected.items():
        svc = objs[("Service", name)]
        assert "selector" not in svc["spec"]
        shipped = copy.deepcopy(_shipped(src.core / "deployments" / f"{component}.yaml")[("Service", name)])
        del shipped["spec"]["selector"]
        assert svc == shipped, "Knative's Service, less its selector"

        (slice_,) = _slices(objs.values(), name)
        assert slice_["metadata"]["namespace"] == "knative-serving"
        labels = slice_["metadata"]["labels"]
        assert labels["endpointslice.kubernetes.io/managed-by"] == "localcluster.slipway.dev"
        # The apiserver refused the first value ("slipway.dev/localcluster"): label values have no "/".
        assert all(LABEL_VALUE.fullmatch(v) and len(v) <= 63 for v in labels.values())
        assert slice_["addressType"] == "IPv4"
        assert slice_["endpoints"] == [
            {"addresses": [ADDRESSES[component]], "conditions": {"ready": True, "serving": True, "terminating": False}}
        ]
        assert {p["name"]: p["port"] for p in slice_["ports"]} == ports

        endpoints = objs[("Endpoints", name)]
        assert endpoints["metadata"]["labels"] == {"endpointslice.kubernetes.io/skip-mirror": "true"}
        (subset,) = endpoints["subsets"]
        assert subset["addresses"] == [{"ip": ADDRESSES[component]}]
        assert {p["name"]: p["port"] for p in subset["ports"]} == ports


def test_the_apiserver_resolves_the_webhook_service_to_the_webhook_process(src: knative.Sources) -> None:
    """What kube-apiserver --enable-aggregator-routing does for a webhook's Service reference
    (k8s.io/apiserver pkg/util/proxy/proxy.go ResolveEndpoint): Service port 443 -> its name ->
    the slice port of that name -> https://<endpoint address>:<slice port>."""
    objs = knative.system_services(src, ADDRESSES)
    svc = _by_name(objs)[("Service", "webhook")]
    port_name = next(p["name"] for p in svc["spec"]["ports"] if p["port"] == 443)
    (slice_,) = _slices(objs, "webhook")
    port = next(p["port"] for p in slice_["ports"] if p["name"] == port_name)
    assert f"https://{slice_['endpoints'][0]['addresses'][0]}:{port}" == "https://198.19.128.3:8443"


@pytest.mark.parametrize("bad", ["127.0.0.1", "0.0.0.0", "169.254.1.1", "::1", "fd00::1"])
def test_addresses_the_apiserver_or_the_autoscaler_would_refuse_are_rejected(src: knative.Sources, bad: str) -> None:
    with pytest.raises(knative.KnativeError):
        knative.system_services(src, {**ADDRESSES, "autoscaler": bad})
    with pytest.raises(knative.KnativeError):
        knative.process_env("autoscaler", bad, Path("/k"), Path("/h"))


def test_every_service_needs_its_process_address(src: knative.Sources) -> None:
    with pytest.raises(knative.KnativeError, match="activator"):
        knative.system_services(src, {k: v for k, v in ADDRESSES.items() if k != "activator"})


# ---- processes -------------------------------------------------------------------------------


def test_own_ports_are_the_ports_knatives_deployments_declare(src: knative.Sources) -> None:
    for component in knative.COMPONENTS:
        objs = _shipped(src.core / "deployments" / f"{component}.yaml")
        (container,) = objs[("Deployment", component)]["spec"]["template"]["spec"]["containers"]
        declared = {p["containerPort"] for p in container["ports"]}
        assert set(knative.own_ports(component)) == declared, component


def test_env_sets_what_each_process_requires_and_inherits_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for leak in ("HTTPS_PROXY", "OTEL_EXPORTER_OTLP_ENDPOINT", "KUBERNETES_SERVICE_HOST", "POD_NAMESPACE"):
        monkeypatch.setenv(leak, "10.0.0.1")
    for component in knative.COMPONENTS:
        env = knative.process_env(component, ADDRESSES[component], Path("/s/kubeconfig"), Path("/s/home"))
        assert env["KUBECONFIG"] == "/s/kubeconfig" and env["HOME"] == "/s/home"
        assert env["SYSTEM_NAMESPACE"] == "knative-serving"
        assert env["POD_NAME"] == component
        assert env["POD_IP"] == ADDRESSES[component]
        assert not ipaddress.ip_address(env["POD_IP"]).is_loopback
        assert env["CONFIG_LOGGING_NAME"] == "config-logging"
        assert env["CONFIG_OBSERVABILITY_NAME"] == "config-observability"
        assert env["CLUSTER_DOMAIN"] == "cluster.local"
        assert set(env) <= {
            "PATH", "HOME", "KUBECONFIG", "SYSTEM_NAMESPACE", "POD_NAME", "POD_IP", "CONFIG_LOGGING_NAME",
            "CONFIG_OBSERVABILITY_NAME", "CLUSTER_DOMAIN", "WEBHOOK_NAME", "WEBHOOK_PORT", "GOGC",
        }  # fmt: skip
        assert ("WEBHOOK_NAME" in env) == (component == "webhook")
    webhook = knative.process_env("webhook", ADDRESSES["webhook"], Path("/k"), Path("/h"))
    assert webhook["WEBHOOK_NAME"] == "webhook" and webhook["WEBHOOK_PORT"] == "8443"
    assert knative.process_env("activator", ADDRESSES["activator"], Path("/k"), Path("/h"))["GOGC"] == "500"
    with pytest.raises(knative.KnativeError):
        knative.process_env("queue", ADDRESSES["activator"], Path("/k"), Path("/h"))


def test_argv_is_the_binary() -> None:
    assert knative.argv(Path("/bin/knative-autoscaler"), "autoscaler") == ["/bin/knative-autoscaler"]
    with pytest.raises(knative.KnativeError):
        knative.argv(Path("/bin/x"), "queue")


def test_hosts_file_maps_the_system_service_names_to_the_processes() -> None:
    text = knative.hosts_file(ADDRESSES)
    names: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        for name in fields[1:]:
            names[name] = fields[0]
    assert names["autoscaler.knative-serving.svc.cluster.local"] == ADDRESSES["autoscaler"]
    assert names["autoscaler.knative-serving.svc"] == ADDRESSES["autoscaler"]
    assert names["activator-service.knative-serving.svc.cluster.local"] == ADDRESSES["activator"]
    assert names["webhook.knative-serving.svc.cluster.local"] == ADDRESSES["webhook"]
    assert names["localhost"] in ("127.0.0.1", "::1")


# ---- nothing points off the machine ---------------------------------------------------------

IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")


def test_nothing_names_an_address_outside_loopback_the_pod_ranges_or_the_service_cidr(src: knative.Sources) -> None:
    found: list[tuple[str, str]] = []
    for obj in _everything(src):
        for where, s in _strings(obj):
            found += [(f"{obj['kind']}/{obj['metadata']['name']}{where}", m) for m in IPV4.findall(s)]
    texts = {"hosts": knative.hosts_file(ADDRESSES)}
    for component in knative.COMPONENTS:
        env = knative.process_env(component, ADDRESSES[component], Path("/k"), Path("/h"), path="/usr/bin")
        texts[f"env/{component}"] = "\n".join(f"{k}={v}" for k, v in env.items())
    for where, text in texts.items():
        found += [(where, m) for m in IPV4.findall(text)]
    assert {"198.19.128.3", "198.19.128.4", "198.19.128.5"} <= {ip for _, ip in found}, "the scan sees addresses"

    outside = []
    for where, literal in found:
        try:
            ip = ipaddress.IPv4Address(literal)
        except ValueError:
            continue  # not an address (an octet over 255)
        if any(ip in net for net in ALLOWED_NETWORKS):
            continue
        # The Revision/Configuration/Service CRDs' schema documents that a container listens
        # on "0.0.0.0" (a bind address, in a description): nothing to connect to.
        if literal == "0.0.0.0" and where.startswith("CustomResourceDefinition/") and where.endswith("/description"):
            continue
        outside.append((where, literal))
    assert outside == []


def _millis(duration: str) -> int:
    if duration.endswith("ms"):
        return int(duration.removesuffix("ms"))
    return int(float(duration.removesuffix("s")) * 1000)


def test_traefik_marks_a_kingress_ready_only_after_its_configuration_can_be_routed() -> None:
    # The aggregator may hold a configuration back for providersThrottleDuration; the provider writes
    # the KIngress status after its own throttleDuration. Ready before routed is a 404 to a user.
    argv = knative.traefik_argv(Path("/bin/traefik"))
    flags = dict(a.removeprefix("--").split("=", 1) for a in argv[1:])
    held = _millis(flags["providers.providersThrottleDuration"])
    assert 0 < held < _millis(flags["providers.knative.throttleDuration"])
