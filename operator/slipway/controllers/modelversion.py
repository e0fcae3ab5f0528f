"""ModelVersion controller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slipway import conditions
from slipway.api.common import Gate
from slipway.api.modelversion import ModelVersion
from slipway.conditions import Cond
from slipway.controllers.base import Result
from slipway.kube import Kube


@dataclass(frozen=True)
class Observed:
    served_by: tuple[str, ...]


def evaluate_gates(gates: list[Gate], metrics: dict[str, float]) -> list[str]:
    """Every gate the metrics fail, as a sentence; empty when all pass."""
    failures = []
    for gate in gates:
        value = metrics.get(gate.metric)
        if value is None:
            failures.append(f"metric {gate.metric} is missing")
        elif gate.min is not None and value < gate.min:
            failures.append(f"{gate.metric}={value:.4g} is below the minimum {gate.min:g}")
        elif gate.max is not None and value > gate.max:
            failures.append(f"{gate.metric}={value:.4g} is above the maximum {gate.max:g}")
    return failures


def headline(mv: ModelVersion) -> str | None:
    metrics = mv.spec.metrics
    name = mv.spec.headline_metric or (mv.spec.gates[0].metric if mv.spec.gates else None) or next(iter(metrics), None)
    if name is None or name not in metrics:
        return None
    return f"{name}={metrics[name]:.4g}"


def serves(rollout: dict[str, Any], name: str) -> bool:
    spec, status = rollout.get("spec") or {}, rollout.get("status") or {}
    ref = spec.get("modelVersionRef") or {}
    return name in (ref.get("name"), status.get("stableVersion"), status.get("canaryVersion"))


class ModelVersionController:
    kind = ModelVersion

    async def observe(self, obj: ModelVersion, kube: Kube) -> Observed:
        name = obj.metadata.get("name", "")
        rollouts = await kube.list("rollouts", obj.metadata.get("namespace", ""))
        return Observed(tuple(sorted(r["metadata"]["name"] for r in rollouts if serves(r, name))))

    def decide(self, obj: ModelVersion, observed: Observed, now: datetime) -> Result:
        failures = evaluate_gates(obj.spec.gates, obj.spec.metrics)
        gates = (
            Cond("GatesPassed", "False", "GatesFailed", "; ".join(failures))
            if failures
            else Cond("GatesPassed", "True", "GatesPassed", f"{len(obj.spec.gates)} gate(s) passed")
        )
        verified = Cond(
            "Verified", "Unknown", "VerificationPending", "the artifact has not been checked against S3 yet"
        )
        if failures:
            summary = conditions.finished_unready("GatesFailed", "; ".join(failures))
        else:
            summary = conditions.progressing("VerificationPending", "waiting for the artifact to be verified")
        fields = {"headline": headline(obj), "servedBy": list(observed.served_by)}
        return Result([*summary, verified, gates], fields)
