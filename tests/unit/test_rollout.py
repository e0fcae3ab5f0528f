"""Rollout decide(): the step state machine with an injected clock, and the InferenceService it asks for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slipway.analysis import Outcome
from slipway.api import Rollout
from slipway.conditions import rfc3339
from slipway.config import Settings
from slipway.controllers import rollout_isvc as isvc
from slipway.controllers import rollout_route as route
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


def served(*canaries: tuple[str, int, bool]) -> dict[str, Any]:
    """A live InferenceService as KServe reports it: Ready, its URL, and (name, trafficPercent, ready) per canary."""
    status: dict[str, Any] = {"url": "http://r-ns.example.com", "conditions": [{"type": "Ready", "status": "True"}]}
    if canaries:
        every = all(ok for _, _, ok in canaries)
        status["conditions"].append({"type": "CanaryPredictorReady", "status": "True" if every else "False"})
        status["canaryStatuses"] = [{"name": n, "trafficPercent": p, "ready": ok} for n, p, ok in canaries]
    meta = {"name": "r", "namespace": "ns", "uid": "isvc-uid"}
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": meta,
            "spec": {}, "status": status}  # fmt: skip


# KServe reports both canaries the tests use ready (at a weight that is not the last stage's 100 %).
READY_ISVC = served(("m-v2", 10, True), ("m-v3", 10, True))


def decide(
    r: Rollout,
    target: str,
    now: datetime = T0,
    stable: str | None = None,
    outcome: Outcome | None = None,
    isvc_obj: dict[str, Any] | None = READY_ISVC,
    route_obj: dict[str, Any] | None = None,
) -> Result:
    observed = Observed(mv(target), mv(stable) if stable else None, isvc_obj, outcome, route=route_obj)
    return CTRL.decide(r, observed, now)


def live_route(weights: dict[str, int], accepted: bool = True) -> dict[str, Any]:
    """The Rollout's HTTPRoute as the API server returns it once the gateway has looked at it."""
    backends = [{"group": "", "kind": "Service", "name": n, "port": 80, "weight": w} for n, w in weights.items()]
    status = "True" if accepted else "False"
    parent = {"parentRef": {"name": "kserve-ingress-gateway", "namespace": "kserve"},
              "conditions": [{"type": "Accepted", "status": status, "observedGeneration": 2}]}  # fmt: skip
    return {"metadata": {"name": "r", "namespace": "ns", "generation": 2},
            "spec": {"hostnames": ["r-ns.example.com"], "rules": [{"backendRefs": backends}]},
            "status": {"parents": [parent]}}  # fmt: skip


def conds(result: Result) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in result.conditions}


def applied(result: Result, kind: str = "InferenceService") -> dict[str, Any]:
    [a] = [a for a in result.actions if isinstance(a, Apply) and a.manifest["kind"] == kind]
    return a.manifest


def progressing(step: int = 0, weight: int = 10, started: datetime = T0, **extra: Any) -> dict[str, Any]:
    return {"stableVersion": "m-v1", "canaryVersion": "m-v2", "currentStep": step, "canaryWeight": weight,
            "phase": "Progressing", "canaryStartedAt": "2026-03-01T12:00:00Z",
            "canaryDeployedAt": "2026-03-01T11:58:00Z",
            "stepStartedAt": started.strftime("%Y-%m-%dT%H:%M:%SZ"), **extra}  # fmt: skip


SIDES = {"canary": {"samples": 400.0, "value": 0.3}, "stable": {"samples": 4000.0, "value": 0.0}}
HEALTHY = Outcome("Healthy", [{"metric": "errorRate", "verdict": "Healthy", **SIDES}], "fine")
REGRESSED = Outcome("Regressed", [{"metric": "errorRate", "verdict": "Regressed", "pValue": 0.001, **SIDES}],
                    "errors up")  # fmt: skip
INCONCLUSIVE = Outcome("Inconclusive", [], "not enough requests")


def test_first_version_is_deployed_without_a_canary() -> None:
    r = decide(rollout("m-v1"), "m-v1", isvc_obj=None)
    assert r.fields["stableVersion"] == "m-v1" and r.fields["phase"] == "Promoted"
    assert conds(r)["Ready"] == ("False", "Deploying")
    spec = applied(r)["spec"]
    assert spec["predictor"]["name"] == "m-v1" and "canary" not in spec
    assert [d["action"] for d in r.fields["decisions"]] == ["Deploy"]


