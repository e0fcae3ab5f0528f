"""Table tests of the pure decide() functions and the status diff, with a fixed clock."""

from datetime import UTC, datetime
from typing import Any

import pytest
from slipway.controllers.base import Result, desired_status, invalid, merge_diff

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def conds(result: Result) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in result.conditions}


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
