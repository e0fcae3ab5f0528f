"""Table tests of the pure decide() functions and the status diff, with a fixed clock."""

from datetime import UTC, datetime
from typing import Any

import pytest
from slipway.api import DriftMonitor, ModelVersion, Rollout, TrainingJob
from slipway.api.common import Gate
from slipway.controllers import driftmonitor, modelversion, rollout, trainingjob
from slipway.controllers.base import Result, desired_status, invalid, merge_diff

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def conds(result: Result) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in result.conditions}


def job(**spec: Any) -> TrainingJob:
    base = {
        "modelName": "m",
        "framework": "sklearn",
        "algorithm": "sklearn.svm.SVC",
        "dataset": {"uri": "sklearn://iris"},
        "output": {"uri": "s3://bucket/m", "credentialsSecretRef": {"name": "s3"}},
    }
    return TrainingJob.model_validate({"metadata": {"name": "j", "namespace": "ns"}, "spec": {**base, **spec}})


@pytest.mark.parametrize(
    ("spec", "secret", "want_ready_reason", "stalled"),
    [
        ({}, True, "Pending", "False"),
        ({}, False, "SecretNotFound", "False"),
        ({"algorithm": "svc"}, True, "InvalidSpec", "True"),
        ({"framework": "pytorch", "algorithm": "resnet"}, True, "InvalidSpec", "True"),
        ({"resources": {"gpus": 1}}, True, "InvalidSpec", "True"),
        ({"runPolicy": {"suspend": True}}, True, "Suspended", "False"),
    ],
)
def test_trainingjob_decide(spec: dict[str, Any], secret: bool, want_ready_reason: str, stalled: str) -> None:
    result = trainingjob.TrainingJobController().decide(job(**spec), trainingjob.Observed(secret), NOW)
    c = conds(result)
    assert c["Ready"] == ("False", want_ready_reason)
    assert c["Stalled"][0] == stalled


def test_secret_not_found_names_the_secret_and_requeues() -> None:
    result = trainingjob.TrainingJobController().decide(job(), trainingjob.Observed(False), NOW)
    assert "'s3'" in result.conditions[0].message and result.requeue_after
    assert [e.reason for e in result.events] == ["SecretNotFound"]


@pytest.mark.parametrize(
    ("gates", "metrics", "failures"),
    [
        ([], {}, []),
        ([Gate(metric="accuracy", min=0.9)], {"accuracy": 0.95}, []),
        ([Gate(metric="accuracy", min=0.9)], {"accuracy": 0.85}, ["accuracy=0.85 is below the minimum 0.9"]),
        ([Gate(metric="rmse", max=1.0)], {"rmse": 2.0}, ["rmse=2 is above the maximum 1"]),
        ([Gate(metric="f1", min=0.5)], {}, ["metric f1 is missing"]),
    ],
)
def test_evaluate_gates(gates: list[Gate], metrics: dict[str, float], failures: list[str]) -> None:
    assert modelversion.evaluate_gates(gates, metrics) == failures


def mv(metrics: dict[str, float], gates: list[dict[str, Any]]) -> ModelVersion:
    return ModelVersion.model_validate(
        {
            "metadata": {"name": "m-v1", "namespace": "ns"},
            "spec": {
                "modelName": "m",
                "version": 1,
                "framework": "sklearn",
                "artifact": {"uri": "s3://bucket/k", "sha256": "a" * 64, "format": "joblib"},
                "metrics": metrics,
                "gates": gates,
            },
        }
    )


def test_modelversion_failing_gate_is_not_ready_and_not_stalled() -> None:
    result = modelversion.ModelVersionController().decide(
        mv({"accuracy": 0.5}, [{"metric": "accuracy", "min": 0.9}]), modelversion.Observed(()), NOW
    )
    c = conds(result)
    assert c["GatesPassed"] == ("False", "GatesFailed") and c["Ready"] == ("False", "GatesFailed")
    assert c["Stalled"][0] == "False"
    assert result.fields["headline"] == "accuracy=0.5"


def test_modelversion_reports_serving_rollouts() -> None:
    result = modelversion.ModelVersionController().decide(mv({}, []), modelversion.Observed(("r1",)), NOW)
    assert result.fields["servedBy"] == ["r1"]
    assert conds(result)["GatesPassed"] == ("True", "GatesPassed")


@pytest.mark.parametrize(
    ("rollout_body", "name", "serves"),
    [
        ({"spec": {"modelVersionRef": {"name": "a"}}}, "a", True),
        ({"spec": {"modelVersionRef": {"name": "b"}}, "status": {"stableVersion": "a"}}, "a", True),
        ({"spec": {"modelVersionRef": {"name": "b"}}, "status": {"canaryVersion": "c"}}, "a", False),
    ],
)
def test_serves(rollout_body: dict[str, Any], name: str, serves: bool) -> None:
    assert modelversion.serves(rollout_body, name) is serves


def ro(**spec: Any) -> Rollout:
    return Rollout.model_validate(
        {"metadata": {"name": "r", "namespace": "ns"}, "spec": {"modelVersionRef": {"name": "m-v1"}, **spec}}
    )


READY_MV = {"metadata": {"name": "m-v1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
UNREADY_MV = {
    "metadata": {"name": "m-v1"},
    "status": {"conditions": [{"type": "Ready", "status": "False", "message": "x"}]},
}


@pytest.mark.parametrize(
    ("target", "reason"),
    [(None, "ModelVersionNotFound"), (UNREADY_MV, "ModelVersionNotReady"), (READY_MV, "Pending")],
)
def test_rollout_waits_for_its_model_version(target: dict[str, Any] | None, reason: str) -> None:
    result = rollout.RolloutController().decide(ro(), rollout.Observed(target), NOW)
    assert conds(result)["Ready"] == ("False", reason)
    assert conds(result)["Reconciling"][0] == "True"


def test_rollout_step_without_an_end_is_invalid() -> None:
    result = rollout.RolloutController().decide(ro(canary={"steps": [{"weight": 10}]}), rollout.Observed(READY_MV), NOW)
    assert conds(result)["Stalled"] == ("True", "InvalidSpec")


def test_driftmonitor_waits_for_target() -> None:
    dm = DriftMonitor.model_validate(
        {
            "metadata": {"namespace": "ns"},
            "spec": {"inferenceServiceRef": {"name": "i"}, "modelVersionRef": {"name": "m"}},
        }
    )
    result = driftmonitor.DriftMonitorController().decide(dm, driftmonitor.Observed(None), NOW)
    assert conds(result)["Ready"] == ("False", "InferenceServiceNotFound")
    assert conds(result)["DriftDetected"][0] == "Unknown"


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        ({"a": 1}, {"a": 1}, {}),
        ({"a": 1}, {"a": 2}, {"a": 2}),
        ({"a": 1, "b": 2}, {"a": 1}, {"b": None}),
        ({"w": {"x": 1, "y": 2}}, {"w": {"x": 1}}, {"w": {"y": None}}),
        ({"l": [1, 2]}, {"l": [1]}, {"l": [1]}),
        ({}, {"n": None}, {"n": None}),
    ],
)
def test_merge_diff(old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any]) -> None:
    assert merge_diff(old, new) == patch


def test_desired_status_is_stable_when_nothing_changed() -> None:
    first = desired_status({}, invalid(["spec.x: bad"]), 4, NOW)
    again = desired_status(first, invalid(["spec.x: bad"]), 4, datetime(2027, 1, 1, tzinfo=UTC))
    assert again == first and first["observedGeneration"] == 4
