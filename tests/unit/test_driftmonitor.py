"""Table tests of the DriftMonitor decision (pure) with a fixed clock, and of the Rollout side of drift:
the payload logger and the proposed candidate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slipway.api import DriftMonitor, Rollout
from slipway.config import Settings
from slipway.controllers import driftmonitor_plan as plan
from slipway.controllers import rollout as rollout_ctl
from slipway.controllers.base import Apply, Create, Patch, Result
from slipway.controllers.driftmonitor import DriftMonitorController, Observed
from slipway.controllers.rollout import RolloutController, monitor_of, target_of

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SETTINGS = Settings(drift_url="http://drift:8080", drift_poll_seconds=5)
CTRL = DriftMonitorController(SETTINGS)
TEMPLATE = {
    "modelName": "m",
    "framework": "sklearn",
    "algorithm": "sklearn.ensemble.RandomForestClassifier",
    "dataset": {"uri": "sklearn://breast_cancer"},
    "output": {"uri": "s3://models/m"},
}


def mv(name: str, reference: bool = True, ready: bool = True, credentials: str | None = None) -> dict[str, Any]:
    """A ModelVersion body; `credentials` names a Secret for both its artifact and its reference data."""
    spec: dict[str, Any] = {
        "modelName": "m", "version": int(name.rsplit("v", 1)[1]), "framework": "sklearn",
        "artifact": {"uri": f"s3://models/{name}/model.joblib", "sha256": "a" * 64, "format": "joblib"},
        "signature": {"inputs": [{"name": "a", "dtype": "float64"}, {"name": "b", "dtype": "float64"}]},
    }  # fmt: skip
    if reference:
        spec["referenceData"] = {"uri": f"s3://models/{name}/reference.parquet"}
    if credentials is not None:
        spec["artifact"]["credentialsSecretRef"] = {"name": credentials}
        if reference:
            spec["referenceData"]["credentialsSecretRef"] = {"name": credentials}
    status = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": spec, "status": status}


def monitor(status: dict[str, Any] | None = None, **retrain: Any) -> DriftMonitor:
    spec: dict[str, Any] = {"rolloutRef": {"name": "r"}, "detector": {"windowSize": 100}}
    spec["retrain"] = {"template": TEMPLATE, "consecutiveWindows": 2, "cooldownSeconds": 600, **retrain}
    return DriftMonitor.model_validate({"metadata": {"name": "dm", "namespace": "ns"}, "spec": spec, "status": status})


def rollout_body(stable: str | None = "m-v1", canary: str | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": {"modelVersionRef": {"name": "m-v1"}},
        "status": {"stableVersion": stable, "canaryVersion": canary},
    }


def result(seq: int, drift: bool, version: str = "m-v1", role: str = "stable", p: float = 0.5) -> dict[str, Any]:
    return {"seq": seq, "time": f"2026-03-01T11:{seq:02d}:00Z", "version": version, "role": role, "samples": 100,
            "drift": drift, "pValue": 0.001 if drift else p, "distance": 0.3,
            "featurePValues": {"a": 0.0005, "b": 0.4}}  # fmt: skip


def runtime(*results: dict[str, Any], samples: int = 7, error: str | None = None) -> dict[str, Any]:
    return {"versions": {"m-v1": {"samples": samples, "referenceLoaded": True, "referenceError": error}},
            "results": list(results)}  # fmt: skip


def configured(dm: DriftMonitor, observed: dict[str, Any]) -> dict[str, Any]:
    """The runtime's state as the monitor configured it (unless the test gives it a configuration of its own)."""
    state, stable, canary = observed.get("runtime"), observed.get("stable"), observed.get("canary")
    if state is None or "config" in state or stable is None or plan.reference_problem(stable):
        return observed
    versions = {stable["metadata"]["name"]: ("stable", stable)}
    if canary is not None and not plan.reference_problem(canary):
        versions[canary["metadata"]["name"]] = ("canary", canary)
    return observed | {"runtime": {**state, "config": plan.detector_config(dm, versions)}}


def decide(dm: DriftMonitor, now: datetime = NOW, **observed: Any) -> Result:
    base: dict[str, Any] = {"target": rollout_body(), "stable": mv("m-v1"), "runtime": runtime()}
    return CTRL.decide(dm, Observed(**configured(dm, base | observed)), now)


def conds(r: Result) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in r.conditions}


