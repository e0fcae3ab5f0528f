"""Pure pieces of the DriftMonitor decision: the detector configuration the runtime should hold, the window
results folded into status, and the retraining job a persistent drift asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from slipway import contract
from slipway.api.common import API_VERSION
from slipway.api.driftmonitor import DriftMonitor
from slipway.conditions import parse_time, rfc3339
from slipway.sharding import shard_labels, shard_of

MONITOR_LABEL = contract.DRIFT_MONITOR
REASON, WINDOW = contract.RETRAIN_REASON, contract.DRIFT_WINDOW
DRIFTED_VERSION, P_VALUE = contract.DRIFTED_VERSION, contract.DRIFT_P_VALUE


def reference_problem(mv: dict[str, Any]) -> str | None:
    """Why a ModelVersion cannot be a drift baseline, or None."""
    spec, name = mv.get("spec") or {}, mv["metadata"]["name"]
    if not (spec.get("referenceData") or {}).get("uri"):
        return f"ModelVersion {name!r} has no spec.referenceData: the baseline sample of training inputs is missing"
    if not (spec.get("signature") or {}).get("inputs"):
        return f"ModelVersion {name!r} has no spec.signature: the detector cannot tell its inputs apart"
    return None


def detector_config(dm: DriftMonitor, versions: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The runtime's configuration for this monitor; `versions` maps a version name to (role, ModelVersion).
    Credentials are not part of it: the runtime reads reference data with its own ServiceAccount or Secret."""
    out: dict[str, Any] = {}
    for name, (role, mv) in sorted(versions.items()):
        spec = mv["spec"]
        ref = spec["referenceData"]
        out[name] = {
            "role": role,
            "referenceUri": ref["uri"],
            "endpoint": ref.get("endpoint") or spec["artifact"].get("endpoint"),
            "region": ref.get("region") or spec["artifact"].get("region"),
            "signature": {"inputs": [{"name": c["name"], "dtype": c["dtype"]} for c in spec["signature"]["inputs"]]},
        }
    return {"detector": dm.spec.detector.wire(), "versions": out}


def unknown_features(dm: DriftMonitor, mv: dict[str, Any]) -> list[str]:
    names = {c["name"] for c in mv["spec"]["signature"]["inputs"]}
    return [f for f in dm.spec.detector.features if f not in names]


@dataclass
class Windows:
    """Status after folding in the runtime's new results, oldest first."""

    fields: dict[str, Any]
    drifted: list[dict[str, Any]] = field(default_factory=list)  # new drifted stable windows


def window_of(result: dict[str, Any]) -> dict[str, Any]:
    keep = {
        "time": result.get("time"),
        "modelVersion": result.get("version"),
        "samples": int(result.get("samples") or 0),
        "drift": bool(result.get("drift")),
        "pValue": result.get("pValue"),
        "distance": result.get("distance"),
        "featurePValues": result.get("featurePValues") or {},
    }
    return {k: v for k, v in keep.items() if v is not None}


def fold(status: dict[str, Any], stable: str, results: list[dict[str, Any]]) -> Windows:
    """Take every result newer than status.lastResultSeq, in order. Only the stable version's windows count
    towards drift; canary windows are shown apart. A runtime whose sequence went backwards lost its state
    (e.g. an emptyDir): start counting again from what it has."""
    last = int(status.get("lastResultSeq") or 0)
    seqs = [int(r.get("seq") or 0) for r in results]
    if seqs and max(seqs) < last:
        last = 0
    fields: dict[str, Any] = {}
    evaluated = int(status.get("windowsEvaluated") or 0)
    consecutive = int(status.get("consecutiveDriftWindows") or 0)
    out = Windows(fields)
    for result in sorted(results, key=lambda r: int(r.get("seq") or 0)):
        seq = int(result.get("seq") or 0)
        if seq <= last:
            continue
        fields["lastResultSeq"] = last = seq
        if result.get("role") == "canary":
            fields["lastCanaryWindow"] = window_of(result)
            continue
        if result.get("version") != stable:
            continue  # a window of the previous reference, finished just before the switch
        evaluated += 1
        consecutive = consecutive + 1 if result.get("drift") else 0
        fields |= {"lastWindow": window_of(result), "lastCheckTime": result.get("time")}
        if result.get("drift"):
            out.drifted.append(result)
    if "lastWindow" in fields:
        fields |= {"windowsEvaluated": evaluated, "consecutiveDriftWindows": consecutive}
    return out


