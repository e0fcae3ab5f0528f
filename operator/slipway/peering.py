"""Whether this replica is the active one under Kopf's peering.

Kopf pauses a replica's watches when a peer with a higher priority is alive, but the requeue timers that
replica already scheduled (rollout analysis, drift polling) are ours, not Kopf's: without this check a paused
replica would go on reconciling every object it saw before it paused. The rule is Kopf's own (peering.py):
a live peer with a higher priority, or another live peer with the same priority, pauses us.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from slipway.conditions import parse_time
from slipway.config import Settings
from slipway.kube import Kube

CACHE_SECONDS = 2.0


def alive(peer: dict[str, Any], now: datetime) -> bool:
    seen = parse_time(peer.get("lastseen"))
    try:
        return seen is not None and seen + timedelta(seconds=int(peer.get("lifetime", 60))) > now
    except (ValueError, TypeError):
        return False


def is_active(peers: dict[str, Any], priority: int, now: datetime) -> bool:
    """Pure: `peers` is the peering object's status (peer id → priority, lifetime, lastseen), ours included."""
    live = [p for p in peers.values() if isinstance(p, dict) and alive(p, now)]
    higher = any(int(p.get("priority", 0)) > priority for p in live)
    same = sum(1 for p in live if int(p.get("priority", 0)) == priority)
    return not higher and same <= 1


class Leadership:
    """is_active() over the live peering object, read at most every CACHE_SECONDS. Standalone is always
    active; when the peering object cannot be read we act (every write is resourceVersion-guarded anyway)."""

    def __init__(self, kube: Kube, settings: Settings) -> None:
        self.kube, self.settings = kube, settings
        self.standalone = not settings.peering
        self._checked, self._active = 0.0, True

    async def active(self) -> bool:
        if self.standalone:
            return True
        if time.monotonic() - self._checked < CACHE_SECONDS:
            return self._active
        self._checked = time.monotonic()
        try:
            peers = await self.kube.peers(self.settings.peering_name, self.settings.namespaces)
        except Exception:  # noqa: BLE001 - a failed read must not stop reconciling
            return True
        self._active = peers is None or is_active(peers, self.settings.priority, datetime.now(UTC))
        return self._active
