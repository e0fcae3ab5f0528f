"""Serverless mode as KServe v0.20.0 and Knative Serving v0.48.1 do it: one Knative Service for every version, the
mode annotation as KServe stores it, a rollback that never sends a request to the bad revision, the analysis by
revision from the queue-proxy's metrics, and minReplicas on every revision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slipway import analysis
from slipway.analysis import Outcome
from slipway.api import Rollout
from slipway.controllers import rollout as rollout_module
from slipway.controllers import rollout_isvc as isvc
from slipway.controllers import rollout_knative as knative
from slipway.controllers.base import Result
from slipway.controllers.rollout import WATCH_SECONDS, Observed, version_of

from tests.unit.fakes import FakePrometheus, QueryFunction
from tests.unit.test_rollout import CTRL, T0, applied, conds, mv, progressing, rollout

R1, R2, R3 = "r-predictor-00001", "r-predictor-00002", "r-predictor-00003"
EVIDENCE = {"metric": "errorRate", "verdict": "Regressed", "canary": {"samples": 100}, "stable": {"samples": 900}}
REGRESSED = Outcome("Regressed", [EVIDENCE], "errors up")


def uri(version: str) -> str:
    return f"s3://models/{version}/model.joblib"


def knative_isvc(
    version: str,
    percent: int | None,
    traffic: list[tuple[str, int, bool]],
    created: str,
    ready: str,
    rolled_out: str = R1,
) -> dict[str, Any]:
    """A live Serverless InferenceService: its predictor serving `version` at canaryTrafficPercent `percent`, and
    the status KServe copies from Knative (PropagateStatus): (revision, percent, latestRevision) per target."""
    predictor: dict[str, Any] = {"minReplicas": 1, "model": {"storageUri": uri(version)}}
    if percent is not None:
        predictor["canaryTrafficPercent"] = percent
    targets = [{"revisionName": rev, "percent": p, "latestRevision": latest, **({} if latest else {"tag": "prev"})}
               for rev, p, latest in traffic]  # fmt: skip
    component = {"latestCreatedRevision": created, "latestReadyRevision": ready,
                 "latestRolledoutRevision": rolled_out, "traffic": targets}  # fmt: skip
    status = {"url": "http://r-ns.example.com", "conditions": [{"type": "Ready", "status": "True"}],
              "components": {"predictor": component}, "deploymentMode": "Knative"}  # fmt: skip
    meta = {"name": "r", "namespace": "ns", "uid": "isvc-uid",
            "annotations": {isvc.MODE_ANNOTATION: "Knative"}}  # fmt: skip
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": meta,
            "spec": {"predictor": predictor}, "status": status}  # fmt: skip


def serverless(target: str, status: dict[str, Any], **extra: Any) -> Rollout:
    return rollout(target, status, mode="Serverless", **extra)


def decide(r: Rollout, live: dict[str, Any] | None, outcome: Outcome | None = None, now: datetime = T0) -> Result:
    status = r.status.wire() if r.status else {}
    stable = status.get("stableVersion")
    observed = Observed(mv(r.spec.model_version_ref.name), mv(stable) if stable else None, live, outcome)
    return CTRL.decide(r, observed, now)


def predictor(result: Result) -> dict[str, Any]:
    spec: dict[str, Any] = applied(result)["spec"]["predictor"]
    return spec


# -- 1. one Knative Service ----------------------------------------------------------------------------------


def test_every_version_is_a_new_revision_of_one_knative_service() -> None:
    first = decide(serverless("m-v1", {}), None)
    canary = decide(serverless("m-v2", {"stableVersion": "m-v1", "phase": "Promoted"}), None)
    promoted = decide(serverless("m-v2", {"stableVersion": "m-v2", "phase": "Promoted"}), None)
    for result, version in ((first, "m-v1"), (canary, "m-v2"), (promoted, "m-v2")):
        # KServe names the Knative Service {isvc}-{predictor.name}-predictor, {isvc}-predictor when unnamed
        # (constants.PredictorServiceName): unnamed, every version is a revision of r-predictor.
        assert "name" not in predictor(result) and predictor(result)["model"]["storageUri"] == uri(version)
        assert "canary" not in applied(result)["spec"]
    assert predictor(canary)["canaryTrafficPercent"] == 10 and "canaryTrafficPercent" not in predictor(promoted)
    assert knative.service_name("r") == "r-predictor"


# -- 2. the deployment-mode annotation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "written", "live", "writes"),
    [
        ("Serverless", "Knative", "Knative", False),  # as KServe v0.20's defaulter stores it
        ("Serverless", "Knative", "Serverless", False),  # the deprecated spelling: the same mode
        ("Serverless", "Knative", "Standard", True),
        ("Standard", "Standard", "RawDeployment", False),
        ("Standard", "Standard", "Knative", True),
    ],
)
def test_the_mode_is_written_as_kserve_stores_it_and_compared_normalized(
    mode: str, written: str, live: str, writes: bool
) -> None:
    r = rollout("m-v1", {"stableVersion": "m-v1"}, mode=mode)
    desired = isvc.inference_service(r, version_of(mv("m-v1")), None, 0, CTRL.settings)
    assert desired["metadata"]["annotations"] == {isvc.MODE_ANNOTATION: written}
    observed = {"metadata": {**desired["metadata"], "annotations": {isvc.MODE_ANNOTATION: live, "other": "x"}},
                "spec": desired["spec"]}  # fmt: skip
    assert isvc.needs_apply(observed, desired, isvc.digest(desired)) is writes


# -- 3. rollback: canaryTrafficPercent 0 first, then stable's spec --------------------------------------------

CANARY_AT_10 = knative_isvc("m-v2", 10, [(R2, 10, True), (R1, 90, False)], created=R2, ready=R2)


def rolled_back() -> tuple[dict[str, Any], Result]:
    status = progressing()
    result = decide(serverless("m-v2", status), CANARY_AT_10, REGRESSED)
    return {**status, **result.fields}, result


def test_rollback_first_pins_every_request_on_stables_revision() -> None:
    status, r = rolled_back()
    assert status["rolledBackVersion"] == "m-v2" and status["drainingVersion"] == "m-v2"
    assert status["phase"] == "RolledBack" and conds(r)["RolledBack"][0] == "True"
    # The canary's spec stays (no new revision yet) and takes 0 %: KServe sends all to the prev revision.
    assert predictor(r)["canaryTrafficPercent"] == 0 and predictor(r)["model"]["storageUri"] == uri("m-v2")
    assert r.requeue_after == WATCH_SECONDS
    # Knative has not applied it yet (the status still shows 10 % on latestRevision): nothing else changes.
    stale = knative_isvc("m-v2", 0, [(R2, 10, True), (R1, 90, False)], created=R2, ready=R2)
    again = decide(serverless("m-v2", status), stale, now=T0 + timedelta(seconds=5))
    assert "rolledBackRevision" not in again.fields
    assert predictor(again)["canaryTrafficPercent"] == 0 and predictor(again)["model"]["storageUri"] == uri("m-v2")


def test_stables_spec_returns_at_0_percent_once_the_pin_is_seen_and_the_field_goes_once_it_is_ready() -> None:
    status, _ = rolled_back()
    pinned = knative_isvc("m-v2", 0, [(R2, 0, True), (R1, 100, False)], created=R2, ready=R2)
    r = decide(serverless("m-v2", status), pinned, now=T0 + timedelta(seconds=10))
    assert r.fields["rolledBackRevision"] == R2 and r.fields["decisions"][-1]["action"] == "Pinned"
    # Stable's spec, still at 0 %: Knative's new revision of it takes nothing until it is ready.
    assert predictor(r)["model"]["storageUri"] == uri("m-v1") and predictor(r)["canaryTrafficPercent"] == 0
    status |= r.fields
    # Restarted operator, new revision created but not ready: latestRevision would still be the canary's R2.
    restoring = knative_isvc("m-v1", 0, [(R2, 0, True), (R1, 100, False)], created=R3, ready=R2)
    r = decide(serverless("m-v2", status), restoring, now=T0 + timedelta(seconds=20))
    assert "rolledBackRevision" not in r.fields and "drainingVersion" not in r.fields
    assert predictor(r)["model"]["storageUri"] == uri("m-v1") and predictor(r)["canaryTrafficPercent"] == 0
    # The status has not caught up with stable's spec yet (R2 still latest created and ready): still pinned.
    lagging = knative_isvc("m-v1", 0, [(R2, 0, True), (R1, 100, False)], created=R2, ready=R2)
    assert "rolledBackRevision" not in decide(serverless("m-v2", status), lagging).fields
    # R3 (stable's spec) is ready: canaryTrafficPercent goes, latestRevision is R3.
    ready = knative_isvc("m-v1", 0, [(R3, 0, True), (R1, 100, False)], created=R3, ready=R3)
    r = decide(serverless("m-v2", status), ready, now=T0 + timedelta(seconds=40))
    assert r.fields["rolledBackRevision"] is None and r.fields["drainingVersion"] is None
    assert "canaryTrafficPercent" not in predictor(r) and predictor(r)["model"]["storageUri"] == uri("m-v1")
    assert r.fields["decisions"][-1]["action"] == "Restored" and r.requeue_after is None


@pytest.mark.parametrize("target", ["m-v1", "m-v3"])
def test_nothing_else_is_served_until_the_rollback_is_done(target: str) -> None:
    status, _ = rolled_back()
    pinned = knative_isvc("m-v2", 0, [(R2, 0, True), (R1, 100, False)], created=R2, ready=R2)
    r = decide(serverless(target, status), pinned, now=T0 + timedelta(seconds=10))
    assert conds(r)["Progressing"] == ("True", "RollingBack") and "canaryVersion" not in r.fields
    assert predictor(r)["model"]["storageUri"] == uri("m-v1") and predictor(r)["canaryTrafficPercent"] == 0


def test_a_canary_knative_never_made_a_revision_of_is_restored_after_the_deadline() -> None:
    status, _ = rolled_back()
    never = knative_isvc("m-v2", 0, [(R1, 0, True), (R1, 100, False)], created=R1, ready=R1)
    assert "rolledBackRevision" not in decide(serverless("m-v2", status), never, now=T0 + timedelta(seconds=5)).fields
    r = decide(serverless("m-v2", status), never, now=T0 + timedelta(seconds=601))
    # Nothing newer is coming (the template never changed), and the latest ready revision is stable's own.
    assert r.fields["rolledBackRevision"] is None and "canaryTrafficPercent" not in predictor(r)


# -- 4. analysis by revision ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "ready", "expected"),
    [
        (R2, R2, (R1, R2)),  # the canary's revision is latestRevision
        (R2, R1, (R1, None)),  # not ready: latestRevision is still an older revision
        (R1, R1, (R1, None)),  # Knative has not made the canary's revision yet
    ],
)
def test_canary_and_stable_revisions_come_from_kserves_status(
    created: str, ready: str, expected: tuple[str | None, str | None]
) -> None:
    live = knative_isvc("m-v2", 10, [(ready, 10, True), (R1, 90, False)], created=created, ready=ready)
    assert knative.revisions(live) == expected
    assert knative.revisions(None) == (None, None)


@pytest.mark.asyncio
async def test_serverless_analysis_reads_the_queue_proxies_by_revision() -> None:
    asked: list[str] = []

    async def fake(address: str, promql: str) -> list[tuple[dict[str, str], float]]:
        asked.append(promql)
        if promql.startswith("histogram_quantile"):
            return [({"revision": R1}, 0.02), ({"revision": R2}, 0.05)]
        return [
            ({"revision": R1, "http_response_status_code": "200"}, 900.0),
            ({"revision": R1, "http_response_status_code": "404"}, 10.0),
            ({"revision": R2, "http_response_status_code": "200"}, 70.0),
            ({"revision": R2, "http_response_status_code": "500"}, 25.0),
            ({"revision": R2, "http_response_status_code": "502"}, 5.0),  # queue-proxy: the model server is gone
        ]

    prom = QueryFunction(fake)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    settings = analysis.Analysis.model_validate({"prometheus": {"address": "http://127.0.0.1:9"}})
    assert settings.source is None and analysis.source_of(settings, serverless=True) == "knative"
    out = await analysis.analyze(prom, settings, "ns", "r", "m-v1", "m-v2", now - timedelta(seconds=30), now,
                                 revisions={"m-v1": R1, "m-v2": R2}, serverless=True)  # fmt: skip
    selector = f'{{namespace="ns",revision=~"{R1}|{R2}"}}'
    assert asked[0] == (
        "sum by (revision, http_response_status_code) "
        f"(increase(kn_serving_invocation_duration_seconds_count{selector}[30s]))"
    )
    assert asked[1] == f"sum by (le, revision) (increase(kn_serving_invocation_duration_seconds_bucket{selector}[30s]))"
    error = next(e for e in out.evidence if e["metric"] == "errorRate")
    assert error["canary"] == {"samples": 100.0, "value": 0.3} and error["stable"] == {"samples": 910.0, "value": 0.0}
    assert out.verdict == "Regressed"
    # Standard keeps its default.
    assert analysis.source_of(settings, serverless=False) == "predictor"


@pytest.mark.asyncio
async def test_the_controller_maps_versions_to_revisions(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    async def fake(*args: Any, **kwargs: Any) -> Outcome:
        seen.update(kwargs)
        return Outcome("Inconclusive")

    monkeypatch.setattr(rollout_module, "analyze", fake)
    r = serverless("m-v2", progressing())
    status = r.status.wire() if r.status else {}
    await CTRL.analysis_if_due(r, status, False, CANARY_AT_10, FakePrometheus(), T0 + timedelta(minutes=1))
    assert seen["revisions"] == {"m-v1": R1, "m-v2": R2} and seen["serverless"] is True
    not_ready = knative_isvc("m-v2", 10, [(R1, 10, True), (R1, 90, False)], created=R2, ready=R1)
    await CTRL.analysis_if_due(r, status, False, not_ready, FakePrometheus(), T0 + timedelta(minutes=1))
    assert seen["revisions"] == {"m-v1": R1, "m-v2": None}


# -- 5. minReplicas -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("replicas", [0, 3])
def test_min_replicas_reach_every_revision(replicas: int) -> None:
    def with_min(r: Rollout) -> Rollout:
        r.spec.inference_service.predictor.min_replicas = replicas
        return r

    status, _ = rolled_back()
    pinned = knative_isvc("m-v2", 0, [(R2, 0, True), (R1, 100, False)], created=R2, ready=R2)
    results = [
        decide(with_min(serverless("m-v1", {})), None),  # first version
        decide(with_min(serverless("m-v2", {"stableVersion": "m-v1", "phase": "Promoted"})), None),  # canary
        decide(with_min(serverless("m-v2", progressing())), CANARY_AT_10, REGRESSED),  # pin
        decide(with_min(serverless("m-v2", status)), pinned),  # stable's spec at 0 %
        decide(with_min(serverless("m-v2", {"stableVersion": "m-v2", "phase": "Promoted"})), None),  # promoted
    ]
    # KServe turns it into autoscaling.knative.dev/min-scale on the revision (SetAutoScalingAnnotations).
    assert [predictor(r)["minReplicas"] for r in results] == [replicas] * len(results)


# -- step clocks start when the canary's revision serves ------------------------------------------------------


def waiting_status(deployed: datetime = T0) -> dict[str, Any]:
    return progressing(canaryStartedAt=None, stepStartedAt=None,
                       canaryDeployedAt=deployed.strftime("%Y-%m-%dT%H:%M:%SZ"))  # fmt: skip


def test_a_serverless_canary_holds_no_step_until_its_revision_serves_its_percent() -> None:
    """On the real stack, with the clock started at the request a 10 % step saw 6 % of the requests: until the
    canary's revision is ready, KServe's latestRevision target is stable's revision."""
    started = decide(serverless("m-v2", {"stableVersion": "m-v1", "phase": "Promoted"}), None)
    assert started.fields["stepStartedAt"] is None and started.fields["canaryDeployedAt"]
    # Knative is making the canary's revision: both targets still name stable's.
    making = knative_isvc("m-v2", 10, [(R1, 10, True), (R1, 90, False)], created=R2, ready=R1)
    late = T0 + timedelta(seconds=300)  # well past the step's holdSeconds (60)
    result = decide(serverless("m-v2", waiting_status()), making, now=late)
    assert conds(result)["Progressing"][1] == "CanaryNotReady"
    assert result.fields.get("currentStep", 0) == 0 and result.fields.get("stepStartedAt") is None
    serving = knative_isvc("m-v2", 10, [(R2, 10, True), (R1, 90, False)], created=R2, ready=R2)
    result = decide(serverless("m-v2", waiting_status()), serving, now=late)
    assert result.fields["stepStartedAt"] == "2026-03-01T12:05:00Z"
    assert result.fields["decisions"][-1]["action"] == "CanaryReady"
    assert result.fields.get("currentStep", 0) == 0, "the step's hold starts now, not at the request"


def test_a_serverless_canary_whose_revision_never_serves_is_rolled_back() -> None:
    never = knative_isvc("m-v2", 10, [(R1, 10, True), (R1, 90, False)], created=R2, ready=R1)
    result = decide(serverless("m-v2", waiting_status()), never, now=T0 + timedelta(seconds=3600))
    assert result.fields["decisions"][-1]["action"] == "Rollback"
    assert "did not serve" in result.fields["decisions"][-1]["message"]
