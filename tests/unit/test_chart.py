"""The Helm chart without a cluster: lint, render every ci/ variant, and hold the RBAC to what the operator uses.

Needs helm (hack/build-helm.sh); skipped without it unless SLIPWAY_REQUIRE_CLUSTER=1 (`make test`), where a
missing helm fails.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "slipway"
CI_FILES = sorted((CHART / "ci").glob("*.yaml"))
REQUIRE = os.environ.get("SLIPWAY_REQUIRE_CLUSTER") == "1"
NAMESPACE = "slipway-system"

# What the operator uses, resource -> verbs, and why. The chart's RBAC may grant nothing beyond this
# (test_rbac_grants_nothing_beyond_what_the_operator_uses) and must grant all of it
# (test_rbac_grants_everything_the_operator_uses; tests/integration/test_chart.py runs the operator under it).
# Keys are "<group>/<resource>" ("" for the core group).
USED: dict[str, set[str]] = {
    # handlers.on_pod: Kopf lists and watches labelled pods; kube.pods() lists; kube.create/delete (TrainingJob gangs).
    "/pods": {"create", "delete", "list", "watch"},
    # kube.service_exists() reads, kube.create/delete: the headless Service of a distributed TrainingJob;
    # kube.apply()/delete(): a logged Standard-mode canary's Service to KServe's agent (rollout_serving).
    "/services": {"create", "delete", "get", "patch"},
    # kube.secret_data()/secret_version(): S3 credentials named by credentialsSecretRef, read by name only;
    # kube.apply(): the Rollout's copy of them for KServe's storage initializer (rollout_storage).
    "/secrets": {"create", "get", "patch"},
    # kube.apply() and service_account_exists(): the Rollout's storage ServiceAccount (rollout_storage).
    "/serviceaccounts": {"create", "get", "patch"},
    # kube.apply() and get_custom(): the HTTPRoute of a Standard-mode Rollout (rollout_route).
    "gateway.networking.k8s.io/httproutes": {"create", "get", "patch"},
    # kube.event() and Kopf's own event posting.
    "/events": {"create"},
    # Kopf lists/watches every kind (handlers._register_one); Runtime._refetch gets; TrainingJob ttl deletes
    # itself; a DriftMonitor creates retraining TrainingJobs and lists them (cooldown, maxConcurrent).
    "slipway.dev/trainingjobs": {"create", "delete", "get", "list", "watch"},
    # TrainingJob creates ModelVersions and lists them (next free N); kube.set_finalizers patches the
    # in-use finalizer.
    "slipway.dev/modelversions": {"create", "get", "list", "patch", "watch"},
    # Rollouts are read by ModelVersion (list: who serves me) and DriftMonitor (get); a DriftMonitor
    # annotates its Rollout (metadata patch) when retraining promotes a new version.
    "slipway.dev/rollouts": {"get", "list", "patch", "watch"},
    "slipway.dev/driftmonitors": {"get", "list", "watch"},
    # rollout_history: a Rollout applies each canary's record and reads the running one's by name.
    "slipway.dev/canaryanalyses": {"create", "get", "patch"},
    # controllers/base.reconcile: one status merge patch per change.
    "slipway.dev/trainingjobs/status": {"patch"},
    "slipway.dev/modelversions/status": {"patch"},
    "slipway.dev/rollouts/status": {"patch"},
    "slipway.dev/driftmonitors/status": {"patch"},
    # blockOwnerDeletion owner references (trainingjob_manifests.owner_reference, rollout_isvc), which
    # OwnerReferencesPermissionEnforcement checks as `update` on the owner's finalizers.
    "slipway.dev/trainingjobs/finalizers": {"update"},
    "slipway.dev/rollouts/finalizers": {"update"},
    # kube.get_optional(): Kueue's Workload of a queued TrainingJob's pod group (its reason for waiting).
    "kueue.x-k8s.io/workloads": {"get"},
    # Rollout: Apply (create, else merge-patch) its InferenceService, read it back; DriftMonitor reads it.
    # handlers.register: Kopf lists and watches the operator's InferenceServices (their status wakes the Rollout).
    "serving.kserve.io/inferenceservices": {"create", "get", "list", "patch", "watch"},
    # cli.ensure_peering creates the peering object; Kopf's peering lists, watches and patches it (never gets).
    "kopf.dev/clusterkopfpeerings": {"create", "list", "patch", "watch"},
    "kopf.dev/kopfpeerings": {"create", "list", "patch", "watch"},
    # Kopf's observation of CRDs and (when watching listed namespaces) namespaces: read-only.
    "apiextensions.k8s.io/customresourcedefinitions": {"list", "watch"},
    "/namespaces": {"list", "watch"},
}

# kubernetes_asyncio core-API methods kube/client.py calls -> the (resource, verb) each needs. Every call
# found there must be listed, so a new call fails this test until USED (and the chart) say so.
CORE_CALLS: dict[str, tuple[str, str]] = {
    "list_namespaced_pod": ("/pods", "list"),
    "create_namespaced_pod": ("/pods", "create"),
    "delete_namespaced_pod": ("/pods", "delete"),
    "read_namespaced_service": ("/services", "get"),
    "create_namespaced_service": ("/services", "create"),
    "delete_namespaced_service": ("/services", "delete"),
    "patch_namespaced_service": ("/services", "patch"),
    "read_namespaced_secret": ("/secrets", "get"),
    "patch_namespaced_secret": ("/secrets", "patch"),
    "read_namespaced_service_account": ("/serviceaccounts", "get"),
    "patch_namespaced_service_account": ("/serviceaccounts", "patch"),
    "create_namespaced_event": ("/events", "create"),
}
# Generic custom-object methods -> the verb; the resources are the kinds in USED under slipway.dev,
# serving.kserve.io, kueue.x-k8s.io and kopf.dev.
CUSTOM_CALLS: dict[str, str] = {
    "get_namespaced_custom_object": "get",
    "list_namespaced_custom_object": "list",
    "create_namespaced_custom_object": "create",
    "create_cluster_custom_object": "create",
    "list_cluster_custom_object": "list",  # the peering object, read by the requeue timers (peering.py)
    "patch_namespaced_custom_object": "patch",
    "patch_namespaced_custom_object_status": "patch",
    "delete_namespaced_custom_object": "delete",
}


def helm_path() -> str | None:
    found = os.environ.get("HELM") or shutil.which("helm")
    built = Path.home() / ".cache" / "slipway" / "bin" / "helm"
    return found or (str(built) if built.exists() else None)


@pytest.fixture(scope="module")
def helm() -> str:
    path = helm_path()
    if path is None:
        if REQUIRE:
            pytest.fail("helm is missing: run hack/build-helm.sh")
        pytest.skip("helm is missing: run hack/build-helm.sh")
    return path


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([helm, *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def render(helm: str, *values: Path, sets: tuple[str, ...] = (), release: str = "slipway") -> list[dict[str, Any]]:
    args = ["template", release, str(CHART), "--namespace", NAMESPACE]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(run_helm(helm, *args).stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def grants(docs: list[dict[str, Any]]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(kind/name of the role, "<group>/<resource>", verb, rule) for everything every Role and ClusterRole grants."""
    for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
        for rule in role.get("rules") or []:
            assert "nonResourceURLs" not in rule, role["metadata"]["name"]
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for verb in rule.get("verbs", []):
                        yield f"{role['kind']}/{role['metadata']['name']}", f"{group}/{resource}", verb, rule


