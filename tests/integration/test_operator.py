"""The operator as a real process against the real apiserver: conditions, events, no needless writes, restarts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from slipway import api
from slipway_dev.kubectl import Kubectl

from tests.conftest import REPO, Operator, wait_for

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples"
KINDS = tuple(k.plural for k in api.KINDS)


def converged(kubectl: Kubectl, kind: str, name: str, reason: str) -> Callable[[], dict[str, Any] | None]:
    """True once status reflects the current generation with Ready's expected reason."""

    def check() -> dict[str, Any] | None:
        obj = kubectl.get(kind, name) or {}
        status = obj.get("status") or {}
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
        gen = obj.get("metadata", {}).get("generation")
        ok = status.get("observedGeneration") == gen and ready.get("reason") == reason
        return obj if ok else None

    return check


def resource_versions(kubectl: Kubectl) -> dict[str, str]:
    out = {}
    for kind in KINDS:
        for item in kubectl.json(kind)["items"]:
            out[f"{kind}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
    return out


def suspended(text: str) -> str:
    """An example TrainingJob that launches nothing: these tests are about conventions, not training."""
    doc = yaml.safe_load(text)
    doc["spec"].setdefault("runPolicy", {})["suspend"] = True
    return yaml.safe_dump(doc)


def apply_all(kubectl: Kubectl) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        text = path.read_text()
        kubectl.apply(suspended(text) if "kind: TrainingJob" in text else text)


def wait_all_converged(kubectl: Kubectl) -> None:
    for kind, name, reason in [
        ("trainingjobs", "cancer-rf-1", "Suspended"),
        ("trainingjobs", "digits-mlp-ddp", "Suspended"),
        ("modelversions", "cancer-rf-v1", "ArtifactNotFound"),
        ("rollouts", "cancer-rf", "ModelVersionNotReady"),
        ("driftmonitors", "cancer-rf", "WaitingForVersion"),
    ]:
        wait_for(f"{kind}/{name} Ready reason {reason}", converged(kubectl, kind, name, reason))


def test_each_kind_gets_conventional_status(kubectl: Kubectl, operator: Operator) -> None:
    apply_all(kubectl)
    wait_all_converged(kubectl)
    for kind in KINDS:
        for item in kubectl.json(kind)["items"]:
            status = item["status"]
            types = {c["type"]: c for c in status["conditions"]}
            assert {"Ready", "Reconciling", "Stalled"} <= types.keys(), (kind, types)
            for c in status["conditions"]:
                assert c["observedGeneration"] == item["metadata"]["generation"]
                assert c["lastTransitionTime"].endswith("Z") and c["reason"][0].isupper()
            # Kopf's own bookkeeping must not leak onto users' objects: GitOps would show drift.
            # The only finalizer is the one protecting a served ModelVersion.
            assert set(item["metadata"].get("finalizers") or []) <= {"slipway.dev/in-use-protection"}
            assert not [a for a in item["metadata"].get("annotations", {}) if "kopf" in a]
    mv = kubectl.get("modelversions", "cancer-rf-v1") or {}
    assert mv["status"]["headline"] == "accuracy=0.965"
    assert kubectl.condition("modelversions", "cancer-rf-v1", "GatesPassed")["status"] == "True"
    wait_for("servedBy", lambda: (kubectl.get("modelversions", "cancer-rf-v1") or {})["status"].get("servedBy"))
    assert kubectl.condition("driftmonitors", "cancer-rf", "DriftDetected")["status"] == "Unknown"
    served = kubectl.get("modelversions", "cancer-rf-v1") or {}
    assert served["metadata"]["finalizers"] == ["slipway.dev/in-use-protection"]


def test_invalid_spec_stalls_with_an_event(kubectl: Kubectl, operator: Operator) -> None:
    kubectl.apply(EXAMPLES / "s3-credentials.yaml")
    good = suspended((EXAMPLES / "trainingjob-sklearn.yaml").read_text())
    kubectl.apply(good.replace("sklearn.ensemble.RandomForestClassifier", "randomforest"))
    obj = wait_for("Stalled", converged(kubectl, "trainingjobs", "cancer-rf-1", "InvalidSpec"))
    stalled = kubectl.condition("trainingjobs", "cancer-rf-1", "Stalled")
    assert stalled["status"] == "True" and "not a Python class path" in stalled["message"]
    assert obj["spec"]["algorithm"] == "randomforest"  # the operator never rewrites a spec

    def warning() -> list[dict[str, Any]]:
        events = kubectl.json("events", "--field-selector", "involvedObject.name=cancer-rf-1")["items"]
        return [e for e in events if e["reason"] == "InvalidSpec" and e["type"] == "Warning"]

    wait_for("InvalidSpec event", warning)
    # Fixing the spec moves observedGeneration and clears Stalled.
    kubectl.apply(good)
    obj = wait_for("recovery", converged(kubectl, "trainingjobs", "cancer-rf-1", "Suspended"))
    assert obj["status"]["observedGeneration"] == 2
    assert kubectl.condition("trainingjobs", "cancer-rf-1", "Stalled")["status"] == "False"


def test_missing_secret_is_reported_not_fatal(kubectl: Kubectl, operator: Operator) -> None:
    kubectl.apply(EXAMPLES / "trainingjob-sklearn.yaml")  # its Secret is not applied
    wait_for("SecretNotFound", converged(kubectl, "trainingjobs", "cancer-rf-1", "SecretNotFound"))
    assert "'s3-credentials'" in kubectl.condition("trainingjobs", "cancer-rf-1", "Ready")["message"]


def quiet(operator: Operator, objects: int) -> None:
    """Wait until two full resync rounds pass without a status patch: the operator has converged."""
    state = {"patches": -1.0, "passes": 0.0}

    def settled() -> bool:
        patches, passes = operator.metric("slipway_status_patches_total"), operator.metric("slipway_reconcile_total")
        if patches != state["patches"]:
            state.update(patches=patches, passes=passes)
            return False
        return passes >= state["passes"] + 2 * objects

    wait_for("a quiet operator", settled)


def test_nothing_is_written_when_nothing_changed(kubectl: Kubectl, operator_factory: Callable[..., Operator]) -> None:
    # The resync is what this test exercises (its default is an hour): every 2 s here.
    operator = operator_factory(SLIPWAY_RESYNC_SECONDS="2")
    apply_all(kubectl)
    wait_all_converged(kubectl)
    quiet(operator, len(resource_versions(kubectl)))
    before = resource_versions(kubectl)
    passes = operator.metric("slipway_reconcile_total", outcome="ok")
    # Several resync periods (2 s here) go by: every object is reconciled again, none is patched.
    wait_for(
        "resync passes", lambda: operator.metric("slipway_reconcile_total", outcome="ok") >= passes + 3 * len(before)
    )
    assert resource_versions(kubectl) == before


def test_restarted_operator_converges_and_changes_nothing(
    kubectl: Kubectl, operator_factory: Callable[..., Operator]
) -> None:
    # Both watch only this test's namespace: a cluster-wide operator also finishes deleting earlier tests'
    # namespaces (objects with finalizers wait for an operator), and its status-patch counter then counts those
    # writes too (CI saw one such patch, in a namespace this test does not look at).
    own = {"SLIPWAY_NAMESPACES": kubectl.namespace}
    first = operator_factory(SLIPWAY_RESYNC_SECONDS="2", **own)  # quiet() counts resync rounds
    apply_all(kubectl)
    wait_all_converged(kubectl)
    quiet(first, len(resource_versions(kubectl)))
    first.stop(kill=True)  # no graceful shutdown: state must come from the API alone
    before = resource_versions(kubectl)
    second = operator_factory(SLIPWAY_RESYNC_SECONDS="60", **own)
    wait_for("initial pass", lambda: second.metric("slipway_reconcile_total", outcome="ok") >= len(before))
    assert resource_versions(kubectl) == before
    assert second.metric("slipway_status_patches_total") == 0


def test_changes_made_while_the_operator_is_down_are_picked_up(
    kubectl: Kubectl, operator_factory: Callable[..., Operator]
) -> None:
    first = operator_factory()
    kubectl.apply(EXAMPLES / "s3-credentials.yaml")
    kubectl.apply(suspended((EXAMPLES / "trainingjob-sklearn.yaml").read_text()))
    wait_for("Suspended", converged(kubectl, "trainingjobs", "cancer-rf-1", "Suspended"))
    first.stop()
    kubectl("patch", "trainingjob", "cancer-rf-1", "--type=merge", "-p", '{"spec":{"algorithm":"nope"}}')
    operator_factory()
    obj = wait_for("InvalidSpec", converged(kubectl, "trainingjobs", "cancer-rf-1", "InvalidSpec"))
    assert obj["status"]["observedGeneration"] == 2


def test_health_and_metrics_endpoints(kubectl: Kubectl, operator: Operator) -> None:
    kubectl.apply(EXAMPLES / "s3-credentials.yaml")
    kubectl.apply(EXAMPLES / "modelversion.yaml")
    wait_for("reconcile", converged(kubectl, "modelversions", "cancer-rf-v1", "ArtifactNotFound"))
    assert operator.http("/healthz") == "ok"
    metrics = operator.http("/metrics") or ""
    assert 'slipway_reconcile_total{kind="ModelVersion",outcome="ok"}' in metrics
    assert "slipway_reconcile_duration_seconds_bucket" in metrics


def test_operator_survives_garbage_it_cannot_parse(kubectl: Kubectl, operator: Operator) -> None:
    # Status written by someone else, in a shape the models reject, must not crash the operator.
    kubectl.apply(EXAMPLES / "s3-credentials.yaml")
    kubectl.apply(EXAMPLES / "modelversion.yaml")
    wait_for("reconcile", converged(kubectl, "modelversions", "cancer-rf-v1", "ArtifactNotFound"))
    kubectl("patch", "modelversion", "cancer-rf-v1", "--subresource=status", "--type=merge",
            "-p", '{"status":{"servedBy":["x"],"headline":"junk"}}')  # fmt: skip
    wait_for("headline restored", lambda: operator.alive() and (kubectl.get("modelversions", "cancer-rf-v1") or {})
             ["status"].get("headline") == "accuracy=0.965")  # fmt: skip


def test_a_paused_replica_stops_its_own_timers(kubectl: Kubectl, operator_factory: Callable[..., Operator]) -> None:
    """Kopf pauses the lower-priority replica's watches; the requeue timers it scheduled before must stop too,
    or two replicas would go on reconciling the same objects."""
    # Counted in resync passes (the default resync is an hour): every 2 s here.
    first = operator_factory(SLIPWAY_PRIORITY="1", SLIPWAY_RESYNC_SECONDS="2")
    apply_all(kubectl)
    wait_all_converged(kubectl)
    second = operator_factory(SLIPWAY_PRIORITY="2", SLIPWAY_RESYNC_SECONDS="2")
    objects = len(resource_versions(kubectl))  # each is reconciled at least every resync (2 s) by the active one

    def passes(op: Operator) -> float:
        op.alive()
        assert op.http("/metrics") is not None, f"{op.log_path.name}: /metrics does not answer"
        return op.metric("slipway_reconcile_total")

    # Counted in the second replica's passes, not in seconds: a timer already running when the pause came may
    # finish its pass, so the first has paused once its count stood still over a whole round of the second's.
    seen = {"first": -1.0, "second": 0.0}

    def first_stood_still() -> bool:
        first_now, second_now = passes(first), passes(second)
        if first_now != seen["first"]:
            seen.update(first=first_now, second=second_now)
            return False
        return second_now >= seen["second"] + objects

    wait_for("the first replica to pause", first_stood_still)
    before, second_before = passes(first), passes(second)
    wait_for("four rounds of the second replica", lambda: passes(second) >= second_before + 4 * objects)
    assert passes(first) == before
