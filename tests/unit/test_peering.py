"""Kopf's peering rule, as slipway's requeue timers apply it (operator/slipway/peering.py)."""

from datetime import UTC, datetime, timedelta

import pytest
from slipway.peering import is_active

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def peer(priority: int, seen_ago: float = 5, lifetime: int = 60) -> dict[str, object]:
    return {"priority": priority, "lifetime": lifetime, "lastseen": (NOW - timedelta(seconds=seen_ago)).isoformat()}


@pytest.mark.parametrize(
    ("peers", "active"),
    [
        ({}, True),  # not announced yet: nobody else either
        ({"me": peer(10)}, True),
        ({"me": peer(10), "other": peer(5)}, True),
        ({"me": peer(10), "other": peer(20)}, False),  # a higher priority is alive: Kopf paused us
        ({"me": peer(10), "other": peer(20, seen_ago=120)}, True),  # ... but it is dead
        ({"me": peer(10), "other": peer(10)}, False),  # a tie pauses everyone, as Kopf does
        ({"me": peer(10), "other": {"priority": 99}}, True),  # unreadable entries count as dead
    ],
)
def test_is_active(peers: dict[str, dict[str, object]], active: bool) -> None:
    assert is_active(peers, 10, NOW) is active