def creates(r: Result) -> list[dict[str, Any]]:
    return [a.manifest for a in r.actions if isinstance(a, Create)]


@pytest.mark.parametrize(
    ("observed", "reason", "state"),
    [
        ({"target": None}, "RolloutNotFound", "Pending"),
        ({"target": rollout_body(stable=None)}, "WaitingForVersion", "Pending"),
        ({"stable": None}, "ModelVersionNotFound", "Pending"),
        ({"stable": mv("m-v1", reference=False)}, "NoReferenceData", "Pending"),
        ({"runtime": None, "runtime_error": "connection refused"}, "DetectorUnavailable", "Pending"),
        ({"runtime": runtime(error="NoSuchKey")}, "ReferenceDataUnavailable", "Pending"),
        ({}, "Monitoring", "Monitoring"),
    ],
)
def test_readiness(observed: dict[str, Any], reason: str, state: str) -> None:
    r = decide(monitor(), **observed)
    assert conds(r)["Ready"][1] == reason
    assert r.fields["state"] == state
    assert conds(r)["DriftDetected"] == ("Unknown", "NoWindowYet")


def test_no_drift_url_is_stalled() -> None:
    r = DriftMonitorController(Settings()).decide(monitor(), Observed(rollout_body(), mv("m-v1")), NOW)
    assert conds(r)["Stalled"] == ("True", "DetectorNotConfigured")


def test_unknown_feature_is_stalled() -> None:
    dm = monitor()
    dm.spec.detector.features = ["a", "zzz"]
    r = decide(dm)
    assert conds(r)["Stalled"] == ("True", "NoReferenceData")
    assert "zzz" in r.conditions[0].message


def test_windows_fold_in_order_and_count_consecutive_drift() -> None:
    r = decide(monitor(consecutiveWindows=3), runtime=runtime(result(2, True), result(1, False), result(3, True)))
    assert r.fields["windowsEvaluated"] == 3
    assert r.fields["consecutiveDriftWindows"] == 2
    assert r.fields["lastResultSeq"] == 3
    assert r.fields["lastWindow"]["pValue"] == 0.001
    assert r.fields["lastCheckTime"] == "2026-03-01T11:03:00Z"
    assert r.fields["state"] == "Drifting"
    assert conds(r)["DriftDetected"] == ("True", "DriftDetected")
    assert [e.reason for e in r.events] == ["DriftDetected", "DriftDetected"]
    assert not creates(r)


def test_results_already_seen_change_nothing() -> None:
    status = {"modelVersion": "m-v1", "lastResultSeq": 3, "windowsEvaluated": 3, "state": "Monitoring"}
    r = decide(monitor(status), runtime=runtime(result(2, True), result(3, False)))
    assert "lastWindow" not in r.fields and not r.events


def test_canary_windows_are_kept_apart() -> None:
    rt = runtime(result(1, True, version="m-v2", role="canary"), result(2, False))
    r = decide(monitor(), target=rollout_body(canary="m-v2"), canary=mv("m-v2"), runtime=rt)
    assert r.fields["lastCanaryWindow"]["modelVersion"] == "m-v2"
    assert r.fields["windowsEvaluated"] == 1 and r.fields["consecutiveDriftWindows"] == 0


def test_persistent_drift_creates_one_job_named_after_the_window() -> None:
    r = decide(monitor(), runtime=runtime(result(1, True), result(2, True)))
    (job,) = creates(r)
    assert job["metadata"]["name"] == "dm-retrain-2"
    assert job["metadata"]["labels"][plan.MONITOR_LABEL] == "dm"
    assert job["metadata"]["annotations"][plan.DRIFTED_VERSION] == "m-v1"
    assert "2 drifted windows in a row" in job["metadata"]["annotations"][plan.REASON]
    assert job["spec"]["modelName"] == "m" and "ownerReferences" not in job["metadata"]
    assert r.fields["lastRetrain"]["jobName"] == "dm-retrain-2"
    assert r.fields["consecutiveDriftWindows"] == 0
    assert "RetrainingStarted" in [e.reason for e in r.events]


