"""A Rollout's canary records (CanaryAnalysis, api/canaryanalysis.py): pure builders.

Every decision taken while a canary runs goes into that canary's record as well as into the Rollout's status
(which keeps the latest few). The record is applied whole: the decisions it held, the ones this pass took.

A pass writes its actions before its status, so a record may hold a decision whose status write then failed
(a conflict; the pass is decided again). Such a decision never happened: only those at or before the last
decision the status holds are kept from the record as read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slipway import contract
from slipway.api.canaryanalysis import MAX_RECORDED, CanaryAnalysis
from slipway.api.common import API_VERSION, GROUP, VERSION
from slipway.conditions import parse_time
from slipway.controllers.rollout_isvc import owner_reference

PLURAL = CanaryAnalysis.plural
GROUP_VERSION = (GROUP, VERSION)
ENDED = {"Promote": "Promoted", "Rollback": "RolledBack", "Abort": "Aborted", "Retarget": "Replaced"}


@dataclass(frozen=True)
class Canary:
    """One canary of a Rollout: what its record is named after and says in its spec."""

    version: str
    stable: str
    started_at: str  # status.canaryDeployedAt: when it was asked for, unique per attempt of a version


def record_name(rollout: str, canary: Canary) -> str:
    """`<rollout>-<version>-<yyyymmdd>-<hhmmss>`: the same version tried again is another record."""
    started = parse_time(canary.started_at)
    stamp = started.strftime("%Y%m%d-%H%M%S") if started else "unknown"
    return f"{rollout}-{canary.version}"[: 253 - len(stamp) - 1] + f"-{stamp}"


def committed(record: dict[str, Any] | None, last_time: str | None) -> tuple[list[dict[str, Any]], int]:
    """The decisions of `record` that the Rollout's status went on to hold (see the module's docstring), and how
    many older ones it had dropped."""
    limit = parse_time(last_time)
    if record is None or limit is None:
        return [], 0
    status = record.get("status") or {}
    kept = [d for d in status.get("decisions") or [] if (t := parse_time(d.get("time"))) is not None and t <= limit]
    return kept, int(status.get("decisionsDropped") or 0)


def manifest(
    rollout_meta: dict[str, Any], canary: Canary, decisions: list[dict[str, Any]], dropped: int
) -> dict[str, Any]:
    """The whole record after `decisions` (oldest first), as slipway applies it."""
    over = max(0, len(decisions) - MAX_RECORDED)
    kept = decisions[over:]
    last = kept[-1] if kept else {}
    verdicts = [d["verdict"] for d in kept if d.get("verdict")]
    phase = ENDED.get(last.get("action", ""), "Running")
    status: dict[str, Any] = {"phase": phase, "decisions": kept, "decisionsDropped": dropped + over}
    if verdicts:
        status["lastVerdict"] = verdicts[-1]
    if phase != "Running":
        status["finishedAt"] = last["time"]
    rollout = rollout_meta["name"]
    return {
        "apiVersion": API_VERSION,
        "kind": CanaryAnalysis.kind,
        "metadata": {
            "name": record_name(rollout, canary),
            "labels": {**contract.MANAGED, contract.ROLLOUT: rollout},
            "ownerReferences": [owner_reference(API_VERSION, "Rollout", rollout_meta)],
        },
        "spec": {
            "rolloutRef": {"name": rollout},
            "canaryVersion": canary.version,
            "stableVersion": canary.stable,
            "startedAt": canary.started_at,
        },
        "status": status,
    }