VARIANTS = [pytest.param(None, id="defaults"), *[pytest.param(p, id=p.stem) for p in CI_FILES]]


def test_ci_files_cover_the_variants() -> None:
    names = {p.stem for p in CI_FILES}
    assert {
        "cluster-wide-values",
        "namespaced-values",
        "ha-values",
        "monitoring-values",
        "networkpolicy-values",
        "sharded-values",
    } <= names


def test_chart_crds_are_the_generated_ones() -> None:
    source = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert chart == source, "charts/slipway/crds/ differs from crds/: run python -m slipway_dev.chart_crds"


def test_generated_files_are_fresh(helm: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "slipway_dev.chart_crds", "--check"],
        capture_output=True,
        text=True,
        env={**os.environ, "HELM": helm},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_chart_versions_follow_the_operator() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert chart["apiVersion"] == "v2" and version is not None
    assert chart["appVersion"] == version.group(1)


@pytest.mark.parametrize("values", VARIANTS)
def test_lint_passes(helm: str, values: Path | None) -> None:
    run_helm(helm, "lint", "--strict", str(CHART), *(["-f", str(values)] if values else []))


@pytest.mark.parametrize("values", VARIANTS)
def test_pods_are_restricted_and_the_operator_is_wired(helm: str, values: Path | None) -> None:
    docs = render(helm, *([values] if values else []))
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    vals = yaml.safe_load(values.read_text()) if values else {}
    op = one(docs, "Deployment", "slipway")
    pod = op["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == f"ghcr.io/slipway-dev/slipway-operator:{chart['appVersion']}"
    assert c["command"] == ["python", "-m", "slipway"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {p["containerPort"] for p in c["ports"]} == {8080}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["SLIPWAY_HTTP_PORT"] == "8080"
    watch = vals.get("watch", {})
    assert env["SLIPWAY_NAMESPACES"] == ("" if watch.get("clusterWide", True) else ",".join(watch["namespaces"]))
    drift = vals.get("drift", {}).get("enabled", True)
    assert env.get("SLIPWAY_DRIFT_URL") == (f"http://slipway-drift.{NAMESPACE}.svc:8080" if drift else None)
    assert op["spec"]["replicas"] == vals.get("replicas", 1)
    assert pod["serviceAccountName"] == "slipway"
    assert bool(by_kind(docs, "PodDisruptionBudget")) == (vals.get("replicas", 1) > 1)

    for deploy in by_kind(docs, "Deployment"):
        spec = deploy["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["runAsNonRoot"] is True and sc["capabilities"]["drop"] == ["ALL"]
            assert sc["seccompProfile"]["type"] == "RuntimeDefault"
            assert "limits" in container["resources"] and "requests" in container["resources"]
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts  # a writable /tmp on a read-only root
    if drift:
        d = one(docs, "Deployment", "slipway-drift")["spec"]["template"]["spec"]
        assert d["automountServiceAccountToken"] is False  # the runtime never calls the API
        assert d["containers"][0]["image"] == f"ghcr.io/slipway-dev/drift:{chart['appVersion']}"
        state = next(v for v in d["volumes"] if v["name"] == "state")
        persistent = vals.get("drift", {}).get("persistence", {}).get("enabled", True)
        assert ("persistentVolumeClaim" in state) == persistent and ("emptyDir" in state) != persistent
        assert one(docs, "Service", "slipway-drift")["spec"]["ports"][0]["port"] == 8080


@pytest.mark.parametrize("values", VARIANTS)
def test_rbac_grants_nothing_beyond_what_the_operator_uses(helm: str, values: Path | None) -> None:
    docs = render(helm, *([values] if values else []))
    vals = yaml.safe_load(values.read_text()) if values else {}
    for role, resource, verb, rule in grants(docs):
        assert "*" not in (resource, verb) and "*" not in resource and "*" not in rule.get("apiGroups", []), role
        assert verb in USED.get(resource, set()), f"{role} grants {verb} on {resource}, which the operator never uses"
        if resource == "/secrets" and verb == "get":
            names = vals.get("rbac", {}).get("secretNames")
            assert rule.get("resourceNames") == names, (role, rule)
    cluster_wide = vals.get("watch", {}).get("clusterWide", True)
    bindings = by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding")
    for b in bindings:
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "slipway", "namespace": NAMESPACE}]
    if cluster_wide:
        assert not by_kind(docs, "Role")
    else:
        # Only Kopf's read-only observation is cluster-scoped; everything else stays in the watched namespaces.
        for _, resource, verb, _ in (g for g in grants(docs) if g[0].startswith("ClusterRole/")):
            assert resource in ("apiextensions.k8s.io/customresourcedefinitions", "/namespaces") and verb in (
                "list",
                "watch",
            )
        roles = {r["metadata"]["namespace"] for r in by_kind(docs, "Role")}
        assert roles == set(vals["watch"]["namespaces"])


@pytest.mark.parametrize(
    ("sets", "peering"),
    [
        ((), "kopf.dev/clusterkopfpeerings"),
        (("watch.clusterWide=false", "watch.namespaces={ml}"), "kopf.dev/kopfpeerings"),
    ],
    ids=["cluster-wide", "namespaced"],
)
def test_rbac_grants_everything_the_operator_uses(helm: str, sets: tuple[str, ...], peering: str) -> None:
    granted: dict[str, set[str]] = {}
    for _, resource, verb, _ in grants(render(helm, sets=sets)):
        granted.setdefault(resource, set()).add(verb)
    other_peering = ({"kopf.dev/clusterkopfpeerings", "kopf.dev/kopfpeerings"} - {peering}).pop()
    for resource, verbs in USED.items():
        if resource == other_peering or (resource == "/namespaces" and not sets):
            continue  # cluster-wide Kopf neither lists namespaces nor uses namespaced peering, and vice versa
        assert verbs <= granted.get(resource, set()), f"{resource}: needs {verbs}, granted {granted.get(resource)}"


def test_the_table_covers_every_api_call_in_kube_client() -> None:
    """Every kubernetes_asyncio call in kube/client.py is in CORE_CALLS or CUSTOM_CALLS, and so in USED."""
    source = (REPO / "operator" / "slipway" / "kube" / "client.py").read_text()
    calls = {
        node.func.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr in ("_core", "_custom")
    }
    unknown = calls - CORE_CALLS.keys() - CUSTOM_CALLS.keys()
    assert not unknown, f"kube/client.py calls {unknown}: add them to the table and the chart's RBAC"
    for method, (resource, verb) in CORE_CALLS.items():
        assert verb in USED[resource], method
    custom_verbs = {
        verb
        for r, verbs in USED.items()
        if r.split("/")[0] in ("slipway.dev", "serving.kserve.io", "kueue.x-k8s.io")
        for verb in verbs
    }
    assert {CUSTOM_CALLS[m] for m in calls & CUSTOM_CALLS.keys()} <= custom_verbs


def test_secret_access_narrows_to_named_secrets(helm: str) -> None:
    docs = render(helm, sets=("rbac.secretNames={s3-credentials,other}",))
    rules = [r for _, res, _, r in grants(docs) if res == "/secrets"]
    reads = [r for r in rules if "get" in r["verbs"]]
    assert reads and all(r["verbs"] == ["get"] and r["resourceNames"] == ["s3-credentials", "other"] for r in reads)
    # The Rollout's own copies (derived names): written, never read, listed or watched.
    assert all(r["verbs"] == ["create", "patch"] for r in rules if r not in reads)


def test_monitoring_objects_use_the_operators_metric_names(helm: str) -> None:
    docs = render(helm, CHART / "ci" / "monitoring-values.yaml")
    rules = one(docs, "PrometheusRule", "slipway")["spec"]["groups"][0]["rules"]
    alerts = {r["alert"]: r["expr"] for r in rules}
    assert set(alerts) == {
        "SlipwayRollbackHappened",
        "SlipwayDriftDetected",
        "SlipwayOperatorDown",
        "SlipwayReconcileErrors",
    }
    assert 'up{job="slipway", namespace="slipway-system"}' in alerts["SlipwayOperatorDown"]
    sm = one(docs, "ServiceMonitor", "slipway")
    assert sm["spec"]["endpoints"][0]["port"] == "http" and sm["spec"]["endpoints"][0]["honorLabels"] is True
    dashboard = json.loads(one(docs, "ConfigMap", "slipway-dashboard")["data"]["slipway.json"])
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Canary weight", "Canary verdicts", "Rollbacks", "Drift p-value", "Reconcile errors"} <= titles
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]] + list(alerts.values())
    used = {m for e in exprs for m in re.findall(r"\b(slipway_[a-z_]+)", e)}
    used = {re.sub(r"_(bucket|count|sum)$", "", m) for m in used}
    defined = set(re.findall(r'"(slipway_[a-z_]+)"', (REPO / "operator" / "slipway" / "observability.py").read_text()))
    operator_metrics = {m for m in used if not m.startswith("slipway_drift_")}
    assert operator_metrics <= defined, operator_metrics - defined
    # The drift runtime's metrics, once it defines any (runtimes/drift).
    drift_src = " ".join(p.read_text() for p in (REPO / "runtimes" / "drift").rglob("*.py"))
    drift_defined = set(re.findall(r'"(slipway_drift_[a-z_]+)"', drift_src))
    if drift_defined:
        assert used - operator_metrics <= drift_defined, (used - operator_metrics) - drift_defined


