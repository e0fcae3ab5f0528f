"""What the Rollout writes for the real KServe v0.20.0 in Standard mode: the InferenceService its webhooks
accept, the HTTPRoute that splits requests, the storage identity, and when each is written.

Each table row names the KServe source that makes it so (pkg/... in kserve@v0.20.0)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from slipway.config import Settings
from slipway.controllers import rollout_isvc as isvc
from slipway.controllers import rollout_route as route
from slipway.controllers import rollout_serving as serving
from slipway.controllers import rollout_storage as storage
from slipway.controllers.base import Apply
from slipway.controllers.rollout import Observed, RolloutController, version_of

from tests.unit.test_rollout import CTRL, READY_ISVC, T0, applied, conds, decide, mv, progressing, rollout, served

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize(
    ("isvc_name", "version"),
    [
        ("r", "m-v2"),  # fits: the version's own name
        ("a" * 37, "cancer-classifier-v12"),  # the longest InferenceService name Standard mode accepts
        ("r", "Model.V2"),  # not a label: dots and capitals
        ("fraud", "x" * 60),  # too long for KServe's app=isvc.<isvc>-<predictor>-predictor label
        ("fraud", "---"),  # nothing usable left
    ],
)
def test_predictor_names_fit_kserves_derived_names(isvc_name: str, version: str) -> None:
    # constants.PredictorServiceName and GetRawServiceLabel: the Service name and the app label value.
    name = isvc.predictor_name(isvc_name, version)
    service = isvc.predictor_service(isvc_name, version)
    assert len(f"isvc.{service}") <= 63 and DNS_1035.match(service), service
    assert isvc.predictor_name(isvc_name, version + "x") != name  # distinct versions, distinct predictors
    if version == "m-v2":
        assert name == "m-v2"


@pytest.mark.parametrize(
    ("name", "mode", "problem"),
    [
        ("cancer", "Standard", None),
        ("1cancer", "Standard", "must start with a letter"),  # IsvcNameFmt [a-z]([-a-z0-9]*[a-z0-9])?
        ("cancer.prod", "Standard", "must start with a letter"),
        ("a" * 38, "Standard", "at most 37"),
        ("a" * 38, "Serverless", None),
    ],
)
def test_inference_service_names_kserve_cannot_take_stall_with_a_clear_reason(
    name: str, mode: str, problem: str | None
) -> None:
    r = rollout("m-v1", mode=mode)
    r.metadata["name"] = name
    assert (isvc.name_problem(r) or None) is None if problem is None else problem in (isvc.name_problem(r) or "")
    if problem:
        result = CTRL.decide(r, Observed(mv("m-v1")), T0)
        assert conds(result)["Stalled"] == ("True", "InvalidInferenceServiceName") and result.actions == []


def test_standard_predictors_pass_kserves_webhook() -> None:
    """validatePredictor: no model.name on spec.predictor. validateCanarySpecs: canary needs predictor.name,
    no maxReplicas; the CRD requires model.name on canaries ("" is accepted). A canary minReplicas would be
    taken from stable (reconcileRawDeployment) so it is left to KServe (canaryReplicaCount)."""
    r = rollout("m-v2", {"stableVersion": "m-v1"})
    r.spec.inference_service.predictor.max_replicas = 4
    settings = Settings(drift_url="http://drift:8080")
    body = isvc.inference_service(r, version_of(mv("m-v1")), version_of(mv("m-v2")), 10, settings, "dm")
    stable, [entry] = body["spec"]["predictor"], body["spec"]["canary"]
    assert "name" not in stable["model"] and stable["name"] == "m-v1" and stable["maxReplicas"] == 4
    canary = entry["predictor"]
    assert canary["model"]["name"] == "" and canary["name"] == "m-v2" and entry["trafficPercent"] == 10
    assert "minReplicas" not in canary and "maxReplicas" not in canary
    # KServe overlays the canary on stable's predictor (buildCanaryPredictor): without its own logger the
    # canary's requests would be logged into stable's window.
    assert canary["logger"]["url"].endswith("/dm/m-v2") and stable["logger"]["url"].endswith("/dm/m-v1")
    assert body["metadata"]["labels"][isvc.VISIBILITY_LABEL] == "cluster-local"
    assert "components" not in body["spec"]


def test_serverless_predictors_pass_kserves_webhook() -> None:
    r = rollout("m-v2", {"stableVersion": "m-v1"}, mode="Serverless")
    body = isvc.inference_service(r, version_of(mv("m-v1")), version_of(mv("m-v2")), 10, CTRL.settings)
    # validatePredictor refuses model.name on spec.predictor in every mode (inference_service_validation.go:296).
    assert "name" not in body["spec"]["predictor"]["model"]
    assert isvc.VISIBILITY_LABEL not in body["metadata"]["labels"] and not serving.routed(r, CTRL.settings)


def test_without_a_gateway_kserve_keeps_its_own_ingress() -> None:
    ctrl = RolloutController(Settings(gateway=""))
    r = ctrl.decide(rollout("m-v1", {"stableVersion": "m-v1"}), Observed(mv("m-v1"), mv("m-v1"), READY_ISVC), T0)
    assert [a.manifest["kind"] for a in r.actions if isinstance(a, Apply)] == ["InferenceService"]
    assert isvc.VISIBILITY_LABEL not in applied(r)["metadata"]["labels"] and conds(r)["Ready"][0] == "True"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, (False, None)),  # KServe has not reported on the canary yet
        ({"canaryStatuses": [{"name": "m-v2", "ready": True, "trafficPercent": 10}]}, (False, 10)),  # no condition
        ({"canaryStatuses": [{"name": "m-v2", "ready": False, "trafficPercent": 10}],
          "conditions": [{"type": "CanaryPredictorReady", "status": "False"}]}, (False, 10)),
        ({"canaryStatuses": [{"name": "m-v3", "ready": True, "trafficPercent": 10}],
          "conditions": [{"type": "CanaryPredictorReady", "status": "True"}]}, (False, None)),  # another canary
        ({"canaryStatuses": [{"name": "m-v2", "ready": True, "trafficPercent": 50}],
          "conditions": [{"type": "CanaryPredictorReady", "status": "True"}]}, (True, 50)),
    ],
)  # fmt: skip
def test_canary_readiness_is_kserves_canary_status(status: dict[str, Any], expected: tuple[bool, int | None]) -> None:
    # reconcileCanaryDeployments: canaryStatuses[{name, ready: AvailableReplicas > 0, trafficPercent}] and
    # the CanaryPredictorReady condition (AllCanariesReady / CanariesNotReady).
    assert isvc.canary_state({"status": status}, "m-v2") == expected


@pytest.mark.parametrize(
    ("isvc_obj", "deployed_ago", "action"),
    [
        (served(), 60, "wait"),
        (served(("m-v2", 10, False)), 599, "wait"),
        (served(("m-v2", 10, False)), 600, "Rollback"),  # never ready: rolled back, never promoted
        (served(("m-v2", 10, True)), 600, "CanaryReady"),
    ],
)
def test_step_clocks_start_when_the_canary_is_ready_and_a_canary_that_never_is_rolls_back(
    isvc_obj: dict[str, Any], deployed_ago: int, action: str
) -> None:
    status = progressing(stepStartedAt=None, canaryStartedAt=None, canaryDeployedAt="2026-03-01T12:00:00Z")
    promote = {"slipway.dev/promote": "now"}  # a person's promote must not skip readiness either
    r = decide(rollout("m-v2", status, annotations=promote), "m-v2", T0 + timedelta(seconds=deployed_ago),
               stable="m-v1", isvc_obj=isvc_obj)  # fmt: skip
    actions = [d["action"] for d in r.fields.get("decisions", [])]
    if action == "wait":
        assert conds(r)["Ready"][1] == "CanaryNotReady" and not actions and "stableVersion" not in r.fields
        assert route.weights(applied(r, "HTTPRoute")) == {"r-m-v1-predictor": 100}
    elif action == "Rollback":
        assert actions[-1] == "Rollback" and r.fields["rolledBackVersion"] == "m-v2"
    else:
        # Ready: the clocks start, and only now does the person's promote move it on (to step 2, 50 %).
        assert actions == ["CanaryReady", "Advance"] and r.fields["stepStartedAt"] == "2026-03-01T12:10:00Z"
        assert route.weights(applied(r, "HTTPRoute")) == {"r-m-v1-predictor": 50, "r-m-v2-predictor": 50}


def test_the_route_claims_kserves_host_on_the_gateway() -> None:
    r = decide(rollout("m-v2", progressing()), "m-v2", T0 + timedelta(seconds=5), stable="m-v1")
    want = applied(r, "HTTPRoute")
    assert want["metadata"]["name"] == "r" and want["spec"]["hostnames"] == ["r-ns.example.com"]
    assert want["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "namespace": "kserve",
            "name": "kserve-ingress-gateway",
        }
    ]
    [owner] = want["metadata"]["ownerReferences"]
    assert owner["kind"] == "InferenceService" and owner["uid"] == "isvc-uid" and owner["controller"] is True
    headers = want["spec"]["rules"][0]["filters"][0]["requestHeaderModifier"]["set"]
    assert {h["name"] for h in headers} == {"KServe-Isvc-Name", "KServe-Isvc-Namespace"}
    kinds = [a.manifest["kind"] for a in r.actions if isinstance(a, Apply)]
    assert kinds.index("HTTPRoute") < kinds.index("InferenceService")  # a backend leaves before KServe drops it


def test_rollback_sends_everything_to_stable() -> None:
    from tests.unit.test_rollout import REGRESSED

    r = decide(rollout("m-v2", progressing()), "m-v2", T0 + timedelta(seconds=5), stable="m-v1", outcome=REGRESSED)
    assert route.weights(applied(r, "HTTPRoute")) == {"r-m-v1-predictor": 100}
    assert applied(r)["spec"]["canary"][0]["predictor"]["name"] == "m-v2", "drained first (scaleDownDelaySeconds)"
    now = rollout("m-v2", progressing())
    assert now.spec.canary is not None
    now.spec.canary.scale_down_delay_seconds = 0
    r = decide(now, "m-v2", T0 + timedelta(seconds=5), stable="m-v1", outcome=REGRESSED)
    assert route.weights(applied(r, "HTTPRoute")) == {"r-m-v1-predictor": 100} and "canary" not in applied(r)["spec"]


@pytest.mark.parametrize(
    ("parents", "generation", "ok"),
    [
        ([], 1, False),
        ([{"parentRef": {"name": "kserve-ingress-gateway", "namespace": "kserve"},
           "conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 1}]}], 2, False),  # stale
        ([{"parentRef": {"name": "other", "namespace": "kserve"},
           "conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 2}]}], 2, False),
        ([{"parentRef": {"name": "kserve-ingress-gateway", "namespace": "kserve"},
           "conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 2}]}], 2, True),
    ],
)  # fmt: skip
def test_route_acceptance_is_the_gateways_for_this_generation(
    parents: list[dict[str, Any]], generation: int, ok: bool
) -> None:
    live = {"metadata": {"namespace": "ns", "generation": generation}, "status": {"parents": parents}}
    assert route.accepted(live, "kserve/kserve-ingress-gateway") is ok


@pytest.mark.parametrize(
    ("artifact", "settings", "source"),
    [
        ({}, Settings(), None),  # no credentials: nothing of the Rollout's
        ({"credentialsSecretRef": {"name": "s3"}}, Settings(s3_endpoint="http://minio:9000"),
         ("s3", "http://minio:9000", "us-east-1")),
        ({"credentialsSecretRef": {"name": "s3"}, "endpoint": "https://s3.eu", "region": "eu-west-1"}, Settings(),
         ("s3", "https://s3.eu", "eu-west-1")),
        ({"serviceAccountName": "irsa"}, Settings(), None),  # workload identity: the user's ServiceAccount
    ],
)  # fmt: skip
def test_storage_identity_source(artifact: dict[str, Any], settings: Settings, source: Any) -> None:
    body = mv("m-v1")
    art = {k: v for k, v in body["spec"]["artifact"].items() if k != "credentialsSecretRef"}
    body["spec"]["artifact"] = {**art, **artifact}
    assert storage.source(version_of(body), settings) == source


def test_storage_initializer_gets_credentials_and_endpoint_through_a_service_account() -> None:
    """CreateSecretVolumeAndEnv reads the pod ServiceAccount's secrets; mountSecretCredential detects S3 by the
    configured secret key (AWS_SECRET_ACCESS_KEY in v0.20's configmap, awsSecretAccessKey by default);
    BuildS3EnvVars takes the endpoint and region from the Secret's serving.kserve.io/s3-* annotations."""
    r = rollout("m-v2", progressing())
    src = ("s3", "http://minio:9000", "us-east-1")
    live = serving.Live(READY_ISVC, None, {"s3": ({"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "k"}, "7")})
    wanted = serving.Serving(version_of(mv("m-v1")), version_of(mv("m-v2")), 10, True)
    actions, applied_now = serving.plan(r, wanted, live, Settings(s3_endpoint="http://minio:9000"), None, {})
    manifests = [a.manifest for a in actions if isinstance(a, Apply)]
    assert [m["kind"] for m in manifests] == ["Secret", "ServiceAccount", "HTTPRoute", "InferenceService"]
    secret, account, _, body = manifests
    name = storage.account_name("r", src)
    assert secret["metadata"]["name"] == name and account["secrets"] == [{"name": name}]
    assert set(secret["data"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "awsAccessKeyID", "awsSecretAccessKey"}
    assert secret["metadata"]["annotations"] == {"serving.kserve.io/s3-endpoint": "http://minio:9000",
                                                 "serving.kserve.io/s3-usehttps": "0",
                                                 "serving.kserve.io/s3-region": "us-east-1"}  # fmt: skip
    assert body["spec"]["predictor"]["serviceAccountName"] == name
    assert body["spec"]["canary"][0]["predictor"]["serviceAccountName"] == name
    # The digests never hold the credentials: other values under the same resourceVersion give other Secret data
    # but the very same digests.
    other = serving.Live(READY_ISVC, None, {"s3": ({"AWS_ACCESS_KEY_ID": "id2", "AWS_SECRET_ACCESS_KEY": "k2"}, "7")})
    other_actions, other_applied = serving.plan(r, wanted, other, Settings(s3_endpoint="http://minio:9000"), None, {})
    other_secret = next(a.manifest for a in other_actions if isinstance(a, Apply) and a.manifest["kind"] == "Secret")
    assert other_secret["data"] != secret["data"]
    assert other_applied == applied_now
    # Same credentials (same resourceVersion) and the ServiceAccount exists: nothing to write.
    live2 = serving.Live(READY_ISVC, None, live.credentials, frozenset({name}))
    again, _ = serving.plan(r, wanted, live2, Settings(s3_endpoint="http://minio:9000"), None, applied_now)
    assert not any(isinstance(a, Apply) and a.manifest["kind"] in ("Secret", "ServiceAccount") for a in again)
    rotated = serving.Live(READY_ISVC, None, {"s3": (live.credentials["s3"][0], "8")}, frozenset({name}))
    third, _ = serving.plan(r, wanted, rotated, Settings(s3_endpoint="http://minio:9000"), None, applied_now)
    assert [a.manifest["kind"] for a in third if isinstance(a, Apply)][:2] == ["Secret", "ServiceAccount"]


def test_serverless_predictors_get_the_storage_service_account_too() -> None:
    """KServe's pod webhook injects the same storage initializer into Knative revisions' pods: without the
    ServiceAccount it found no credentials on the real stack ("Unable to locate credentials")."""
    r = rollout("m-v2", progressing(), mode="Serverless")
    live = serving.Live(READY_ISVC, None, {"s3": ({"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "k"}, "7")})
    wanted = serving.Serving(version_of(mv("m-v1")), version_of(mv("m-v2")), 10, True)
    actions, _ = serving.plan(r, wanted, live, Settings(s3_endpoint="http://minio:9000"), None, {})
    manifests = [a.manifest for a in actions if isinstance(a, Apply)]
    assert [m["kind"] for m in manifests] == ["Secret", "ServiceAccount", "InferenceService"]
    name = storage.account_name("r", ("s3", "http://minio:9000", "us-east-1"))
    assert manifests[-1]["spec"]["predictor"]["serviceAccountName"] == name


@pytest.mark.parametrize(
    ("webhook_did", "writes"),
    [
        ({"annotations": {"serving.kserve.io/deploymentMode": "Standard", "modelFormat": "slipway"}}, False),
        ({"cpu": "1"}, False),  # the desired said 1000m: canonicalised by the API server
        ({"storageUri": "s3://models/other/model.joblib"}, True),  # what is served moved: put it back
    ],
)
def test_canonicalised_fields_do_not_cause_writes(webhook_did: dict[str, Any], writes: bool) -> None:
    r = rollout("m-v1", {"stableVersion": "m-v1"})
    r.spec.inference_service.predictor.resources = (
        type(r.spec.inference_service.predictor).model_fields["resources"].annotation.__args__[0](cpu="1000m")
    )  # type: ignore[union-attr]
    desired = isvc.inference_service(r, version_of(mv("m-v1")), None, 0, CTRL.settings)
    live = {"metadata": {**desired["metadata"]}, "spec": {"predictor": {**desired["spec"]["predictor"]}}}
    model = dict(live["spec"]["predictor"]["model"])
    if "annotations" in webhook_did:
        live["metadata"]["annotations"] = webhook_did["annotations"]
    if "cpu" in webhook_did:
        model["resources"] = {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}
    if "storageUri" in webhook_did:
        model["storageUri"] = webhook_did["storageUri"]
    live["spec"]["predictor"]["model"] = model
    assert isvc.needs_apply(live, desired, isvc.digest(desired)) is writes
    assert isvc.needs_apply(live, desired, "an older intent") is True


def test_standard_canaries_need_a_stable_replica() -> None:
    r = rollout("m-v1")
    r.spec.inference_service.predictor.min_replicas = 0
    assert conds(CTRL.decide(r, Observed(mv("m-v1")), T0))["Stalled"] == ("True", "InvalidSpec")


def test_a_logged_canary_is_reached_through_kserves_agent() -> None:
    """KServe v0.20 builds a Standard-mode canary's Service from minReplicas alone (reconcileCanaryDeployments
    in pkg/controller/v1beta1/inferenceservice/components/predictor.go), so it targets the model server's port
    and the canary's agent never logs a request: with a DriftMonitor the route reaches the canary through the
    Rollout's own Service to the agent (9081), applied before the route names it, deleted once it does not."""
    from slipway.controllers.base import Delete

    from tests.unit.test_rollout import live_route

    ctrl = RolloutController(Settings(s3_endpoint="http://s3.local:9000", drift_url="http://drift:8080"))
    observed = Observed(mv("m-v2"), mv("m-v1"), READY_ISVC, None, drift_monitor="dm")
    r = ctrl.decide(rollout("m-v2", progressing()), observed, T0 + timedelta(seconds=5))
    svc = applied(r, "Service")
    assert svc["metadata"]["name"] == "r-m-v2-logged"
    assert svc["spec"]["selector"] == {"app": "isvc.r-m-v2-predictor"}  # KServe's label on the canary's pods
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 9081, "protocol": "TCP"}]
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "isvc-uid"
    assert route.weights(applied(r, "HTTPRoute")) == {"r-m-v1-predictor": 90, "r-m-v2-logged": 10}
    kinds = [a.manifest["kind"] for a in r.actions if isinstance(a, Apply)]
    assert kinds.index("Service") < kinds.index("HTTPRoute")
    assert r.fields["applied"]["Service/r-m-v2-logged"] == isvc.digest(svc)

    # Rolled back: the route leaves the canary at once; its Service goes once the live route no longer names it.
    from tests.unit.test_rollout import REGRESSED

    status = progressing(applied=r.fields["applied"])
    observed = Observed(mv("m-v2"), mv("m-v1"), READY_ISVC, REGRESSED, drift_monitor="dm",
                        route=live_route({"r-m-v1-predictor": 90, "r-m-v2-logged": 10}))  # fmt: skip
    back = ctrl.decide(rollout("m-v2", status), observed, T0 + timedelta(seconds=9))
    assert route.weights(applied(back, "HTTPRoute")) == {"r-m-v1-predictor": 100}
    assert not [a for a in back.actions if isinstance(a, Delete)] and "Service/r-m-v2-logged" in back.fields["applied"]
    later = Observed(mv("m-v2"), mv("m-v1"), READY_ISVC, None, drift_monitor="dm",
                     route=live_route({"r-m-v1-predictor": 100}))  # fmt: skip
    fields = {k: v for k, v in back.fields.items() if k != "decisions"}
    done = ctrl.decide(rollout("m-v2", {**progressing(), **fields}), later, T0 + timedelta(seconds=30))
    assert Delete("Service", "r-m-v2-logged") in done.actions
    assert "Service/r-m-v2-logged" not in done.fields["applied"]


def test_a_logged_canarys_service_is_made_when_the_canary_is_asked_for_and_named_once_it_is_ready() -> None:
    """The gateway answers 503 for the share of a Service it knows no address for: made with the canary, the
    Service's EndpointSlice follows the pods from their start, so it has a ready address before the route
    names it (seen: a request at the manual gate failed when both came in one pass)."""
    ctrl = RolloutController(Settings(s3_endpoint="http://s3.local:9000", drift_url="http://drift:8080"))
    starting = Observed(mv("m-v2"), mv("m-v1"), served(("m-v2", 10, False)), None, drift_monitor="dm")
    r = ctrl.decide(rollout("m-v2", progressing(stepStartedAt=None)), starting, T0 + timedelta(seconds=5))
    assert applied(r, "Service")["metadata"]["name"] == "r-m-v2-logged"
    assert route.weights(applied(r, "HTTPRoute")) == {"r-m-v1-predictor": 100}  # not named while not ready
    ready = Observed(mv("m-v2"), mv("m-v1"), READY_ISVC, None, drift_monitor="dm")
    later = ctrl.decide(rollout("m-v2", progressing(stepStartedAt=None, applied=r.fields["applied"])), ready,
                        T0 + timedelta(seconds=9))  # fmt: skip
    assert not [a for a in later.actions if isinstance(a, Apply) and a.manifest["kind"] == "Service"]
    assert route.weights(applied(later, "HTTPRoute")) == {"r-m-v1-predictor": 90, "r-m-v2-logged": 10}


def test_a_version_with_the_stable_artifact_is_refused_before_its_canary_starts() -> None:
    """KServe's webhook refuses a predictor rename on an unchanged storageUri (validatePredictorNameChange in
    pkg/apis/serving/v1beta1/inference_service_validation.go): such a canary could never be promoted."""
    same = mv("m-v2")
    same["spec"]["artifact"]["uri"] = mv("m-v1")["spec"]["artifact"]["uri"]
    status = {"stableVersion": "m-v1", "phase": "Promoted"}
    r = CTRL.decide(rollout("m-v2", status), Observed(same, mv("m-v1"), READY_ISVC, None), T0)
    assert conds(r)["Stalled"] == ("True", "SameArtifact") and "register the artifact under a new key" in next(
        c.message for c in r.conditions if c.type == "Stalled"
    )
    assert "canaryVersion" not in r.fields and [e.reason for e in r.events] == ["SameArtifact"]
    assert "canary" not in applied(r)["spec"]  # stable keeps serving as it was


def test_a_retargeted_canary_drains_before_kserve_removes_it() -> None:
    """The target changes while m-v2's canary takes requests: the route leaves m-v2 at once, but its entry stays
    in spec.canary (KServe deletes a canary's Deployment as soon as its entry goes) for scaleDownDelaySeconds,
    then goes. Measured before this, requests in flight to m-v2 failed at every retarget."""
    status = progressing(started=T0)  # m-v2 at 10 %, its step clock running: the route sends it requests
    observed = Observed(mv("m-v3"), mv("m-v1"), READY_ISVC, None, draining=mv("m-v2"))
    r = CTRL.decide(rollout("m-v3", status), observed, T0 + timedelta(seconds=30))
    assert r.fields["canaryVersion"] == "m-v3" and r.fields["drainingVersion"] == "m-v2"
    assert r.fields["drainUntil"] == "2026-03-01T12:00:40Z"  # scaleDownDelaySeconds: 10
    entries = [(e["predictor"]["name"], e["trafficPercent"]) for e in applied(r)["spec"]["canary"]]
    assert entries == [("m-v3", 10), ("m-v2", 10)]  # m-v2 as KServe sized it
    assert "r-m-v2-predictor" not in route.weights(applied(r, "HTTPRoute"))
    retarget = next(d for d in r.fields["decisions"] if d["action"] == "Retarget")
    assert "m-v2 drains for 10s" in retarget["message"]

    fields = {k: v for k, v in r.fields.items() if k not in ("decisions", "applied")}
    later = CTRL.decide(rollout("m-v3", {**status, **fields}), observed, T0 + timedelta(seconds=41))
    assert [e["predictor"]["name"] for e in applied(later)["spec"]["canary"]] == ["m-v3"]
    assert later.fields["drainingVersion"] is None

    # A canary the route never sent anything (not ready yet) is replaced at once.
    fresh = progressing(stepStartedAt=None)
    r = CTRL.decide(rollout("m-v3", fresh), observed, T0 + timedelta(seconds=30))
    assert r.fields.get("drainingVersion") is None
    assert [e["predictor"]["name"] for e in applied(r)["spec"]["canary"]] == ["m-v3"]
