"""DriftMonitor controller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slipway import conditions
from slipway.api.driftmonitor import DriftMonitor
from slipway.conditions import Cond
from slipway.controllers.base import Result
from slipway.controllers.references import missing
from slipway.kube import Kube

KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")


@dataclass(frozen=True)
class Observed:
    target: dict[str, Any] | None


def target_of(dm: DriftMonitor) -> tuple[str, str, str]:
    """(kind, name, field) of what the monitor watches; the schema guarantees exactly one is set."""
    if dm.spec.rollout_ref is not None:
        return "Rollout", dm.spec.rollout_ref.name, "spec.rolloutRef"
    assert dm.spec.inference_service_ref is not None
    return "InferenceService", dm.spec.inference_service_ref.name, "spec.inferenceServiceRef"


class DriftMonitorController:
    kind = DriftMonitor

    async def observe(self, obj: DriftMonitor, kube: Kube) -> Observed:
        ns = obj.metadata.get("namespace", "")
        kind, name, _ = target_of(obj)
        if kind == "Rollout":
            return Observed(await kube.get("rollouts", ns, name))
        return Observed(await kube.get_custom(*KSERVE[:2], KSERVE[2], ns, name))

    def decide(self, obj: DriftMonitor, observed: Observed, now: datetime) -> Result:
        kind, name, field = target_of(obj)
        fields: dict[str, Any] = {"state": "Pending"}
        if observed.target is None:
            result = missing(kind, name, field, fields)
        else:
            result = Result(
                conditions.progressing("Pending", f"waiting to attach the detector to {kind} {name!r}"), fields
            )
        result.conditions.append(Cond("DriftDetected", "Unknown", "NoWindowYet", "no window has been evaluated"))
        return result
