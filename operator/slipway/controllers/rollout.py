"""Rollout controller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slipway import conditions
from slipway.api.rollout import Rollout
from slipway.controllers.base import Result, invalid
from slipway.controllers.references import missing, not_ready
from slipway.kube import Kube


@dataclass(frozen=True)
class Observed:
    model_version: dict[str, Any] | None


def problems(rollout: Rollout) -> list[str]:
    found = []
    canary = rollout.spec.canary
    if canary and canary.analysis is None and any(s.hold_seconds is None and not s.manual_gate for s in canary.steps):
        found.append("a canary step without analysis needs holdSeconds or manualGate, or nothing would end it")
    return found


class RolloutController:
    kind = Rollout

    async def observe(self, obj: Rollout, kube: Kube) -> Observed:
        ns = obj.metadata.get("namespace", "")
        return Observed(await kube.get("modelversions", ns, obj.spec.model_version_ref.name))

    def decide(self, obj: Rollout, observed: Observed, now: datetime) -> Result:
        if found := problems(obj):
            return invalid(found)
        target = obj.spec.model_version_ref.name
        fields = {"phase": "Pending"}
        if observed.model_version is None:
            return missing("ModelVersion", target, "spec.modelVersionRef", fields)
        if waiting := not_ready("ModelVersion", observed.model_version, fields):
            return waiting
        return Result(conditions.progressing("Pending", f"waiting to serve ModelVersion {target!r}"), fields)
