"""Table tests of the pure decide() functions and the status diff, with a fixed clock."""

from datetime import UTC, datetime
from typing import Any

import pytest
from slipway.api import DriftMonitor, Rollout
from slipway.controllers import driftmonitor, rollout
from slipway.controllers.base import Result, desired_status, invalid, merge_diff

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def conds(result: Result) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in result.conditions}


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
