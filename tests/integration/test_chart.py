"""The Helm chart against the local control plane: every variant passes server-side dry-run, `helm install`
and `helm uninstall` work, and the operator, authenticated as the chart's ServiceAccount (a token from the
TokenRequest API, so the apiserver's RBAC judges every call), reconciles every example kind without a
refusal in the apiserver's audit log.

The chart's operator pod itself never runs here (the local executor only runs slipway's runtime images):
the operator runs as a local process with the pod's identity instead. Impersonation (`as:` in a kubeconfig)
would not do: neither Kopf's login_with_kubeconfig nor kubernetes_asyncio honours it, so the operator would
silently run as the admin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from slipway.peering import alive, is_active
from slipway_dev.kubectl import Kubectl

from tests.conftest import REPO, REQUIRE_CLUSTER, Operator, wait_for
from tests.integration.test_training import phase_is
from tests.unit.test_chart import CHART, CI_FILES, USED, helm_path

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples"
# Minimal CRDs in place of the Prometheus Operator's, so ServiceMonitor and PrometheusRule pass dry-run
# (their envelopes are checked, not their specs).
MONITORING_CRDS = {"ServiceMonitor": "servicemonitors", "PrometheusRule": "prometheusrules"}
# What a least-privilege operator must not be able to do (checked with `kubectl auth can-i`).
DENIED = [
    ("list", "secrets"),
    ("watch", "secrets"),
    ("delete", "secrets"),  # it creates and patches the storage identity's copy, never deletes one
    ("create", "deployments.apps"),
    ("delete", "namespaces"),
    ("update", "trainingjobs.slipway.dev"),
    ("patch", "trainingjobs.slipway.dev"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("delete", "inferenceservices.serving.kserve.io"),
]


class Helm:
    def __init__(self, binary: str, cluster: Any, home: Path) -> None:
        self.binary, self.cluster = binary, cluster
        self.env = cluster.env()
        for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            self.env[var] = str(home / var.lower())

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.binary, *args], capture_output=True, text=True, env=self.env, timeout=180)
        if check and proc.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc


@pytest.fixture(scope="module")
def helm(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    path = helm_path()
    if path is None:
        if REQUIRE_CLUSTER:
            pytest.fail("helm is missing: run hack/build-helm.sh")
        pytest.skip("helm is missing: run hack/build-helm.sh")
    return Helm(path, cluster, tmp_path_factory.mktemp("helm"))


def suffix() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def namespaces(cluster: Any) -> Iterator[list[str]]:
    """Namespaces a test creates; all deleted at the end of the module."""
    made: list[str] = []
    yield made
    for ns in made:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def namespace(cluster: Any, made: list[str], name: str | None = None) -> str:
    name = name or f"chart-{suffix()}"
    if cluster.kubectl("get", "namespace", name, "--ignore-not-found", "-o", "name").stdout.strip() == "":
        cluster.kubectl("create", "namespace", name)
        made.append(name)
    return name


@pytest.fixture(scope="module")
def monitoring_crds(cluster: Any) -> Iterator[None]:
    for kind, plural in MONITORING_CRDS.items():
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.monitoring.coreos.com"},
            "spec": {
                "group": "monitoring.coreos.com",
                "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    }
                ],
            },
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
    for plural in MONITORING_CRDS.values():
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{plural}.monitoring.coreos.com", "--timeout=60s")
    yield
    for plural in MONITORING_CRDS.values():
        cluster.kubectl("delete", "crd", f"{plural}.monitoring.coreos.com", "--wait=false", check=False)


VARIANTS = [pytest.param(None, id="defaults"), *[pytest.param(p, id=p.stem) for p in CI_FILES]]


@pytest.mark.parametrize("values", VARIANTS)
def test_rendered_objects_pass_server_side_dry_run(
    helm: Helm, cluster: Any, namespaces: list[str], monitoring_crds: None, values: Path | None
) -> None:
    release_ns = namespace(cluster, namespaces)
    vals = yaml.safe_load(values.read_text()) if values else {}
    for watched in vals.get("watch", {}).get("namespaces", []):
        namespace(cluster, namespaces, watched)
    args = ["template", "slipway", str(CHART), "--namespace", release_ns, "--skip-crds"]
    rendered = helm(*args, *(["-f", str(values)] if values else [])).stdout
    proc = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered, check=False)
    assert proc.returncode == 0, proc.stderr
    kinds = {line.split("/")[0] for line in proc.stdout.splitlines()}
    assert {"deployment.apps", "serviceaccount", "service"} <= kinds, proc.stdout


def test_plain_manifests_pass_server_side_dry_run(cluster: Any, namespaces: list[str]) -> None:
    """`kubectl apply -k deploy/` as a user would run it (dry-run: deleting deploy/ would take the CRDs along)."""
    ns = yaml.safe_load((REPO / "deploy" / "namespace.yaml").read_text())["metadata"]["name"]
    namespace(cluster, namespaces, ns)  # a dry-run cannot create objects in a namespace it only pretends to create
    proc = cluster.kubectl("apply", "--dry-run=server", "-k", str(REPO / "deploy"), check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "deployment.apps/slipway" in out and "clusterrole.rbac.authorization.k8s.io/slipway" in out, out
    assert "customresourcedefinition.apiextensions.k8s.io/rollouts.slipway.dev" in out, out


def test_chart_crds_match_the_installed_ones(cluster: Any) -> None:
    """The test cluster installs crds/; the chart's copies are the same objects (so --skip-crds loses nothing)."""
    for path in sorted((CHART / "crds").glob("*.yaml")):
        want = yaml.safe_load(path.read_text())
        have = json.loads(cluster.kubectl("get", "crd", want["metadata"]["name"], "-o", "json").stdout)
        assert have["spec"]["names"]["kind"] == want["spec"]["names"]["kind"]
        assert [v["name"] for v in have["spec"]["versions"]] == [v["name"] for v in want["spec"]["versions"]]
        for h, w in zip(have["spec"]["versions"], want["spec"]["versions"], strict=True):
            assert h["schema"]["openAPIV3Schema"] == w["schema"]["openAPIV3Schema"], path.name


