from datetime import UTC, datetime, timedelta

import pytest
from slipway import conditions
from slipway.conditions import Cond, merge

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_new_condition_gets_now_and_generation() -> None:
    [c] = merge([], [Cond("Ready", "False", "Pending", "waiting")], 3, T0)
    assert c == {
        "type": "Ready",
        "status": "False",
        "reason": "Pending",
        "message": "waiting",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 3,
    }


@pytest.mark.parametrize(
    ("old_status", "new_status", "want_time"),
    [
        ("False", "False", "2026-01-01T00:00:00Z"),  # same status, new reason: time kept
        ("False", "True", "2026-01-01T00:05:00Z"),  # transition: time moves
        ("True", "Unknown", "2026-01-01T00:05:00Z"),
    ],
)
def test_last_transition_time_moves_only_on_status_change(old_status: str, new_status: str, want_time: str) -> None:
    first = merge([], [Cond("Ready", old_status, "A")], 1, T0)  # type: ignore[arg-type]
    [second] = merge(first, [Cond("Ready", new_status, "B", "m")], 2, T1)  # type: ignore[arg-type]
    assert second["lastTransitionTime"] == want_time
    assert second["reason"] == "B" and second["observedGeneration"] == 2


def test_conditions_not_named_are_kept() -> None:
    current = merge([], [Cond("Verified", "True", "ChecksumMatches")], 1, T0)
    out = merge(current, [Cond("Ready", "True", "Ready")], 2, T1)
    assert [c["type"] for c in out] == ["Ready", "Verified"]
    assert out[1]["observedGeneration"] == 1


def test_reason_must_be_camel_case() -> None:
    with pytest.raises(ValueError, match="CamelCase"):
        Cond("Ready", "True", "not camel")


@pytest.mark.parametrize(
    ("helper", "ready", "reconciling", "stalled"),
    [
        (conditions.ready, "True", "False", "False"),
        (conditions.progressing, "False", "True", "False"),
        (conditions.stalled, "False", "False", "True"),
        (conditions.finished_unready, "False", "False", "False"),
    ],
)
def test_kstatus_triplets(helper, ready: str, reconciling: str, stalled: str) -> None:  # type: ignore[no-untyped-def]
    conds = {c.type: c.status for c in helper("Why", "message")}
    assert conds == {"Ready": ready, "Reconciling": reconciling, "Stalled": stalled}


def test_is_true_and_find() -> None:
    conds = merge([], conditions.ready("Done"), 1, T0)
    assert conditions.is_true(conds, "Ready")
    assert not conditions.is_true(conds, "Stalled")
    assert conditions.find(conds, "Missing") is None