def test_steady_state_is_ready_and_writes_nothing_when_the_intent_is_unchanged() -> None:
    status = {"stableVersion": "m-v1", "phase": "Promoted"}
    first = decide(rollout("m-v1", status), "m-v1", stable="m-v1", route_obj=live_route({"r-m-v1-predictor": 100}))
    assert {a.manifest["kind"] for a in first.actions if isinstance(a, Apply)} == {"HTTPRoute", "InferenceService"}
    # What KServe's webhooks did to the live object (canonical quantities, Knative for Serverless...) does not
    # matter: the intent's digest in status does, and the fields that decide what is served.
    desired = applied(first)
    live = {**desired, "metadata": {**desired["metadata"], "uid": "isvc-uid"},
            "spec": {**desired["spec"], "predictor": {**desired["spec"]["predictor"], "timeout": 60,
                                                     "automountServiceAccountToken": False}},
            "status": READY_ISVC["status"]}  # fmt: skip
    again = rollout("m-v1", {**status, "applied": first.fields["applied"]})
    r = decide(again, "m-v1", stable="m-v1", isvc_obj=live, route_obj=live_route({"r-m-v1-predictor": 100}))
    assert conds(r)["Ready"] == ("True", "Serving") and conds(r)["Promoted"][0] == "True"
    assert r.actions == [] and "applied" not in r.fields
    # Someone moved what is served: slipway puts its intent back.
    moved = {**live, "spec": {**live["spec"], "predictor": {**live["spec"]["predictor"], "name": "other"}}}
    assert applied(decide(again, "m-v1", stable="m-v1", isvc_obj=moved, route_obj=live_route({"x": 100})))


def test_new_target_starts_a_canary_at_the_first_weight() -> None:
    status = {"stableVersion": "m-v1", "phase": "Promoted"}
    r = decide(rollout("m-v2", status), "m-v2", stable="m-v1", isvc_obj=served())
    assert r.fields["canaryVersion"] == "m-v2" and r.fields["canaryWeight"] == 10 and r.fields["currentStep"] == 0
    spec = applied(r)["spec"]
    assert spec["predictor"]["name"] == "m-v1"
    assert spec["canary"] == [{"predictor": spec["canary"][0]["predictor"], "trafficPercent": 10}]
    assert spec["canary"][0]["predictor"]["name"] == "m-v2"
    assert conds(r)["Progressing"][0] == "True" and "CanaryStarted" in [e.reason for e in r.events]
    # Not ready yet: no request goes to it and its clocks have not started.
    assert route.weights(applied(r, "HTTPRoute")) == {"r-m-v1-predictor": 100}
    assert r.fields["stepStartedAt"] is None and conds(r)["Ready"] == ("False", "CanaryNotReady")


def test_serverless_canary_uses_canary_traffic_percent() -> None:
    r = decide(rollout("m-v2", {"stableVersion": "m-v1"}, mode="Serverless"), "m-v2", stable="m-v1")
    spec = applied(r)["spec"]
    # One unnamed predictor (one Knative Service for every version); the canary is its new revision.
    assert "name" not in spec["predictor"] and spec["predictor"]["canaryTrafficPercent"] == 10
    assert spec["predictor"]["model"]["storageUri"] == "s3://models/m-v2/model.joblib"
    assert "canary" not in spec
    # KServe v0.20's spelling: what its defaulting webhook would rewrite Serverless to.
    assert applied(r)["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Knative"}


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


def test_every_look_writes_its_evidence_even_when_the_verdict_stays() -> None:
    # A decision is recorded when the verdict changes; the counts of every later look go to lastEvidence, so
    # status never shows "analysed 2s ago" beside the numbers of a look minutes old.
    look = {"metric": "errorRate", "verdict": "Healthy", "canary": {"samples": 657.0}, "stable": {"samples": 6e3}}
    newer = Outcome("Healthy", [look], "ok")
    r = decide(rollout("m-v2", progressing(lastVerdict="Healthy")), "m-v2", T0 + timedelta(seconds=30),
               stable="m-v1", outcome=newer)  # fmt: skip
    assert r.fields["lastEvidence"] == newer.evidence and r.fields["lastAnalysisTime"]
    assert "decisions" not in r.fields  # the verdict did not change: no new decision
    restarted = decide(rollout("m-v3", {**progressing(lastVerdict="Healthy"), "lastEvidence": newer.evidence}),
                       "m-v3", T0, stable="m-v1")  # fmt: skip
    assert restarted.fields["canaryVersion"] == "m-v3" and restarted.fields["lastEvidence"] is None


def test_no_data_rollback_when_asked() -> None:
    r = rollout("m-v2", progressing(lastVerdict="Inconclusive"))
    r.spec.canary.analysis.on_no_data = "rollback"  # type: ignore[union-attr]
    res = decide(r, "m-v2", T0 + timedelta(seconds=200), stable="m-v1")
    assert res.fields["rolledBackVersion"] == "m-v2" and conds(res)["Stalled"] == ("True", "RolledBack")


