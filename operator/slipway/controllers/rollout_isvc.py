"""Pure builders for the KServe InferenceService a Rollout owns, in both deployment modes.

Serverless: one predictor; a canary is the new predictor plus canaryTrafficPercent (Knative keeps the previous
revision for the rest). Standard (KServe >= 0.20): spec.predictor is stable, spec.canary[] holds the named
canary predictor with its trafficPercent. See docs/serving-contract.md.
"""

from __future__ import annotations

import json
from typing import Any

from slipway.api.common import API_VERSION
from slipway.api.modelversion import ModelVersion
from slipway.api.rollout import Rollout
from slipway.config import Settings

KSERVE_GROUP, KSERVE_VERSION, ISVC_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
FORMAT = "slipway"


def isvc_name(rollout: Rollout) -> str:
    return rollout.spec.inference_service.name or rollout.metadata["name"]


def logger_url(settings: Settings, namespace: str, monitor: str, version: str) -> str:
    """Where KServe's payload logger sends a version's requests: the version is in the path, so canary and
    stable inputs stay apart even though the logger's events do not name the model version."""
    return f"{settings.drift_url}/v1/events/{namespace}/{monitor}/{version}"


def predictor(rollout: Rollout, mv: ModelVersion, settings: Settings, monitor: str | None = None) -> dict[str, Any]:
    tmpl, art = rollout.spec.inference_service.predictor, mv.spec.artifact
    env: list[dict[str, Any]] = [
        {"name": "SLIPWAY_MODEL_VERSION", "value": mv.metadata["name"]},
        {"name": "SLIPWAY_FRAMEWORK", "value": mv.spec.framework},
        {"name": "SLIPWAY_ARTIFACT_SHA256", "value": art.sha256},
    ]
    if mv.spec.signature:
        env.append({"name": "SLIPWAY_SIGNATURE", "value": json.dumps(mv.spec.signature.wire(), separators=(",", ":"))})
    if mv.spec.classes and mv.spec.framework == "pytorch":  # a TorchScript module knows output columns, not labels
        env.append({"name": "SLIPWAY_CLASSES", "value": json.dumps(mv.spec.classes, separators=(",", ":"))})
    endpoint = art.endpoint or settings.s3_endpoint
    if endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": endpoint})
    env.append({"name": "AWS_DEFAULT_REGION", "value": art.region or settings.s3_region})
    if art.credentials_secret_ref:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.append(
                {"name": key, "valueFrom": {"secretKeyRef": {"name": art.credentials_secret_ref.name, "key": key}}}
            )
    model: dict[str, Any] = {
        # KServe's own container name; the v0.20 CRD requires it for canary predictors.
        "name": "kserve-container",
        "modelFormat": {"name": FORMAT},
        "runtime": tmpl.runtime,
        "protocolVersion": tmpl.protocol_version,
        "storageUri": art.uri,
        "env": env,
    }
    if tmpl.resources:
        res = tmpl.resources
        quantities = {k: v for k, v in (("cpu", res.cpu), ("memory", res.memory)) if v}
        limits: dict[str, Any] = {**quantities, **({"nvidia.com/gpu": str(res.gpus)} if res.gpus else {})}
        model["resources"] = {"requests": quantities, "limits": limits}
    spec: dict[str, Any] = {"name": mv.metadata["name"], "minReplicas": tmpl.min_replicas, "model": model}
    if tmpl.max_replicas:
        spec["maxReplicas"] = tmpl.max_replicas
    if monitor and settings.drift_url:
        url = logger_url(settings, rollout.metadata.get("namespace", ""), monitor, mv.metadata["name"])
        spec["logger"] = {"mode": "request", "url": url}
    if tmpl.service_account_name or art.service_account_name:
        spec["serviceAccountName"] = tmpl.service_account_name or art.service_account_name
    return spec


def inference_service(
    rollout: Rollout,
    stable: ModelVersion,
    canary: ModelVersion | None,
    weight: int,
    settings: Settings,
    monitor: str | None = None,
) -> dict[str, Any]:
    """The desired InferenceService: `stable` serving, `canary` at `weight` percent when given; inputs logged to
    the drift runtime when a DriftMonitor watches."""
    mode = rollout.spec.inference_service.deployment_mode
    spec: dict[str, Any] = {}
    if canary is None:
        spec["predictor"] = predictor(rollout, stable, settings, monitor)
    elif mode == "Serverless":
        # Knative keeps the previous revision (stable) for 100 - weight; the spec names only the latest.
        spec["predictor"] = {**predictor(rollout, canary, settings, monitor), "canaryTrafficPercent": weight}
    else:
        spec["predictor"] = predictor(rollout, stable, settings, monitor)
        spec["canary"] = [{"predictor": predictor(rollout, canary, settings, monitor), "trafficPercent": weight}]
    meta = rollout.metadata
    return {
        "apiVersion": f"{KSERVE_GROUP}/{KSERVE_VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": isvc_name(rollout),
            "namespace": meta.get("namespace"),
            "labels": {"app.kubernetes.io/managed-by": "slipway", "slipway.dev/rollout": meta["name"]},
            "annotations": {MODE_ANNOTATION: mode},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "Rollout",
                    "name": meta["name"],
                    "uid": meta.get("uid", ""),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


def covers(observed: Any, desired: Any) -> bool:
    """Every field slipway sets has the value slipway wants; fields others add (defaults, webhooks) are theirs."""
    if isinstance(desired, dict):
        return isinstance(observed, dict) and all(covers(observed.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(observed, list) and len(observed) == len(desired) and all(map(covers, observed, desired))
    return bool(observed == desired)


def spec_patch(desired: dict[str, Any]) -> dict[str, Any]:
    """A merge patch that sets slipway's fields and clears the canary and logger fields it owns when it wants
    none."""
    spec = dict(desired["spec"])
    spec.setdefault("canary", None)
    owned = {k: None for k in ("canaryTrafficPercent", "logger") if k not in spec["predictor"]}
    spec["predictor"] = {**spec["predictor"], **owned}
    meta = desired["metadata"]
    return {"metadata": {"labels": meta["labels"], "annotations": meta["annotations"]}, "spec": spec}


def needs_update(observed: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    if observed is None:
        return True
    spec = observed.get("spec") or {}
    stray_canary = "canary" not in desired["spec"] and bool(spec.get("canary"))
    stray_percent = any(
        key not in desired["spec"]["predictor"] and (spec.get("predictor") or {}).get(key) is not None
        for key in ("canaryTrafficPercent", "logger")
    )
    meta = {k: desired["metadata"][k] for k in ("labels", "annotations")}
    return (
        stray_canary or stray_percent or not covers(observed.get("metadata"), meta) or not covers(spec, desired["spec"])
    )
