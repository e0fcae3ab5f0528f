"""Rollouts end to end: real predictor processes behind a real data plane and a real Prometheus scraping them, the
operator judging a good and a deliberately bad version on concurrent traffic. Both modes run on the real
serving stack (KServe's controller and webhooks, KServe's storage initializer): Standard mode behind Traefik on the
Gateway API, Serverless mode on Knative Serving behind Traefik's Knative provider and kube-proxy."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from sklearn.datasets import load_breast_cancer
from slipway_dev.kubectl import Kubectl
from slipway_dev.loadgen import Load

from tests.conftest import REPO, Operator, wait_for
from tests.integration.test_training import phase_is

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples"
SERVE_TIMEOUT = 180.0


@dataclass
class Stack:
    """Where a deployment mode is served: its cluster, a namespace there, operators against it."""

    mode: str
    cluster: Any
    kubectl: Kubectl
    operators: Callable[..., Operator]

    def load(self, rows: list[list[float]], rps: float) -> Load:
        # Through Traefik, to the host of the InferenceService's status.url, as a client would.
        url = ((self.kubectl.get("inferenceservice", "cancer-rf") or {}).get("status") or {})["url"]
        host = urllib.parse.urlsplit(url).netloc
        entry = self.cluster.knative_url if self.mode == "Serverless" else self.cluster.ingress_url
        return Load(entry, "cancer-rf", self.kubectl.namespace, rows, rps=rps, host=host)


@pytest.fixture(params=["Standard", "Serverless"])
def stack(request: pytest.FixtureRequest, s3: Any) -> Stack:
    cluster = request.getfixturevalue("serving_cluster")
    kubectl = request.getfixturevalue("serving_kubectl")
    operators = request.getfixturevalue("serving_operator_factory")
    kubectl.apply(EXAMPLES / "s3-credentials.yaml")
    kubectl.apply(REPO / "runtimes" / "predictor" / "servingruntime.yaml")
    return Stack(request.param, cluster, kubectl, operators)


def train(kubectl: Kubectl, name: str, seed: int) -> str:
    doc = yaml.safe_load((EXAMPLES / "trainingjob-sklearn.yaml").read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["seed"] = seed
    doc["spec"]["hyperparameters"] = {"n_estimators": 20, "max_depth": 4}
    kubectl.apply(yaml.safe_dump(doc))
    st = wait_for("training", phase_is(kubectl, name, "Succeeded", "Failed"), timeout=240)
    assert st["phase"] == "Succeeded", st
    mv = st["modelVersionRef"]["name"]
    wait_for("Ready", lambda: kubectl.condition("modelversion", mv, "Ready").get("status") == "True")
    return str(mv)


def faulty(kubectl: Kubectl, s3_server: Any, base: str, name: str, version: int, fail_fraction: float) -> str:
    """A hand-registered ModelVersion whose artifact fails on part of its inputs."""
    good = kubectl.get("modelversion", base) or {}
    src = good["spec"]["artifact"]["uri"]
    dst = src.rsplit("/", 1)[0] + f"/flaky-{fail_fraction}.joblib"
    out = subprocess.run(
        [sys.executable, "-m", "slipway_predictor.faults", "flaky", "--fail-fraction", str(fail_fraction), src, dst],
        capture_output=True, text=True, check=True, env={**__import__("os").environ, **s3_server.env()},
    )  # fmt: skip
    art = json.loads(out.stdout)
    spec = json.loads(json.dumps(good["spec"]))
    spec["version"] = version
    spec["artifact"] |= {"uri": art["uri"], "sha256": art["sha256"], "sizeBytes": art.get("sizeBytes")}
    spec["lineage"] = {"algorithm": "FlakyModel over " + base}
    doc = {"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name}, "spec": spec}
    kubectl.apply(yaml.safe_dump(doc))
    wait_for("Ready", lambda: kubectl.condition("modelversion", name, "Ready").get("status") == "True")
    return name


def rollout_doc(target: str, prometheus: str, steps: list[dict[str, Any]], mode: str = "Standard") -> str:
    doc = yaml.safe_load((EXAMPLES / "rollout.yaml").read_text())
    doc["spec"]["modelVersionRef"]["name"] = target
    doc["spec"]["inferenceService"]["deploymentMode"] = mode
    doc["spec"]["inferenceService"]["predictor"]["protocolVersion"] = "v1"
    doc["spec"]["canary"]["steps"] = steps
    doc["spec"]["canary"]["analysis"] |= {"prometheus": {"address": prometheus}, "intervalSeconds": 2,
                                          "minRequests": 20, "latency": {"enabled": False},
                                          # These tests walk the steps, not the statistics: a 20-point margin
                                          # proves a healthy canary within a few dozen requests.
                                          "errorRate": {"margin": 0.2}}  # fmt: skip
    return yaml.safe_dump(doc)


def rollout_status(kubectl: Kubectl) -> dict[str, Any]:
    return (kubectl.get("rollout", "cancer-rf") or {}).get("status") or {}


def last_verdict(st: dict[str, Any]) -> dict[str, Any]:
    """The decision that ended the latest canary. Not simply the last one: in Serverless mode a rollback is
    followed by Pinned and Restored as Knative's revisions follow, which a status read a moment later shows."""
    ends = [d for d in st["decisions"] if d["action"] in ("Rollback", "Abort", "Promote")]
    assert ends, st["decisions"]
    return ends[-1]