def can_i(cluster: Any, sa: str, verb: str, resource: str, ns: str | None) -> bool:
    """Whether RBAC lets `sa` (system:serviceaccount:<ns>:<name>) do it; `resource` is
    "<resource>[.<group>][/<subresource>]". A SubjectAccessReview names the group itself: `kubectl auth can-i`
    maps "<resource>.<group>" through discovery, so it answers "no" for an API the cluster does not serve (Kueue's
    Workloads on a cluster without Kueue), whatever the Role says."""
    resource, _, sub = resource.partition("/")
    name, _, group = resource.partition(".")
    account_ns = sa.split(":")[2]
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": sa,
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{account_ns}", "system:authenticated"],
            "resourceAttributes": {
                "verb": verb,
                "group": group,
                "resource": name,
                "subresource": sub,
                "namespace": ns or "",
            },
        },
    }
    out = cluster.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review)).stdout
    return bool(json.loads(out)["status"].get("allowed"))


def table_resource(key: str) -> str:
    """USED's "<group>/<resource>[/<sub>]" as can_i takes it: "<resource>.<group>[/<sub>]"."""
    group, _, rest = key.partition("/")
    resource, _, sub = rest.partition("/")
    return (f"{resource}.{group}" if group else resource) + (f"/{sub}" if sub else "")