@pytest.mark.parametrize(
    ("since_last", "running", "created"),
    [
        (timedelta(seconds=60), [], False),  # within the cooldown
        (timedelta(seconds=601), [], True),
        (timedelta(seconds=601), [{"metadata": {"name": "dm-retrain-1"}, "status": {"phase": "Running"}}], False),
        (timedelta(seconds=601), [{"metadata": {"name": "dm-retrain-1"}, "status": {"phase": "Failed"}}], True),
    ],
)
def test_cooldown_and_concurrency(since_last: timedelta, running: list[dict[str, Any]], created: bool) -> None:
    last = {"jobName": "dm-retrain-1", "time": (NOW - since_last).isoformat().replace("+00:00", "Z")}
    status = {"modelVersion": "m-v1", "lastResultSeq": 5, "consecutiveDriftWindows": 1, "lastRetrain": last}
    r = decide(monitor(status), runtime=runtime(result(6, True)), jobs=running)
    assert bool(creates(r)) is created


def test_retraining_off_never_creates() -> None:
    r = decide(monitor(enabled=False), runtime=runtime(result(1, True), result(2, True), result(3, True)))
    assert not creates(r)


def test_promotion_switches_the_reference_and_resets_the_count() -> None:
    status = {"modelVersion": "m-v1", "consecutiveDriftWindows": 1, "lastResultSeq": 4}
    r = decide(monitor(status), target=rollout_body(stable="m-v3"), stable=mv("m-v3"),
               runtime={"versions": {"m-v3": {"samples": 0}}, "results": [result(5, True)]})  # fmt: skip
    assert r.fields["modelVersion"] == "m-v3"
    assert r.fields["consecutiveDriftWindows"] == 0  # the window of m-v1 no longer counts
    assert "ReferenceSwitched" in [e.reason for e in r.events]


def test_retrained_version_is_proposed_once_ready() -> None:
    last = {"jobName": "dm-retrain-2", "time": "2026-03-01T11:00:00Z", "reason": "x"}
    status = {"modelVersion": "m-v1", "lastRetrain": last}
    job = {"metadata": {"name": "dm-retrain-2"}, "status": {"phase": "Succeeded", "modelVersionRef": {"name": "m-v3"}}}
    waiting = decide(monitor(status, createRollout=True), jobs=[job], retrained=mv("m-v3", ready=False))
    assert waiting.fields["lastRetrain"]["modelVersion"] == "m-v3"
    assert not [a for a in waiting.actions if isinstance(a, Patch)]
    r = decide(monitor(status, createRollout=True), jobs=[job], retrained=mv("m-v3"))
    (patch,) = [a for a in r.actions if isinstance(a, Patch)]
    assert patch.ref["kind"] == "Rollout" and patch.ref["metadata"]["name"] == "r"
    assert patch.patch["metadata"]["annotations"] == {
        rollout_ctl.CANDIDATE: "m-v3",
        rollout_ctl.CANDIDATE_BASE: "m-v1",
        rollout_ctl.CANDIDATE_SOURCE: "DriftMonitor/dm",
    }
    assert r.fields["lastRetrain"]["proposed"] is True
    done = decide(monitor({**status, "lastRetrain": r.fields["lastRetrain"]}, createRollout=True), jobs=[job],
                  retrained=mv("m-v3"))  # fmt: skip
    assert not [a for a in done.actions if isinstance(a, Patch)]


def test_detector_config_names_each_version_and_no_credentials() -> None:
    versions = {
        "m-v1": ("stable", mv("m-v1", credentials="s3-creds")),
        "m-v2": ("canary", mv("m-v2", credentials="s3-creds")),
    }
    config = plan.detector_config(monitor(), versions)
    assert config["detector"]["method"] == "ks" and config["detector"]["windowSize"] == 100
    assert config["versions"]["m-v2"]["role"] == "canary"
    assert config["versions"]["m-v1"]["referenceUri"] == "s3://models/m-v1/reference.parquet"
    assert [c["name"] for c in config["versions"]["m-v1"]["signature"]["inputs"]] == ["a", "b"]
    # The ModelVersions name a Secret for their artifact and reference data; the config carries neither.
    assert all(m["spec"][part]["credentialsSecretRef"] == {"name": "s3-creds"}
               for _, m in versions.values() for part in ("artifact", "referenceData"))  # fmt: skip
    assert "credentialsSecretRef" not in str(config) and "s3-creds" not in str(config)