def test_last_step_sends_everything_to_the_canary_then_promotes_once_that_is_served() -> None:
    status = progressing(step=1, weight=50, lastVerdict="Healthy")
    r = decide(rollout("m-v2", status), "m-v2", T0 + timedelta(seconds=61), stable="m-v1")
    assert r.fields["currentStep"] == 2 and r.fields["canaryWeight"] == 100 and "stableVersion" not in r.fields
    assert applied(r)["spec"]["canary"][0]["trafficPercent"] == 100 and conds(r)["Ready"][1] == "Promoting"
    assert route.weights(applied(r, "HTTPRoute")) == {"r-m-v1-predictor": 0, "r-m-v2-predictor": 100}
    full = progressing(step=2, weight=100, lastVerdict="Healthy")
    at_100 = live_route({"r-m-v1-predictor": 0, "r-m-v2-predictor": 100})
    # KServe has not resized the canary for 100 % yet, or the gateway has not taken the route: wait.
    for isvc_obj, route_obj in (
        (READY_ISVC, at_100),
        (served(("m-v2", 100, True)), live_route({"r-m-v1-predictor": 100})),
    ):
        wait = decide(rollout("m-v2", full), "m-v2", T0 + timedelta(seconds=62), stable="m-v1", isvc_obj=isvc_obj,
                      route_obj=route_obj)  # fmt: skip
        assert "stableVersion" not in wait.fields and conds(wait)["Ready"][1] == "CanaryNotReady"
    # Everything is on the canary, but the gateway may still be draining stable: its pods stay 10s more.
    early = decide(rollout("m-v2", full), "m-v2", T0 + timedelta(seconds=4), stable="m-v1",
                   isvc_obj=served(("m-v2", 100, True)), route_obj=at_100)  # fmt: skip
    assert "stableVersion" not in early.fields and conds(early)["Ready"][1] == "Promoting"
    assert 0 < (early.requeue_after or 0) <= 6 and applied(early)["spec"]["canary"][0]["trafficPercent"] == 100
    r = decide(rollout("m-v2", full), "m-v2", T0 + timedelta(seconds=62), stable="m-v1",
               isvc_obj=served(("m-v2", 100, True)), route_obj=at_100)  # fmt: skip
    assert r.fields["stableVersion"] == "m-v2" and r.fields["canaryVersion"] is None and r.fields["phase"] == "Promoted"
    spec = applied(r)["spec"]
    assert spec["predictor"]["name"] == "m-v2" and "canary" not in spec
    assert conds(r)["Promoted"][0] == "True" and r.fields["decisions"][-1]["action"] == "Promote"
    assert route.weights(applied(r, "HTTPRoute")) == {"r-m-v2-predictor": 100}


def test_regression_rolls_back_in_the_same_pass_with_evidence() -> None:
    r = decide(rollout("m-v2", progressing()), "m-v2", T0 + timedelta(seconds=5), stable="m-v1", outcome=REGRESSED)
    assert r.fields["rolledBackVersion"] == "m-v2" and r.fields["canaryVersion"] is None
    assert r.fields["canaryWeight"] == 0 and r.fields["phase"] == "RolledBack"
    # The route sends the canary nothing at once; its pods stay until the gateway has drained them.
    assert route.weights(applied(r, "HTTPRoute")) == {"r-m-v1-predictor": 100}
    assert r.fields["drainingVersion"] == "m-v2"
    assert r.fields["drainUntil"] == rfc3339(T0 + timedelta(seconds=15)) and r.requeue_after == 10
    spec = applied(r)["spec"]
    assert spec["predictor"]["name"] == "m-v1" and spec["canary"][0]["predictor"]["name"] == "m-v2"
    last = r.fields["decisions"][-1]
    assert last["action"] == "Rollback" and last["verdict"] == "Regressed" and last["evidence"][0]["pValue"] == 0.001
    assert conds(r)["RolledBack"][0] == "True" and conds(r)["Stalled"][0] == "True"
    assert any(e.reason == "RolledBack" and e.type == "Warning" for e in r.events)


def test_a_rolled_back_canary_loses_its_pods_once_drained() -> None:
    status = {"stableVersion": "m-v1", "rolledBackVersion": "m-v2", "phase": "RolledBack",
              "drainingVersion": "m-v2", "drainUntil": rfc3339(T0 + timedelta(seconds=15)),
              "decisions": [{"time": "t", "action": "Rollback", "message": "errors up"}]}  # fmt: skip
    during = decide(rollout("m-v2", status), "m-v2", T0 + timedelta(seconds=10), stable="m-v1")
    assert "canary" in applied(during)["spec"] and during.requeue_after == 5
    after = decide(rollout("m-v2", status), "m-v2", T0 + timedelta(seconds=16), stable="m-v1")
    assert "canary" not in applied(after)["spec"]
    assert after.fields["drainingVersion"] is None and after.fields["drainUntil"] is None


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
    r = decide(rollout("m-v3", progressing(step=1, weight=50)), "m-v3", T0 + timedelta(seconds=5), stable="m-v1",
               isvc_obj=served(("m-v2", 50, True)))  # fmt: skip
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


def test_stray_canary_and_logger_fields_are_cleared_by_merge_patch() -> None:
    """Fields an older slipway (or someone else) wrote are co-owned: leaving them out of the apply keeps them."""
    desired = isvc.inference_service(rollout("m-v1"), version_of(mv("m-v1")), None, 0, CTRL.settings)
    spec = {**desired["spec"], "predictor": {**desired["spec"]["predictor"], "timeout": 60}}
    assert isvc.stray_patch({"spec": spec}, desired) is None
    stray = {**spec, "canary": [{"trafficPercent": 5}], "predictor": {**spec["predictor"], "logger": {"url": "x"}}}
    assert isvc.stray_patch({"spec": stray}, desired) == {"spec": {"canary": None, "predictor": {"logger": None}}}


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
