"""Waiting on objects a spec points at: a missing reference is not an error, just not yet Ready."""

from __future__ import annotations

from typing import Any

from slipway import conditions
from slipway.conditions import is_true
from slipway.controllers.base import Event, Result

WAIT_SECONDS = 15.0


def missing(kind: str, name: str, field: str, status: dict[str, Any]) -> Result:
    message = f"{kind} {name!r} ({field}) does not exist in this namespace"
    reason = f"{kind}NotFound"
    return Result(conditions.progressing(reason, message), status, [Event("Warning", reason, message)], WAIT_SECONDS)


def not_ready(kind: str, obj: dict[str, Any], status: dict[str, Any]) -> Result | None:
    """A Result that waits for `obj` to be Ready, or None when it is."""
    conds = (obj.get("status") or {}).get("conditions") or []
    if is_true(conds, conditions.READY):
        return None
    name = obj["metadata"]["name"]
    ready = conditions.find(conds, conditions.READY) or {}
    why = ready.get("message") or ready.get("reason") or "no status yet"
    return Result(
        conditions.progressing(f"{kind}NotReady", f"{kind} {name!r} is not Ready: {why}"),
        status,
        requeue_after=WAIT_SECONDS,
    )
