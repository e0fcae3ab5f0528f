"""Rollout decide(): the step state machine with an injected clock, and the InferenceService it asks for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slipway.analysis import Outcome
from slipway.api import Rollout
from slipway.config import Settings
from slipway.controllers import rollout_isvc as isvc
from slipway.controllers.base import Apply, Result
from slipway.controllers.rollout import Observed, RolloutController, version_of

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CTRL = RolloutController(Settings(s3_endpoint="http://s3.local:9000"))
STEPS = [{"weight": 10, "holdSeconds": 60}, {"weight": 50, "holdSeconds": 60}]
ANALYSIS = {"prometheus": {"address": "http://prom:9090"}, "intervalSeconds": 5, "maxHoldSeconds": 120}


def mv(name: str, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {
            "modelName": "m", "version": int(name.rsplit("v", 1)[1]), "framework": "sklearn",
            "artifact": {"uri": f"s3://models/{name}/model.joblib", "sha256": "a" * 64, "format": "joblib",
                         "credentialsSecretRef": {"name": "s3"}},
            "signature": {"inputs": [{"name": "x", "dtype": "float64"}]},
        },
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False", "message": "m"}]},
    }  # fmt: skip


def rollout(
    target: str,
    status: dict[str, Any] | None = None,
    mode: str = "Standard",
    analysis: bool = True,
    annotations: dict[str, str] | None = None,
    steps: list[dict[str, Any]] | None = None,
) -> Rollout:
    canary: dict[str, Any] = {"steps": steps or STEPS}
    if analysis:
        canary["analysis"] = ANALYSIS
    meta = {"name": "r", "namespace": "ns", "uid": "u1", "annotations": annotations or {}}
    spec = {"modelVersionRef": {"name": target}, "inferenceService": {"deploymentMode": mode}, "canary": canary}
    return Rollout.model_validate({"metadata": meta, "spec": spec, "status": status})  # fmt: skip


READY_ISVC = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}, "spec": {}}


def decide(
    r: Rollout,
    target: str,
    now: datetime = T0,
    stable: str | None = None,
    outcome: Outcome | None = None,
    isvc_obj: dict[str, Any] | None = READY_ISVC,
) -> Result:
    return CTRL.decide(r, Observed(mv(target), mv(stable) if stable else None, isvc_obj, outcome), now)  # fmt: skip


def conds(result: Result) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in result.conditions}


def applied(result: Result) -> dict[str, Any]:
    [a] = [a for a in result.actions if isinstance(a, Apply)]
    return a.manifest


def progressing(step: int = 0, weight: int = 10, started: datetime = T0, **extra: Any) -> dict[str, Any]:
    return {"stableVersion": "m-v1", "canaryVersion": "m-v2", "currentStep": step, "canaryWeight": weight,
            "phase": "Progressing", "canaryStartedAt": "2026-03-01T12:00:00Z",
            "stepStartedAt": started.strftime("%Y-%m-%dT%H:%M:%SZ"), **extra}  # fmt: skip


HEALTHY = Outcome("Healthy", [{"metric": "errorRate", "verdict": "Healthy"}], "fine")
REGRESSED = Outcome("Regressed", [{"metric": "errorRate", "verdict": "Regressed", "pValue": 0.001}], "errors up")
INCONCLUSIVE = Outcome("Inconclusive", [], "not enough requests")


def test_first_version_is_deployed_without_a_canary() -> None:
    r = decide(rollout("m-v1"), "m-v1", isvc_obj=None)
    assert r.fields["stableVersion"] == "m-v1" and r.fields["phase"] == "Promoted"
    assert conds(r)["Ready"] == ("False", "Deploying")
    spec = applied(r)["spec"]
    assert spec["predictor"]["name"] == "m-v1" and "canary" not in spec
    assert [d["action"] for d in r.fields["decisions"]] == ["Deploy"]


def test_steady_state_is_ready_and_writes_nothing_when_the_service_matches() -> None:
    status = {"stableVersion": "m-v1", "phase": "Promoted"}
    desired = isvc.inference_service(rollout("m-v1"), version_of(mv("m-v1")), None, 0, CTRL.settings)
    observed = {**desired, "status": READY_ISVC["status"]}
    r = decide(rollout("m-v1", status), "m-v1", stable="m-v1", isvc_obj=observed)
    assert conds(r)["Ready"] == ("True", "Serving") and conds(r)["Promoted"][0] == "True"
    assert r.actions == []


def test_new_target_starts_a_canary_at_the_first_weight() -> None:
    r = decide(rollout("m-v2", {"stableVersion": "m-v1", "phase": "Promoted"}), "m-v2", stable="m-v1")
    assert r.fields["canaryVersion"] == "m-v2" and r.fields["canaryWeight"] == 10 and r.fields["currentStep"] == 0
    spec = applied(r)["spec"]
    assert spec["predictor"]["name"] == "m-v1"
    assert spec["canary"] == [{"predictor": spec["canary"][0]["predictor"], "trafficPercent": 10}]
    assert spec["canary"][0]["predictor"]["name"] == "m-v2"
    assert conds(r)["Progressing"][0] == "True" and "CanaryStarted" in [e.reason for e in r.events]


def test_serverless_canary_uses_canary_traffic_percent() -> None:
    r = decide(rollout("m-v2", {"stableVersion": "m-v1"}, mode="Serverless"), "m-v2", stable="m-v1")
    spec = applied(r)["spec"]
    assert spec["predictor"]["name"] == "m-v2" and spec["predictor"]["canaryTrafficPercent"] == 10
    assert "canary" not in spec
    assert applied(r)["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Serverless"}


def test_target_not_ready_waits() -> None:
    r = CTRL.decide(rollout("m-v2", {"stableVersion": "m-v1"}), Observed(mv("m-v2", ready=False), mv("m-v1")), T0)
    assert conds(r)["Ready"] == ("False", "ModelVersionNotReady") and "canaryVersion" not in r.fields


@pytest.mark.parametrize(
    ("elapsed", "verdict", "expected_step", "reason"),
    [
        (30, "Healthy", 0, "CanaryProgressing"),  # still holding
        (61, "Healthy", 1, "CanaryProgressing"),  # hold done, healthy: advance
        (61, "Inconclusive", 0, "CanaryProgressing"),  # hold done, no evidence: keep holding
        (61 + 120, "Inconclusive", 0, "Paused"),  # past maxHoldSeconds with onNoData=hold
    ],
)
def test_step_progression(elapsed: int, verdict: str, expected_step: int, reason: str) -> None:
    status = progressing(lastVerdict=verdict)
    r = decide(rollout("m-v2", status), "m-v2", T0 + timedelta(seconds=elapsed), stable="m-v1")
    assert r.fields.get("currentStep", 0) == expected_step and conds(r)["Ready"] == ("False", reason)
    assert r.requeue_after is not None and r.requeue_after <= 30


def test_no_data_rollback_when_asked() -> None:
    r = rollout("m-v2", progressing(lastVerdict="Inconclusive"))
    r.spec.canary.analysis.on_no_data = "rollback"  # type: ignore[union-attr]
    res = decide(r, "m-v2", T0 + timedelta(seconds=200), stable="m-v1")
    assert res.fields["rolledBackVersion"] == "m-v2" and conds(res)["Stalled"] == ("True", "RolledBack")


def test_last_step_promotes() -> None:
    status = progressing(step=1, weight=50, lastVerdict="Healthy")
    r = decide(rollout("m-v2", status), "m-v2", T0 + timedelta(seconds=61), stable="m-v1")
    assert r.fields["stableVersion"] == "m-v2" and r.fields["canaryVersion"] is None and r.fields["phase"] == "Promoted"
    spec = applied(r)["spec"]
    assert spec["predictor"]["name"] == "m-v2" and "canary" not in spec
    assert conds(r)["Promoted"][0] == "True" and r.fields["decisions"][-1]["action"] == "Promote"


def test_regression_rolls_back_in_the_same_pass_with_evidence() -> None:
    r = decide(rollout("m-v2", progressing()), "m-v2", T0 + timedelta(seconds=5), stable="m-v1", outcome=REGRESSED)
    assert r.fields["rolledBackVersion"] == "m-v2" and r.fields["canaryVersion"] is None
    assert r.fields["canaryWeight"] == 0 and r.fields["phase"] == "RolledBack"
    spec = applied(r)["spec"]
    assert spec["predictor"]["name"] == "m-v1" and "canary" not in spec
    last = r.fields["decisions"][-1]
    assert last["action"] == "Rollback" and last["verdict"] == "Regressed" and last["evidence"][0]["pValue"] == 0.001
    assert conds(r)["RolledBack"][0] == "True" and conds(r)["Stalled"][0] == "True"
    assert any(e.reason == "RolledBack" and e.type == "Warning" for e in r.events)


def test_rolled_back_version_is_not_retried_until_asked() -> None:
    status = {"stableVersion": "m-v1", "rolledBackVersion": "m-v2", "phase": "RolledBack",
              "decisions": [{"time": "t", "action": "Rollback", "message": "errors up"}]}  # fmt: skip
    r = decide(rollout("m-v2", status), "m-v2", stable="m-v1")
    assert "canaryVersion" in r.fields and r.fields["canaryVersion"] is None
    assert "errors up" in r.conditions[0].message
    r = decide(rollout("m-v2", status, annotations={"slipway.dev/retry": "1"}), "m-v2", stable="m-v1")
    assert r.fields["canaryVersion"] == "m-v2" and r.fields["retryToken"] == "1"


def test_manual_gate_waits_for_promote_annotation_once() -> None:
    steps = [{"weight": 20, "manualGate": True}, {"weight": 60, "holdSeconds": 10}]
    status = progressing(weight=20)
    r = decide(rollout("m-v2", status, steps=steps), "m-v2", T0 + timedelta(hours=1), stable="m-v1")
    assert conds(r)["Ready"] == ("False", "Paused") and r.fields["phase"] == "Paused"
    promoted = rollout("m-v2", status, steps=steps, annotations={"slipway.dev/promote": "a"})
    r = decide(promoted, "m-v2", T0 + timedelta(hours=1), stable="m-v1")
    assert r.fields["currentStep"] == 1 and r.fields["promoteToken"] == "a"
    # The same annotation value is not acted on twice.
    again = rollout("m-v2", {**status, "currentStep": 1, "promoteToken": "a"}, steps=steps,
                    annotations={"slipway.dev/promote": "a"})  # fmt: skip
    assert decide(again, "m-v2", T0 + timedelta(seconds=1), stable="m-v1").fields.get("currentStep", 1) == 1


def test_abort() -> None:
    r = decide(rollout("m-v2", progressing(), annotations={"slipway.dev/abort": ""}), "m-v2", stable="m-v1")
    assert r.fields["phase"] == "Aborted" and r.fields["rolledBackVersion"] == "m-v2"


def test_retarget_mid_rollout_starts_over_from_stable() -> None:
    r = decide(rollout("m-v3", progressing(step=1, weight=50)), "m-v3", T0 + timedelta(seconds=5), stable="m-v1")
    assert r.fields["canaryVersion"] == "m-v3" and r.fields["currentStep"] == 0 and r.fields["canaryWeight"] == 10
    assert [d["action"] for d in r.fields["decisions"]][-2:] == ["Retarget", "CanaryStarted"]
    spec = applied(r)["spec"]
    assert spec["predictor"]["name"] == "m-v1" and spec["canary"][0]["predictor"]["name"] == "m-v3"


def test_decision_history_is_bounded() -> None:
    many = [{"time": "t", "action": "Analysis", "message": str(i)} for i in range(20)]
    r = decide(rollout("m-v2", progressing(decisions=many)), "m-v2", T0 + timedelta(seconds=5), stable="m-v1",
               outcome=REGRESSED)  # fmt: skip
    assert len(r.fields["decisions"]) == 20 and r.fields["decisions"][-1]["action"] == "Rollback"


def test_predictor_env_carries_version_signature_and_secret_refs() -> None:
    pred = isvc.predictor(rollout("m-v1"), version_of(mv("m-v1")), CTRL.settings)
    env = {e["name"]: e for e in pred["model"]["env"]}
    assert env["SLIPWAY_MODEL_VERSION"]["value"] == "m-v1"
    assert env["SLIPWAY_SIGNATURE"]["value"] == '{"inputs":[{"name":"x","dtype":"float64"}]}'
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "s3", "key": "AWS_SECRET_ACCESS_KEY"}},
    }
    assert (
        pred["model"]["storageUri"] == "s3://models/m-v1/model.joblib"
        and pred["model"]["runtime"] == "slipway-predictor"
    )


def test_needs_update_ignores_fields_others_add_but_not_stray_canaries() -> None:
    desired = isvc.inference_service(rollout("m-v1"), version_of(mv("m-v1")), None, 0, CTRL.settings)
    observed = {"metadata": {**desired["metadata"], "labels": {**desired["metadata"]["labels"], "other": "x"}},
                "spec": {**desired["spec"], "predictor": {**desired["spec"]["predictor"], "timeout": 60}}}  # fmt: skip
    assert not isvc.needs_update(observed, desired)
    assert isvc.needs_update({**observed, "spec": {**observed["spec"], "canary": [{"trafficPercent": 5}]}}, desired)
    patch = isvc.spec_patch(desired)
    assert patch["spec"]["canary"] is None and patch["spec"]["predictor"]["canaryTrafficPercent"] is None


def test_promote_or_abort_without_a_canary_is_taken_as_seen() -> None:
    """Otherwise the next canary would act on a stale token: skip a step or abort at once."""
    tokens = {"slipway.dev/promote": "p1", "slipway.dev/abort": "a1"}
    r = rollout("m-v1", {"stableVersion": "m-v1", "phase": "Promoted"}, annotations=tokens)
    result = decide(r, "m-v1")
    assert result.fields["promoteToken"] == "p1" and result.fields["abortToken"] == "a1"
    status = {"stableVersion": "m-v1", "promoteToken": "p1", "abortToken": "a1"}
    started = decide(rollout("m-v2", status, annotations=tokens), "m-v2", stable="m-v1")
    assert started.fields["phase"] == "Progressing" and started.fields["currentStep"] == 0


@pytest.mark.parametrize(("framework", "classes", "env"), [
    ("pytorch", ["benign", "malignant"], '["benign","malignant"]'),
    ("pytorch", [], None),  # unset: the predictor labels by column index
    ("sklearn", [0, 1], None),  # a scikit-learn model carries its own classes_
])  # fmt: skip
def test_torchscript_classes_reach_the_predictor(framework: str, classes: list[Any], env: str | None) -> None:
    body = mv("m-v1")
    body["spec"] |= {"framework": framework, "classes": classes}
    spec = isvc.predictor(rollout("m-v1"), version_of(body), CTRL.settings)
    values = {e["name"]: e.get("value") for e in spec["model"]["env"]}
    assert values.get("SLIPWAY_CLASSES") == env