def test_bad_canary_is_rolled_back_and_good_one_promoted(stack: Stack, s3_server: Any) -> None:
    serving, mode, operator = stack.kubectl, stack.mode, stack.operators()
    v1 = train(serving, "train-1", seed=1)
    prom = stack.cluster.prometheus_url
    steps = [{"weight": 10, "holdSeconds": 20}, {"weight": 50, "holdSeconds": 10}]
    serving.apply(rollout_doc(v1, prom, steps, mode))
    wait_for("serving v1", lambda: serving.condition("rollout", "cancer-rf", "Ready").get("status") == "True",
             timeout=SERVE_TIMEOUT)  # fmt: skip
    bad = faulty(serving, s3_server, v1, "cancer-rf-v90", 90, 0.3)
    rows = load_breast_cancer().data.tolist()
    with stack.load(rows, rps=25) as load:
        serving.apply(rollout_doc(bad, prom, steps, mode))
        st = wait_for("rollback", lambda: rollout_status(serving).get("phase") == "RolledBack" and rollout_status(
            serving), timeout=SERVE_TIMEOUT)  # fmt: skip
        decision = last_verdict(st)
        assert decision["action"] == "Rollback" and decision["verdict"] == "Regressed"
        evidence = next(e for e in decision["evidence"] if e["metric"] == "errorRate")
        assert evidence["canary"]["value"] > evidence["stable"]["value"] and evidence["pValue"] <= 0.05
        assert st["stableVersion"] == v1 and st["canaryWeight"] == 0
        wait_for("the canary gone from the InferenceService", lambda: canary_percent(serving) is None)

        # Asked to, the rolled-back version is canaried again, and rolled back again: it still fails.
        serving("annotate", "rollout", "cancer-rf", "slipway.dev/retry=1")

        def rolled_back_twice() -> dict[str, Any] | None:
            st = rollout_status(serving)
            return st if [d["action"] for d in st.get("decisions", [])].count("Rollback") == 2 else None

        st = wait_for("the retried canary rolled back again", rolled_back_twice, timeout=SERVE_TIMEOUT)
        actions = [d["action"] for d in st["decisions"]]
        first = actions.index("Rollback")
        if mode == "Serverless":
            # Knative keeps traffic on the bad revision until a restored one is ready: all of it goes to the
            # rolled-out revision first (Pinned), then stable's spec is restored (Restored).
            assert actions[first + 1 : first + 3] == ["Pinned", "Restored"], actions
            actions = [a for a in actions if a not in ("Pinned", "Restored")]
        assert actions[first + 1 : first + 3] == ["Retry", "CanaryStarted"], actions
        assert st["stableVersion"] == v1 and st["rolledBackVersion"] == bad and st["retryToken"] == "1"

        url = isvc_url(serving)
        v2 = train(serving, "train-2", seed=2)
        serving.apply(rollout_doc(v2, prom, steps, mode))
        st = wait_for("promotion", lambda: rollout_status(serving).get("stableVersion") == v2 and rollout_status(
            serving), timeout=SERVE_TIMEOUT)  # fmt: skip
        actions = [d["action"] for d in st["decisions"]]
        assert actions[-1] == "Promote" and "Advance" in actions
        assert isvc_url(serving) == url, "clients keep the InferenceService's URL across promotions"
    assert load.codes().get(200, 0) > 100, load.codes()
    assert operator.metric("slipway_rollout_rollbacks_total", rollout="cancer-rf") == 2
    assert operator.metric("slipway_rollout_verdicts_total", verdict="Regressed") >= 1
    assert operator.metric("slipway_rollout_canary_weight", rollout="cancer-rf") == 0