def test_cluster_wide_install_grants_what_the_operator_uses_and_uninstall_cleans_up(
    helm: Helm, cluster: Any, namespaces: list[str]
) -> None:
    ns, release = namespace(cluster, namespaces), f"slipway-cw-{suffix()}"
    # As the README installs it (CRDs included: Helm leaves ones that exist alone).
    out = helm("install", release, str(CHART), "--namespace", ns, "--set", "drift.enabled=false")
    assert json.loads(helm("list", "-n", ns, "-o", "json").stdout)[0]["status"] == "deployed", out.stderr
    sa = f"system:serviceaccount:{ns}:{release}"
    elsewhere = namespace(cluster, namespaces)
    for key, verbs in USED.items():
        if key in ("kopf.dev/kopfpeerings", "/namespaces"):
            continue  # namespaced mode only
        for verb in verbs:
            scope = None if key.split("/")[0] in ("kopf.dev", "apiextensions.k8s.io") else elsewhere
            assert can_i(cluster, sa, verb, table_resource(key), scope), (verb, key)
    for verb, resource in DENIED:
        assert not can_i(cluster, sa, verb, resource, elsewhere), (verb, resource)

    selector = f"app.kubernetes.io/instance={release}"
    kinds = "deployment,service,serviceaccount,clusterrole,clusterrolebinding,role,rolebinding,configmap"
    assert cluster.kubectl("get", kinds, "-A", "-l", selector, "-o", "name").stdout.strip()
    helm("uninstall", release, "--namespace", ns, "--wait", "--timeout", "60s")
    assert json.loads(helm("list", "-n", ns, "-o", "json").stdout) == []
    left = cluster.kubectl("get", kinds, "-A", "-l", selector, "-o", "name").stdout.strip()
    assert left == "", left
    assert not can_i(cluster, sa, "get", "secrets", elsewhere)


@dataclass
class Install:
    release: str
    namespace: str  # the release's
    watched: str
    service_account: str


@pytest.fixture(scope="module")
def namespaced_install(helm: Helm, cluster: Any, namespaces: list[str]) -> Iterator[Install]:
    """One namespaced release watching one namespace, as the operator runs in test_operator_...."""
    ns, watched, release = namespace(cluster, namespaces), namespace(cluster, namespaces), f"slipway-{suffix()}"
    helm(
        "install", release, str(CHART), "--namespace", ns, "--skip-crds",
        "--set", "watch.clusterWide=false", "--set", f"watch.namespaces={{{watched}}}",
        "--set", "drift.enabled=false",
    )  # fmt: skip
    yield Install(release, ns, watched, release)
    helm("uninstall", release, "--namespace", ns, check=False)


def test_namespaced_install_grants_only_in_the_watched_namespace(cluster: Any, namespaced_install: Install) -> None:
    inst = namespaced_install
    sa = f"system:serviceaccount:{inst.namespace}:{inst.service_account}"
    assert can_i(cluster, sa, "create", "pods", inst.watched)
    assert can_i(cluster, sa, "patch", "kopfpeerings.kopf.dev", inst.watched)
    assert can_i(cluster, sa, "list", "customresourcedefinitions.apiextensions.k8s.io", None)
    for where in (inst.namespace, "default"):
        assert not can_i(cluster, sa, "create", "pods", where)
        assert not can_i(cluster, sa, "get", "secrets", where)
    assert not can_i(cluster, sa, "list", "pods", None)  # nothing cluster-wide beyond Kopf's observation


class OperatorAs(Operator):
    """The operator process with another kubeconfig (conftest's Operator always uses the admin's)."""

    def __init__(self, cluster: Any, log_dir: Path, kubeconfig: Path, **env: str) -> None:
        super().__init__(cluster, log_dir, **env)
        self.kubeconfig = kubeconfig

    def start(self) -> OperatorAs:
        env = self.cluster.env({**os.environ, **self.env})
        env["KUBECONFIG"] = str(self.kubeconfig)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "slipway"], env=env, stdout=log, stderr=log)
        wait_for("operator readiness", lambda: self.alive() and self.http("/readyz") == "ok", timeout=60)
        return self