def test_isvc_target_gets_only_its_logger_patched() -> None:
    dm = DriftMonitor.model_validate({"metadata": {"name": "dm", "namespace": "ns"},
        "spec": {"inferenceServiceRef": {"name": "svc"}, "modelVersionRef": {"name": "m-v1"}}})  # fmt: skip
    isvc = {"metadata": {"name": "svc"}, "spec": {"predictor": {"model": {}}}}
    r = CTRL.decide(dm, Observed(isvc, mv("m-v1"), runtime=runtime()), NOW)
    (patch,) = [a for a in r.actions if isinstance(a, Patch)]
    assert patch.patch == {"spec": {"predictor": {"logger": {
        "mode": "request", "url": "http://drift:8080/v1/events/ns/dm/m-v1"}}}}  # fmt: skip


# -- the Rollout side ---------------------------------------------------------------------------------------------


def rollout(annotations: dict[str, str]) -> Rollout:
    return Rollout.model_validate({"metadata": {"name": "r", "namespace": "ns", "annotations": annotations},
                                   "spec": {"modelVersionRef": {"name": "m-v1"}}})  # fmt: skip


@pytest.mark.parametrize(
    ("annotations", "target"),
    [
        ({}, ("m-v1", None)),
        ({rollout_ctl.CANDIDATE: "m-v3", rollout_ctl.CANDIDATE_BASE: "m-v1", rollout_ctl.CANDIDATE_SOURCE: "D/x"},
         ("m-v3", "D/x")),
        # the spec moved on since the proposal: the person's choice wins
        ({rollout_ctl.CANDIDATE: "m-v3", rollout_ctl.CANDIDATE_BASE: "m-v0"}, ("m-v1", None)),
    ],
)  # fmt: skip
def test_candidate_holds_while_the_spec_is_unchanged(annotations: dict[str, str], target: Any) -> None:
    assert target_of(rollout(annotations)) == target


def test_logger_points_each_version_at_its_own_window() -> None:
    ctl = RolloutController(SETTINGS)
    r = Rollout.model_validate({"metadata": {"name": "r", "namespace": "ns", "uid": "u"},
        "spec": {"modelVersionRef": {"name": "m-v2"}, "canary": {"steps": [{"weight": 10, "holdSeconds": 60}]}},
        "status": {"stableVersion": "m-v1"}})  # fmt: skip
    from slipway.controllers.rollout import Observed as RObserved

    out = ctl.decide(r, RObserved(mv("m-v2"), mv("m-v1"), None, None, "dm"), NOW)
    [apply] = [
        a for a in out.actions if isinstance(a, Apply) and a.manifest["kind"] == "InferenceService"
    ]  # no route: the service has no URL
    spec = apply.manifest["spec"]
    assert spec["predictor"]["logger"]["url"] == "http://drift:8080/v1/events/ns/dm/m-v1"
    assert spec["canary"][0]["predictor"]["logger"]["url"] == "http://drift:8080/v1/events/ns/dm/m-v2"
    assert out.fields["driftMonitor"] == "dm"
    # No monitor any more: the logger leaves the applied intent (server-side apply drops what slipway no longer
    # holds), and a logger slipway does not own alone is cleared by a merge patch.
    live = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "r", "namespace": "ns", "uid": "i"}, "spec": spec}  # fmt: skip
    plain = ctl.decide(r, RObserved(mv("m-v2"), mv("m-v1"), live, None, None), NOW)
    applies = [a for a in plain.actions if isinstance(a, Apply)]
    assert "logger" not in applies[-1].manifest["spec"]["predictor"]
    [patch] = [a for a in plain.actions if isinstance(a, Patch)]
    assert patch.patch["spec"]["predictor"]["logger"] is None


def test_monitor_of_picks_the_first_watching_monitor() -> None:
    monitors = [{"metadata": {"name": n}, "spec": {"rolloutRef": {"name": t}}} for n, t in
                (("z", "r"), ("b", "r"), ("a", "other"))]  # fmt: skip
    assert monitor_of(rollout({}), monitors) == "b"
    assert monitor_of(rollout({}), []) is None


def test_a_monitor_wakes_its_rollout_only_for_a_spec_the_operator_has_not_seen() -> None:
    related = CTRL.related
    new = {"metadata": {"name": "dm", "generation": 1}, "spec": {"rolloutRef": {"name": "r"}}}
    assert related(new) == [("Rollout", "r")]
    windows_moved = {**new, "status": {"observedGeneration": 1, "windowsEvaluated": 9}}
    assert related(windows_moved) == []  # every window's status write would wake it otherwise
    retargeted = {**windows_moved, "metadata": {"name": "dm", "generation": 2}}
    assert related(retargeted) == [("Rollout", "r")]
