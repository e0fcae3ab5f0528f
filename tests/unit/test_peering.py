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


def test_a_replica_killed_without_a_goodbye_holds_its_standby_back_for_the_peering_lifetime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kopf
    from slipway.cli import configure
    from slipway.config import Settings

    kopf_settings = kopf.OperatorSettings()
    configure(Settings.from_env(), kopf_settings)
    assert kopf_settings.peering.lifetime == 15  # Kopf's own default is 60: a minute per failover
    monkeypatch.setenv("SLIPWAY_PEERING_LIFETIME", "30")
    configure(Settings.from_env(), kopf_settings)
    assert kopf_settings.peering.lifetime == 30
    # The standby takes over once the dead replica's entry runs out, whatever lifetime it announced.
    dead_at = 31
    assert not is_active({"me": peer(10), "dead": peer(20, seen_ago=dead_at - 2, lifetime=30)}, 10, NOW)
    assert is_active({"me": peer(10), "dead": peer(20, seen_ago=dead_at, lifetime=30)}, 10, NOW)
    Settings(peering_lifetime=10).validate()  # the control: the shortest Kopf can renew in time
    with pytest.raises(ValueError, match="SLIPWAY_PEERING_LIFETIME"):
        Settings(peering_lifetime=9).validate()