def test_network_policies_admit_only_port_8080(helm: str) -> None:
    docs = render(helm, CHART / "ci" / "networkpolicy-values.yaml")
    policies = by_kind(docs, "NetworkPolicy")
    assert {p["metadata"]["name"] for p in policies} == {"slipway", "slipway-drift"}
    for p in policies:
        assert p["spec"]["policyTypes"] == ["Ingress"]
        assert [port for rule in p["spec"]["ingress"] for port in rule["ports"]] == [
            {"port": "http", "protocol": "TCP"}
        ]
    assert not by_kind(render(helm), "NetworkPolicy")  # off by default


@pytest.mark.parametrize(
    ("base", "bad", "field"),
    [
        # (sets that render, the set that breaks them, the values schema's field the error must name): the
        # field's path in either of helm's spellings ("/watch/namespaces", "watch.namespaces"), not its wording.
        ((), ("bogus=1",), r"\bbogus\b"),
        ((), ("watch.clusterWide=false",), r"\bwatch\W+namespaces\b"),  # namespaces required, none given
        (("replicas=2",), ("operator.peering=",), r"\boperator\W+peering\b"),  # more than one needs peering
        ((), ("operator.logFormat=xml",), r"\boperator\W+logFormat\b"),
        ((), ("rbac.secretNames={Bad_Name}",), r"\brbac\W+secretNames\b"),
        (("shards={b}",), ("shards={Bad_Name}",), r"\bshards\b"),  # a shard name is a DNS label
    ],
)
def test_schema_rejects_bad_values(helm: str, base: tuple[str, ...], bad: tuple[str, ...], field: str) -> None:
    def template(*sets: str) -> subprocess.CompletedProcess[str]:
        args = ["template", "slipway", str(CHART)]
        for s in sets:
            args += ["--set", s]
        return run_helm(helm, *args, check=False)

    control = template(*base)
    assert control.returncode == 0, control.stderr  # without the bad value the same template renders
    proc = template(*base, *bad)
    assert proc.returncode != 0 and re.search(field, proc.stderr), proc.stderr


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_each_shard_gets_its_own_operator_and_peering_with_the_same_rbac(helm: str) -> None:
    """shards: one Deployment (+ Service, PodDisruptionBudget) per named shard besides the default one, each
    told its shard; no Deployment's selector takes another's pods; RBAC and ServiceAccount are shared."""
    values = CHART / "ci" / "sharded-values.yaml"
    docs = render(helm, values)
    names = {"slipway": None, "slipway-shard-b": "b", "slipway-shard-gpu-team": "gpu-team"}
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] in names}
    assert deployments.keys() == names.keys()
    assert one(docs, "Deployment", "slipway-drift")  # one drift runtime for every shard
    for name, shard in names.items():
        spec = deployments[name]["spec"]
        pod = spec["template"]["spec"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env.get("SLIPWAY_SHARD") == shard, name  # the default shard gets no SLIPWAY_SHARD at all
        assert env["SLIPWAY_PEERING"] == "slipway"  # the operator appends -shard-<name> (sharding.peering_name)
        assert pod["serviceAccountName"] == "slipway" and spec["replicas"] == 2
        pods = spec["template"]["metadata"]["labels"]
        for other, d in deployments.items():
            assert selects(d["spec"]["selector"]["matchLabels"], pods) == (other == name), (other, name)
        service = one(docs, "Service", name)
        assert selects(service["spec"]["selector"], pods)
        assert not any(selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
                       for other, d in deployments.items() if other != name)  # fmt: skip
        assert selects(one(docs, "PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"], pods)
        assert selects(one(docs, "NetworkPolicy", name)["spec"]["podSelector"]["matchLabels"], pods)
        drift_from = one(docs, "NetworkPolicy", "slipway-drift")["spec"]["ingress"][0]["from"]
        assert any(selects(p.get("podSelector", {}).get("matchLabels", {"": ""}), pods) for p in drift_from), name
    rules = {r["alert"] + str(r.get("labels", {}).get("shard", "")): r["expr"]
             for r in one(docs, "PrometheusRule", "slipway")["spec"]["groups"][0]["rules"]}  # fmt: skip
    assert 'job="slipway-shard-b"' in rules["SlipwayOperatorDownb"]
    assert 'job="slipway-shard-gpu-team"' in rules["SlipwayOperatorDowngpu-team"]

    def rbac(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kinds = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount")
        return [d for d in docs if d["kind"] in kinds]

    assert rbac(docs) == rbac(render(helm, sets=("replicas=2",)))


def test_without_shards_the_chart_renders_as_before(helm: str) -> None:
    """The default shard is the unsharded install: `shards: []` adds nothing and names nothing differently."""
    docs = render(helm)
    assert [d["metadata"]["name"] for d in by_kind(docs, "Deployment")] == ["slipway", "slipway-drift"]
    env = {e["name"] for e in one(docs, "Deployment", "slipway")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "SLIPWAY_SHARD" not in env and "SLIPWAY_PEERING" in env
    # deploy/ (the default render, test_generated_files_are_fresh) holds the rest: it did not change.
