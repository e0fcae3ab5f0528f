"""Conditions by the Kubernetes API conventions, with kstatus' Ready / Reconciling / Stalled.

Pure functions over plain dicts (the status as the API stores it), so they are trivially table-tested
and never depend on a clock: `now` is always passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]
READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"
_REASON = re.compile(r"^[A-Z][A-Za-z0-9]*$")


def rfc3339(now: datetime) -> str:
    return now.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    """A time the API stores (RFC 3339, as rfc3339() writes it; without a zone, UTC), or None when there is none
    or it is not a time (a status is writable by anyone allowed to, and Kopf's peering objects are free-form).
    The one parser of times in the project."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Cond:
    """A desired condition, before lastTransitionTime and observedGeneration are filled in."""

    type: str
    status: Status
    reason: str
    message: str = ""

    def __post_init__(self) -> None:
        if not _REASON.match(self.reason):
            raise ValueError(f"condition reason must be CamelCase: {self.reason!r}")


def merge(
    current: list[dict[str, Any]], desired: list[Cond], generation: int | None, now: datetime
) -> list[dict[str, Any]]:
    """Conditions after applying `desired`: lastTransitionTime moves only when status changes.

    Types in `current` that `desired` does not name are kept as they are, so a kind can own
    conditions it does not recompute on every pass.
    """
    by_type = {c.get("type"): c for c in current}
    out: list[dict[str, Any]] = []
    for want in desired:
        old = by_type.pop(want.type, None)
        changed = old is None or old.get("status") != want.status
        entry: dict[str, Any] = {
            "type": want.type,
            "status": want.status,
            "reason": want.reason,
            "message": want.message,
            "lastTransitionTime": rfc3339(now)
            if changed or old is None
            else old.get("lastTransitionTime", rfc3339(now)),
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        out.append(entry)
    out.extend(by_type.values())
    return out


def find(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    """The condition of a type, or None. Entries that are not objects are passed over: a status is read back from
    the API, where anyone with write access to it may have put anything (the plugin reads it through here too)."""
    return next((c for c in conditions if isinstance(c, dict) and c.get("type") == type_), None)


def is_true(conditions: list[dict[str, Any]], type_: str) -> bool:
    c = find(conditions, type_)
    return c is not None and c.get("status") == "True"


def ready(reason: str, message: str = "") -> list[Cond]:
    """The object reached its desired state."""
    return [Cond(READY, "True", reason, message), Cond(RECONCILING, "False", reason), Cond(STALLED, "False", reason)]


def progressing(reason: str, message: str) -> list[Cond]:
    """The operator is working towards the desired state and expects to get there."""
    return [
        Cond(READY, "False", reason, message),
        Cond(RECONCILING, "True", reason, message),
        Cond(STALLED, "False", reason),
    ]


def stalled(reason: str, message: str) -> list[Cond]:
    """The operator cannot make progress without a change by a person (bad spec, permanent failure)."""
    return [
        Cond(READY, "False", reason, message),
        Cond(RECONCILING, "False", reason),
        Cond(STALLED, "True", reason, message),
    ]


def finished_unready(reason: str, message: str) -> list[Cond]:
    """Done and not Ready, but nothing is wrong with the spec (e.g. a failed training run)."""
    return [Cond(READY, "False", reason, message), Cond(RECONCILING, "False", reason), Cond(STALLED, "False", reason)]