def describe_window(window: dict[str, Any], p_value: float) -> str:
    """One sentence: the corrected p-value against the level, and the features that moved most."""
    features = sorted((window.get("featurePValues") or {}).items(), key=lambda kv: kv[1])[:3]
    worst = ", ".join(f"{k} (p={v:.2g})" for k, v in features)
    p = window.get("pValue")
    shown = f"p={p:.3g}" if isinstance(p, int | float) else "p=?"
    verdict = "drift" if window.get("drift") else "no drift"
    return (
        f"{verdict} in {window.get('samples', 0)} samples of {window.get('modelVersion')}: {shown} vs {p_value:g}"
        + (f"; lowest: {worst}" if worst else "")
    )


def finished(job: dict[str, Any]) -> bool:
    return (job.get("status") or {}).get("phase") in ("Succeeded", "Failed")


@dataclass(frozen=True)
class RetrainVerdict:
    create: bool
    message: str


def retrain_verdict(
    dm: DriftMonitor, status: dict[str, Any], jobs: list[dict[str, Any]], now: datetime
) -> RetrainVerdict:
    """Whether drift that persisted asks for a new TrainingJob now; the cooldown is measured from
    status.lastRetrain, so it holds across operator restarts."""
    retrain = dm.spec.retrain
    consecutive = int(status.get("consecutiveDriftWindows") or 0)
    if retrain is None or not retrain.enabled:
        return RetrainVerdict(False, "retraining is off (spec.retrain)")
    if consecutive < retrain.consecutive_windows:
        return RetrainVerdict(False, f"{consecutive}/{retrain.consecutive_windows} drifted windows in a row")
    last = parse_time((status.get("lastRetrain") or {}).get("time"))
    if last:
        until = last + timedelta(seconds=retrain.cooldown_seconds)
        if now < until:
            return RetrainVerdict(False, f"drift persists but retraining is in cooldown until {rfc3339(until)}")
    running = [j["metadata"]["name"] for j in jobs if not finished(j)]
    if len(running) >= retrain.max_concurrent:
        return RetrainVerdict(False, f"retraining already running ({', '.join(sorted(running))}; maxConcurrent "
                              f"{retrain.max_concurrent})")  # fmt: skip
    return RetrainVerdict(True, f"{consecutive} drifted windows in a row")


def job_name(dm: DriftMonitor, seq: int) -> str:
    """Named after the window that triggered it: a crash between create and the status write finds the same
    name again, so the job is created once."""
    return f"{dm.metadata['name'][:40].rstrip('-')}-retrain-{seq}"


def retrain_job(dm: DriftMonitor, name: str, window: dict[str, Any], reason: str) -> dict[str, Any]:
    """The TrainingJob from the template. No owner reference on purpose: the job's ModelVersion may be served,
    and deleting the monitor must not garbage-collect a model."""
    assert dm.spec.retrain is not None
    p = window.get("pValue")
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainingJob",
        "metadata": {
            "name": name,
            "labels": {
                MONITOR_LABEL: dm.metadata["name"],
                **contract.MANAGED,
                # The monitor's shard reconciles its retraining jobs (and so their ModelVersions).
                **shard_labels(shard_of(dm.metadata.get("labels"))),
            },
            "annotations": {
                REASON: reason[:1024],
                WINDOW: str(window.get("seq", "")),
                DRIFTED_VERSION: str(window.get("version", "")),
                P_VALUE: f"{p:.4g}" if isinstance(p, int | float) else "",
            },
        },
        "spec": dm.spec.retrain.template.wire(),
    }