def slow(kubectl: Kubectl, s3_server: Any, base: str, name: str, version: int, delay: float) -> str:
    """A hand-registered ModelVersion whose artifact answers `delay` seconds late."""
    good = kubectl.get("modelversion", base) or {}
    src = good["spec"]["artifact"]["uri"]
    dst = src.rsplit("/", 1)[0] + f"/slow-{delay}.joblib"
    argv = [sys.executable, "-m", "slipway_predictor.faults", "slow", "--delay-seconds", str(delay), src, dst]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env={**os.environ, **s3_server.env()})
    return copy_version(kubectl, good, name, version, json.loads(out.stdout))


def copy_version(kubectl: Kubectl, good: dict[str, Any], name: str, version: int, art: dict[str, Any] | None) -> str:
    spec = json.loads(json.dumps(good["spec"]))
    spec["version"] = version
    if art:
        spec["artifact"] |= {"uri": art["uri"], "sha256": art["sha256"], "sizeBytes": art.get("sizeBytes")}
    doc = {"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name}, "spec": spec}
    kubectl.apply(yaml.safe_dump(doc))
    wait_for("Ready", lambda: kubectl.condition("modelversion", name, "Ready").get("status") == "True")
    return name


def copy_artifact(s3: Any, good: dict[str, Any], name: str) -> dict[str, Any]:
    """The same model under a key of its own: KServe refuses to rename a Standard-mode predictor (promotion)
    without a change of storageUri, and two ModelVersions are two artifacts in a registry anyway."""
    art = good["spec"]["artifact"]
    bucket, key = art["uri"].removeprefix("s3://").split("/", 1)
    new_key = key.rsplit("/", 1)[0] + f"/{name}.joblib"
    s3.copy_object(Bucket=bucket, Key=new_key, CopySource={"Bucket": bucket, "Key": key})
    return {"uri": f"s3://{bucket}/{new_key}", "sha256": art["sha256"], "sizeBytes": art.get("sizeBytes")}


def isvc_url(kubectl: Kubectl) -> str:
    return str(((kubectl.get("inferenceservice", "cancer-rf") or {}).get("status") or {}).get("url"))


def canary_percent(kubectl: Kubectl) -> int | None:
    """The canary's share as the InferenceService spec says it, in either deployment mode."""
    spec = (kubectl.get("inferenceservice", "cancer-rf") or {}).get("spec") or {}
    if "canary" in spec:
        return (spec["canary"] or [{}])[0].get("trafficPercent")
    return (spec.get("predictor") or {}).get("canaryTrafficPercent")


def test_manual_gate_restart_retarget_abort_and_a_slow_version(stack: Stack, s3_server: Any, s3: Any) -> None:
    serving, mode, operator_factory = stack.kubectl, stack.mode, stack.operators
    first = operator_factory()
    v1 = train(serving, "train-1", seed=1)
    good = serving.get("modelversion", v1) or {}
    prom = stack.cluster.prometheus_url
    serving.apply(rollout_doc(v1, prom, [{"weight": 20, "manualGate": True}], mode))
    wait_for("serving v1", lambda: serving.condition("rollout", "cancer-rf", "Ready").get("status") == "True",
             timeout=SERVE_TIMEOUT)  # fmt: skip
    rows = load_breast_cancer().data.tolist()
    with stack.load(rows, rps=25):
        # A manual gate holds the canary at 20 %, across an operator crash.
        v2 = copy_version(serving, good, "cancer-rf-v2", 2, copy_artifact(s3, good, "cancer-rf-v2"))
        serving.apply(rollout_doc(v2, prom, [{"weight": 20, "manualGate": True}], mode))
        wait_for("paused at the gate", lambda: rollout_status(serving).get("phase") == "Paused", timeout=SERVE_TIMEOUT)
        assert canary_percent(serving) == 20
        first.stop(kill=True)
        second = operator_factory()
        # Passes of the new operator, not seconds: killed, the first stays in the peering for a while, and a
        # second of lower priority reconciles nothing until it is gone.
        wait_for("the restarted operator to reconcile the Rollout",
                 lambda: second.alive() and second.metric("slipway_reconcile_total", kind="Rollout", outcome="ok") >= 3,
                 timeout=SERVE_TIMEOUT)  # fmt: skip
        st = rollout_status(serving)
        assert st["phase"] == "Paused" and st["currentStep"] == 0 and st["canaryVersion"] == v2
        assert canary_percent(serving) == 20
        serving("annotate", "rollout", "cancer-rf", "slipway.dev/promote=1")
        # Standard mode: all requests to the canary, KServe ready at 100 %, stable drained, then promotion.
        wait_for("promotion", lambda: rollout_status(serving).get("stableVersion") == v2, timeout=SERVE_TIMEOUT)

        # Changing the target mid-rollout starts over from the stable version; abort rolls back by hand.
        steps = [{"weight": 30, "holdSeconds": 600}]
        v3 = copy_version(serving, good, "cancer-rf-v3", 3, copy_artifact(s3, good, "cancer-rf-v3"))
        serving.apply(rollout_doc(v3, prom, steps, mode))
        wait_for("canary v3", lambda: rollout_status(serving).get("canaryVersion") == v3)
        v4 = copy_version(serving, good, "cancer-rf-v4", 4, copy_artifact(s3, good, "cancer-rf-v4"))
        serving.apply(rollout_doc(v4, prom, steps, mode))
        st = wait_for(
            "retarget", lambda: rollout_status(serving).get("canaryVersion") == v4 and rollout_status(serving)
        )
        actions = [d["action"] for d in st["decisions"]]
        retarget = len(actions) - 1 - actions[::-1].index("Retarget")
        assert actions[retarget + 1] == "CanaryStarted" and v4 in st["decisions"][retarget + 1]["message"]
        assert st["stableVersion"] == v2 and canary_percent(serving) == 30
        serving("annotate", "rollout", "cancer-rf", "slipway.dev/abort=now")
        st = wait_for("abort", lambda: rollout_status(serving).get("phase") == "Aborted" and rollout_status(serving))
        assert st["rolledBackVersion"] == v4
        # Standard mode: off the route at once, out of the InferenceService once drained (scaleDownDelaySeconds).
        wait_for("the aborted canary gone from the InferenceService", lambda: canary_percent(serving) is None)

        # A version that answers slowly is rolled back on latency.
        doc = yaml.safe_load(rollout_doc(slow(serving, s3_server, v1, "cancer-rf-v5", 5, 0.3), prom, steps, mode))
        doc["spec"]["canary"]["analysis"]["latency"] = {"enabled": True, "quantile": 0.9, "maxRatio": 1.5,
                                                        "minSamples": 20}  # fmt: skip
        serving.apply(yaml.safe_dump(doc))
        st = wait_for("latency rollback", lambda: rollout_status(serving).get("rolledBackVersion") == "cancer-rf-v5"
                      and rollout_status(serving), timeout=SERVE_TIMEOUT)  # fmt: skip
        decision = last_verdict(st)
        assert decision["action"] == "Rollback", decision
        latency = next(e for e in decision["evidence"] if e["metric"].startswith("latency"))
        assert latency["verdict"] == "Regressed" and latency["effect"] > 1.5
        assert second.metric("slipway_rollout_rollbacks_total", rollout="cancer-rf") >= 1


def test_a_canary_that_never_becomes_ready_is_rolled_back_and_never_takes_traffic(stack: Stack, s3: Any) -> None:
    serving, mode = stack.kubectl, stack.mode
    stack.operators()
    v1 = train(serving, "train-1", seed=1)
    prom = stack.cluster.prometheus_url
    serving.apply(rollout_doc(v1, prom, [{"weight": 50, "holdSeconds": 5}], mode))
    wait_for("serving v1", lambda: serving.condition("rollout", "cancer-rf", "Ready").get("status") == "True",
             timeout=SERVE_TIMEOUT)  # fmt: skip
    # An artifact whose checksum is right but which no predictor can load: the canary's pod never gets ready.
    good = serving.get("modelversion", v1) or {}
    bucket, key = good["spec"]["artifact"]["uri"].removeprefix("s3://").split("/", 1)
    junk = b"not a model"
    broken_key = key.rsplit("/", 1)[0] + "/broken.joblib"
    s3.put_object(Bucket=bucket, Key=broken_key, Body=junk)
    art = {"uri": f"s3://{bucket}/{broken_key}", "sha256": hashlib.sha256(junk).hexdigest(), "sizeBytes": len(junk)}
    broken = copy_version(serving, good, "cancer-rf-v9", 9, art)
    doc = yaml.safe_load(rollout_doc(broken, prom, [{"weight": 50, "holdSeconds": 5}], mode))
    doc["spec"]["canary"]["progressDeadlineSeconds"] = 30
    with stack.load(load_breast_cancer().data.tolist(), rps=10) as load:
        serving.apply(yaml.safe_dump(doc))
        st = wait_for("rollback of the canary that never got ready",
                      lambda: rollout_status(serving).get("rolledBackVersion") == broken and rollout_status(serving),
                      timeout=SERVE_TIMEOUT)  # fmt: skip
    assert st["stableVersion"] == v1 and st["canaryWeight"] == 0
    assert "Promote" not in [d["action"] for d in st["decisions"] if broken in d.get("message", "")]
    assert set(load.versions()) == {v1}, load.versions()  # not one request reached the broken canary
    assert load.codes().get(200, 0) == sum(load.codes().values()), load.codes()
    if mode == "Serverless":
        return  # Knative's latestRevision never named the broken revision: it was never ready
    route = serving.get("httproute", "cancer-rf") or {}
    backends = [b["name"] for rule in route["spec"]["rules"] for b in rule.get("backendRefs") or []]
    assert all(broken not in b for b in backends), backends


FIT_FOR_KSERVE = """
import io, sys, joblib
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
x, y = load_breast_cancer(return_X_y=True)
model = LogisticRegression(C=float(sys.argv[1]), max_iter=5000).fit(x, y)
buf = io.BytesIO()
joblib.dump(model, buf)
sys.stdout.buffer.write(buf.getvalue())
"""


def kserve_sklearn_version(kubectl: Kubectl, s3: Any, name: str, version: int, c: float) -> str:
    """A ModelVersion made for KServe's own sklearn runtime: fitted with the scikit-learn that runtime ships
    (its venv), since a pickle only loads in the version that wrote it."""
    from slipway_dev.localexec.images import default_kserve_venv

    blob = subprocess.run([str(default_kserve_venv() / "bin" / "python"), "-c", FIT_FOR_KSERVE, str(c)],
                          capture_output=True, check=True).stdout  # fmt: skip
    key = f"{kubectl.namespace}/{name}/model.joblib"
    s3.put_object(Bucket="models", Key=key, Body=blob)
    spec = {
        "modelName": "cancer-lr", "version": version, "framework": "sklearn",
        "artifact": {"uri": f"s3://models/{key}", "format": "joblib", "sha256": hashlib.sha256(blob).hexdigest(),
                     "credentialsSecretRef": {"name": "s3-credentials"}},
    }  # fmt: skip
    doc = {"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name}, "spec": spec}
    kubectl.apply(yaml.safe_dump(doc))
    wait_for("Ready", lambda: kubectl.condition("modelversion", name, "Ready").get("status") == "True")
    return name


@pytest.mark.parametrize("stack", ["Standard"], indirect=True)  # the data plane's metrics: Traefik's Gateway
def test_a_version_served_by_kserves_own_sklearn_runtime_is_canaried_on_the_gateways_metrics(
    stack: Stack, s3: Any
) -> None:
    serving = stack.kubectl
    stack.operators()
    v1 = kserve_sklearn_version(serving, s3, "cancer-lr-v1", 1, c=1.0)
    v2 = kserve_sklearn_version(serving, s3, "cancer-lr-v2", 2, c=0.5)

    def doc(target: str) -> str:
        d = yaml.safe_load(rollout_doc(target, stack.cluster.prometheus_url, [{"weight": 50, "holdSeconds": 10}]))
        d["spec"]["inferenceService"]["predictor"] |= {"runtime": "kserve-sklearnserver", "modelFormat": "sklearn"}
        d["spec"]["canary"]["analysis"]["source"] = "traefik"
        return yaml.safe_dump(d)

    serving.apply(doc(v1))
    wait_for("serving v1", lambda: serving.condition("rollout", "cancer-rf", "Ready").get("status") == "True",
             timeout=SERVE_TIMEOUT)  # fmt: skip
    pod = serving.json("pods", "-l", "serving.kserve.io/inferenceservice=cancer-rf")["items"][0]
    assert any("sklearnserver" in c["image"] for c in pod["spec"]["containers"]), pod["spec"]["containers"]
    with stack.load(load_breast_cancer().data.tolist(), rps=25) as load:
        serving.apply(doc(v2))
        st = wait_for("promotion", lambda: rollout_status(serving).get("stableVersion") == v2 and rollout_status(
            serving), timeout=SERVE_TIMEOUT)  # fmt: skip
    healthy = [d for d in st["decisions"] if d.get("verdict") == "Healthy"]
    assert healthy, st["decisions"]
    error = next(e for e in healthy[-1]["evidence"] if e["metric"] == "errorRate")
    # Counted by Traefik per predictor Service: KServe's sklearn server reports no version-labelled metrics.
    assert error["canary"]["samples"] >= 20 and error["stable"]["samples"] >= 20, error
    assert load.codes().get(200, 0) == sum(load.codes().values()), load.codes()