def token_kubeconfig(cluster: Any, inst: Install, path: Path) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount with a bound token."""
    token = cluster.kubectl(
        "-n", inst.namespace, "create", "token", inst.service_account, "--duration=2h"
    ).stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    user = f"system:serviceaccount:{inst.namespace}:{inst.service_account}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": admin["clusters"][0]["name"], "user": user}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def reconciled(kubectl: Kubectl, kind: str, name: str) -> Any:
    """The object once the operator wrote a status for its current generation."""

    def check() -> Any:
        obj = kubectl.get(kind, name) or {}
        status = obj.get("status") or {}
        gen = obj.get("metadata", {}).get("generation")
        return obj if status.get("observedGeneration") == gen and status.get("conditions") else None

    return check


def test_operator_under_the_chart_service_account_reconciles_every_kind(
    cluster: Any, namespaced_install: Install, s3: Any, s3_server: Any, tmp_path: Path
) -> None:
    inst = namespaced_install
    kubeconfig = token_kubeconfig(cluster, inst, tmp_path / "sa.kubeconfig")
    who = cluster.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig)
    assert json.loads(who.stdout)["status"]["userInfo"]["username"].endswith(f":{inst.service_account}")
    env = {
        "SLIPWAY_NAMESPACES": inst.watched,
        "SLIPWAY_PEERING": "slipway",
        "SLIPWAY_S3_ENDPOINT": s3_server.endpoint,
    }
    user = f"system:serviceaccount:{inst.namespace}:{inst.service_account}"
    audit_from = audit_lines(cluster)
    op = OperatorAs(cluster, tmp_path, kubeconfig, **env).start()
    kubectl = Kubectl.of(cluster, inst.watched)
    try:
        exercise(kubectl)
    finally:
        op.stop()
        failed = [line for line in op.log_path.read_text().splitlines() if "reconcile of" in line and "failed" in line]
        print("\n".join(["operator log, failed passes:", *failed[:20]]))
    # The apiserver's own record of every request the chart's identity made, and its answer.
    asked = [e for e in audit_events(cluster, audit_from) if (e.get("user") or {}).get("username") == user]
    refused = [f"{e['verb']} {e['requestURI']}: {e['responseStatus'].get('code')}" for e in asked
               if e.get("responseStatus", {}).get("code") in (401, 403)]  # fmt: skip
    assert not refused, "\n".join(refused[:20])
    # The record is not empty by accident: the passes' status writes of every kind are in it, answered 2xx.
    written = {e["objectRef"]["resource"] for e in asked if e["verb"] == "patch" and e.get("objectRef", {})
               .get("subresource") == "status" and 200 <= e["responseStatus"].get("code", 0) < 300}  # fmt: skip
    assert written >= {"trainingjobs", "modelversions", "rollouts", "driftmonitors"}, sorted(written)
    assert not failed, "\n".join(failed[:20])


def audit_lines(cluster: Any) -> int:
    """How many lines the apiserver's audit log has now (what a test's requests come after)."""
    path = Path(cluster.audit_log)
    return len(path.read_text().splitlines()) if path.exists() else 0


def audit_events(cluster: Any, start: int) -> list[dict[str, Any]]:
    """The audit log's events after its first `start` lines (the policy logs applications' ServiceAccounts)."""
    return [json.loads(line) for line in Path(cluster.audit_log).read_text().splitlines()[start:] if line.strip()]


def exercise(kubectl: Kubectl) -> None:
    """Every example kind, reconciled as far as the operator's own writes go."""
    kubectl.apply(EXAMPLES / "s3-credentials.yaml")
    # The hand-registered example first (its artifact does not exist), so training registers v2.
    kubectl.apply(EXAMPLES / "modelversion.yaml")
    wait_for("example ModelVersion reconciled", reconciled(kubectl, "modelversion", "cancer-rf-v1"))
    job = yaml.safe_load((EXAMPLES / "trainingjob-sklearn.yaml").read_text())
    job["spec"]["hyperparameters"] = {"n_estimators": 10, "max_depth": 3}
    kubectl.apply(yaml.safe_dump(job))
    st = wait_for("training", phase_is(kubectl, "cancer-rf-1", "Succeeded", "Failed"), timeout=240)
    assert st["phase"] == "Succeeded", st
    trained = st["modelVersionRef"]["name"]
    wait_for(
        "trained version Ready", lambda: kubectl.condition("modelversion", trained, "Ready").get("status") == "True"
    )

    # The Rollout serves the trained version: an InferenceService, and the in-use finalizer on the version.
    rollout = yaml.safe_load((EXAMPLES / "rollout.yaml").read_text())
    rollout["spec"]["modelVersionRef"]["name"] = trained
    kubectl.apply(yaml.safe_dump(rollout))
    kubectl.apply(EXAMPLES / "driftmonitor.yaml")
    wait_for("Rollout reconciled", reconciled(kubectl, "rollout", "cancer-rf"))
    wait_for("InferenceService created", lambda: kubectl.get("inferenceservice", "cancer-rf"))
    wait_for(
        "in-use finalizer",
        lambda: (
            "slipway.dev/in-use-protection"
            in ((kubectl.get("modelversion", trained) or {}).get("metadata", {}).get("finalizers") or [])
        ),
    )
    wait_for("DriftMonitor reconciled", reconciled(kubectl, "driftmonitor", "cancer-rf"))
    peering = kubectl.get("kopfpeering", "slipway") or {}
    assert peering, "the operator could not create its KopfPeering"
    assert peering.get("status") or {}, "Kopf's peering never wrote its presence"

    # Tidy up while the operator runs: the finalizer goes once nothing serves the version.
    kubectl("delete", "rollout", "cancer-rf", "--wait=false")
    wait_for(
        "finalizer released",
        lambda: not ((kubectl.get("modelversion", trained) or {}).get("metadata", {}).get("finalizers")),
    )


def test_two_replicas_of_the_chart_leave_exactly_one_active(
    helm: Helm, cluster: Any, namespaced_install: Install, tmp_path: Path
) -> None:
    """Both replicas with the environment the chart gives them (replicas: 2): Kopf peering pauses exactly one."""
    inst = namespaced_install
    rendered = helm(
        "template", inst.release, str(CHART), "--namespace", inst.namespace, "--set", "replicas=2",
        "--set", "watch.clusterWide=false", "--set", f"watch.namespaces={{{inst.watched}}}",
    ).stdout  # fmt: skip
    deploy = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment")
    env = {e["name"]: e["value"] for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
    env = {
        k: v for k, v in env.items() if k.startswith("SLIPWAY_") and k not in ("SLIPWAY_HTTP_HOST", "SLIPWAY_HTTP_PORT")
    }
    env.pop("SLIPWAY_DRIFT_URL", None)
    kubeconfig = token_kubeconfig(cluster, inst, tmp_path / "sa.kubeconfig")
    ops = [OperatorAs(cluster, tmp_path, kubeconfig, **env).start() for _ in range(2)]
    kubectl = Kubectl.of(cluster, inst.watched)
    try:
        # Both replicas present in Kopf's peering object, with the random priorities the chart leaves them:
        # by Kopf's rule (slipway.peering.is_active), exactly one of them is the active one.
        peers = wait_for("both replicas in the peering", lambda: live_peers(kubectl, env["SLIPWAY_PEERING"], 2))
        priorities = [int(p["priority"]) for p in peers.values()]
        now = datetime.now(UTC)
        assert sum(is_active(peers, priority, now) for priority in priorities) == 1, peers

        # And exactly one reconciles: each change of a ModelVersion's spec is handled by one replica alone.
        kubectl.apply(EXAMPLES / "modelversion.yaml")
        wait_for("example ModelVersion reconciled", reconciled(kubectl, "modelversion", "cancer-rf-v1"))
        changes = iter(range(1, 1000))

        def one_replica_reconciles() -> bool:
            before = [op.metric("slipway_reconcile_total", kind="ModelVersion") for op in ops]
            patch = {"spec": {"metrics": {"accuracy": 0.9 + next(changes) / 10000}}}
            kubectl("patch", "modelversion", "cancer-rf-v1", "--type=merge", "-p", json.dumps(patch))
            wait_for("the change reconciled", reconciled(kubectl, "modelversion", "cancer-rf-v1"))
            after = [op.metric("slipway_reconcile_total", kind="ModelVersion") for op in ops]
            return sum(a > b for a, b in zip(after, before, strict=True)) == 1

        # Kopf pauses the standby when it sees the other's keepalive: until then both may take a change.
        wait_for("the peering to pause the standby", one_replica_reconciles)
        assert all(one_replica_reconciles() for _ in range(3)), "both replicas reconcile"
        assert all(op.alive() for op in ops)
    finally:
        for op in ops:
            op.stop()


def live_peers(kubectl: Kubectl, name: str, count: int) -> dict[str, Any] | None:
    """The peering object's live peers (peer id: priority, lifetime, lastseen), once there are `count`."""
    status = (kubectl.get("kopfpeering", name) or {}).get("status") or {}
    now = datetime.now(UTC)
    live = {k: v for k, v in status.items() if isinstance(v, dict) and alive(v, now)}
    return live if len(live) == count else None
