"""Pure builders for the KServe InferenceService a Rollout owns, in both deployment modes.

Serverless: one unnamed predictor, so one Knative Service for every version; a canary is a new revision of it (the
new predictor spec plus canaryTrafficPercent: KServe keeps the revision it rolled out last for the rest), see
rollout_knative. Standard (KServe >= 0.20): spec.predictor is stable, spec.canary[] holds the named
canary predictor with its trafficPercent, which KServe uses only to size the canary's replicas: the requests
are split by the Rollout's own HTTPRoute (rollout_route). See docs/serving-contract.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from slipway import conditions, contract
from slipway.api.common import API_VERSION
from slipway.api.modelversion import ModelVersion
from slipway.api.rollout import Rollout
from slipway.config import Settings

KSERVE_GROUP, KSERVE_VERSION, ISVC_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
# KServe v0.20.0 spells the modes Knative and Standard; Serverless and RawDeployment are deprecated spellings its
# defaulting webhook rewrites (pkg/constants/constants.go:559-587, inference_service_defaults.go:164-175). The
# operator writes the canonical spelling, so what it applies is what KServe stores, and compares modes normalized.
MODE_SPELLING = {"Serverless": "Knative", "Standard": "Standard"}
CANONICAL_MODE = {"Serverless": "Knative", "Knative": "Knative", "RawDeployment": "Standard", "Standard": "Standard"}
# KServe creates no Ingress/HTTPRoute for an InferenceService with this label (raw HTTPRoute and Ingress
# reconcilers); the Rollout's own HTTPRoute serves its host instead.
VISIBILITY_LABEL, CLUSTER_LOCAL = "networking.kserve.io/visibility", "cluster-local"
CANARY_READY = "CanaryPredictorReady"
ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # KServe's IsvcNameFmt
# KServe labels predictor pods app=isvc.<isvc>-<predictor>-predictor (a label value: at most 63 characters),
# so <isvc> + <predictor> <= 63 - len("isvc.") - len("-") - len("-predictor") = 47.
NAME_BUDGET = 47
MIN_PREDICTOR_NAME = 10
STANDARD_ISVC_MAX = NAME_BUDGET - MIN_PREDICTOR_NAME


def isvc_name(rollout: Rollout) -> str:
    return rollout.spec.inference_service.name or rollout.metadata["name"]


def standard(rollout: Rollout) -> bool:
    return rollout.spec.inference_service.deployment_mode == "Standard"


def normalized_mode(value: str | None) -> str | None:
    """A deploymentMode annotation as KServe reads it (constants.ParseDeploymentMode): Serverless is Knative,
    RawDeployment is Standard; anything else as it is."""
    return CANONICAL_MODE.get(value, value) if value is not None else None


def name_problem(rollout: Rollout) -> str | None:
    """Why the InferenceService's name cannot work with KServe, or None."""
    name = isvc_name(rollout)
    field = "spec.inferenceService.name" if rollout.spec.inference_service.name else "the Rollout's name"
    if not ISVC_NAME.match(name):
        return (f"InferenceService name {name!r} ({field}) must start with a letter and hold only lower-case "
                "letters, digits and '-': set spec.inferenceService.name")  # fmt: skip
    limit = STANDARD_ISVC_MAX if standard(rollout) else 45
    if len(name) > limit:
        return (f"InferenceService name {name!r} ({field}) is {len(name)} characters; at most {limit} leave "
                "room for KServe's <name>-<predictor>-predictor names: set a shorter "
                "spec.inferenceService.name")  # fmt: skip
    return None


def predictor_name(isvc: str, version: str) -> str:
    """The Standard-mode predictor name for a ModelVersion: the version's name when it fits KServe's derived
    names, else a clamped prefix plus a digest of the full name (distinct versions, distinct predictors)."""
    budget = max(NAME_BUDGET - len(isvc), MIN_PREDICTOR_NAME)
    clean = re.sub(r"[^a-z0-9-]+", "-", version.lower()).strip("-")
    if clean == version and len(clean) <= budget:
        return version
    digest = hashlib.sha256(version.encode()).hexdigest()[:6]
    head = clean[: budget - len(digest) - 1].strip("-")
    return f"{head}-{digest}" if head else f"v{digest}"


def predictor_service(isvc: str, version: str) -> str:
    """KServe's Deployment and Service name for a named predictor (constants.PredictorServiceName)."""
    return f"{isvc}-{predictor_name(isvc, version)}-predictor"


# KServe's agent (payload logger) listens here in a predictor pod (constants.InferenceServiceDefaultAgentPort).
AGENT_PORT = 9081


def logged_service(isvc: str, version: str) -> str:
    """The Rollout's own Service for a logged canary's pods, through KServe's agent. Shorter than KServe's
    `<isvc>-<predictor>-predictor`, so it fits wherever that does."""
    return f"{isvc}-{predictor_name(isvc, version)}-logged"


def backend_service(isvc: str, version: str, canary_logged: bool) -> str:
    """The Service the route sends a canary's requests to. KServe v0.20 builds a Standard-mode canary's Service
    without the component's logger (reconcileCanaryDeployments passes only minReplicas), so it targets the
    model server's port directly and the canary's agent never sees a request; a logged canary is reached
    through the Rollout's own Service to the agent's port instead."""
    return logged_service(isvc, version) if canary_logged else predictor_service(isvc, version)


def agent_service(isvc_obj: dict[str, Any], version: str, labels: dict[str, str]) -> dict[str, Any]:
    """The logged canary's Service: KServe's selector for the canary's pods (app=isvc.<predictor Service>), port
    80 like KServe's, to the agent, which logs each request and passes it to the model server. Controlled by
    the InferenceService, like the route."""
    meta = isvc_obj["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": logged_service(meta["name"], version),
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [isvc_owner(isvc_obj)],
        },
        "spec": {
            "selector": {"app": f"isvc.{predictor_service(meta['name'], version)}"},
            "ports": [{"name": "http", "port": 80, "targetPort": AGENT_PORT, "protocol": "TCP"}],
        },
    }


def logger_url(settings: Settings, namespace: str, monitor: str, version: str) -> str:
    """Where KServe's payload logger sends a version's requests: the version is in the path, so canary and
    stable inputs stay apart even though the logger's events do not name the model version."""
    return f"{settings.drift_url}/v1/events/{namespace}/{monitor}/{version}"


def predictor(
    rollout: Rollout,
    mv: ModelVersion,
    settings: Settings,
    monitor: str | None = None,
    service_account: str | None = None,
) -> dict[str, Any]:
    """A predictor serving `mv`, with model.name unset in both modes: KServe's webhook refuses a container name
    on spec.predictor (validatePredictor, inference_service_validation.go:296-297). Standard mode names it
    (predictor_name: each version its own Deployment); Serverless leaves it unnamed, so every version is a
    revision of the one Knative Service `<isvc>-predictor` (rollout_knative.service_name)."""
    tmpl, art = rollout.spec.inference_service.predictor, mv.spec.artifact
    env: list[dict[str, Any]] = [
        {"name": contract.ENV_MODEL_VERSION, "value": mv.metadata["name"]},
        {"name": contract.ENV_FRAMEWORK, "value": mv.spec.framework},
        {"name": contract.ENV_ARTIFACT_SHA256, "value": art.sha256},
    ]
    if mv.spec.signature:
        env.append(
            {"name": contract.ENV_SIGNATURE, "value": json.dumps(mv.spec.signature.wire(), separators=(",", ":"))}
        )
    if mv.spec.classes and mv.spec.framework == "pytorch":  # a TorchScript module knows output columns, not labels
        env.append({"name": contract.ENV_CLASSES, "value": json.dumps(mv.spec.classes, separators=(",", ":"))})
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
        "modelFormat": {"name": tmpl.model_format},
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
    # minReplicas in both modes: KServe makes it Knative's autoscaling.knative.dev/min-scale on every revision
    # (SetAutoScalingAnnotations, pkg/controller/v1alpha1/utils/utils.go:69-74).
    spec: dict[str, Any] = {"minReplicas": tmpl.min_replicas, "model": model}
    if standard(rollout):
        spec = {"name": predictor_name(isvc_name(rollout), mv.metadata["name"]), **spec}
    if tmpl.max_replicas:
        spec["maxReplicas"] = tmpl.max_replicas
    if monitor and settings.drift_url:
        url = logger_url(settings, rollout.metadata.get("namespace", ""), monitor, mv.metadata["name"])
        spec["logger"] = {"mode": "request", "url": url}
    if account := tmpl.service_account_name or art.service_account_name or service_account:
        spec["serviceAccountName"] = account
    return spec


def canary_entry(predictor_spec: dict[str, Any], weight: int) -> dict[str, Any]:
    """A Standard-mode spec.canary[] entry. KServe's webhook refuses maxReplicas there, and a canary minReplicas
    would be taken from stable's pods: left unset, KServe sizes the canary from trafficPercent
    (ceil(stable minReplicas x percent / 100)). The CRD requires model.name on canaries; "" is accepted.
    KServe builds the canary from stable's predictor overlaid with this one, so the canary's own logger URL
    must be here, or its inputs would land in stable's window."""
    pred = {k: v for k, v in predictor_spec.items() if k not in ("minReplicas", "maxReplicas")}
    return {"predictor": {**pred, "model": {"name": "", **pred["model"]}}, "trafficPercent": weight}


def inference_service(
    rollout: Rollout,
    stable: ModelVersion,
    canary: ModelVersion | None,
    weight: int,
    settings: Settings,
    monitor: str | None = None,
    accounts: dict[str, str] | None = None,
    draining: tuple[ModelVersion, int] | None = None,
    pinned: bool = False,
) -> dict[str, Any]:
    """The desired InferenceService: `stable` serving, `canary` at `weight` percent when given; inputs logged to
    the drift runtime when a DriftMonitor watches; `accounts` maps a version to the storage ServiceAccount the
    Rollout made for it (rollout_storage); `draining` (Standard mode: a version and its trafficPercent) a
    retargeted canary kept as a second entry, which no request is routed to, until the gateway has drained it;
    `pinned` (Serverless, rolling back) stable's spec with canaryTrafficPercent 0: the revision Knative makes of
    it takes no request until it is ready, all go to the revision rolled out last."""
    mode = rollout.spec.inference_service.deployment_mode
    accounts = accounts or {}

    def pred(mv: ModelVersion) -> dict[str, Any]:
        return predictor(rollout, mv, settings, monitor, accounts.get(mv.metadata["name"]))

    spec: dict[str, Any] = {}
    if canary is None:
        spec["predictor"] = pred(stable)
        if pinned and mode == "Serverless":
            spec["predictor"]["canaryTrafficPercent"] = 0
    elif mode == "Serverless":
        # A new revision of the same Knative Service at `weight`; KServe keeps the revision it rolled out last
        # (stable) at 100 - weight (ksvc_reconciler.go:132-153). Weight 0 is a rollback's first step.
        spec["predictor"] = {**pred(canary), "canaryTrafficPercent": weight}
    else:
        spec["predictor"] = pred(stable)
        spec["canary"] = [canary_entry(pred(canary), weight)]
        if draining is not None:
            spec["canary"].append(canary_entry(pred(draining[0]), draining[1]))
    meta = rollout.metadata
    labels = {**contract.MANAGED, contract.ROLLOUT: meta["name"]}
    if mode == "Standard" and settings.gateway:
        labels[VISIBILITY_LABEL] = CLUSTER_LOCAL
    return {
        "apiVersion": f"{KSERVE_GROUP}/{KSERVE_VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": isvc_name(rollout),
            "namespace": meta.get("namespace"),
            "labels": labels,
            "annotations": {MODE_ANNOTATION: MODE_SPELLING[mode]},
            "ownerReferences": [owner_reference(API_VERSION, "Rollout", meta)],
        },
        "spec": spec,
    }


def isvc_owner(isvc_obj: dict[str, Any]) -> dict[str, Any]:
    """The owner reference of what the Rollout makes beside the InferenceService (its route, a logged canary's
    Service): controlled by it, so deleting it deletes them. blockOwnerDeletion off: it would need update on
    inferenceservices/finalizers."""
    owner = owner_reference(isvc_obj["apiVersion"], "InferenceService", isvc_obj["metadata"])
    return {**owner, "blockOwnerDeletion": False}


def owner_reference(api_version: str, kind: str, meta: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": meta["name"], "uid": meta.get("uid", ""),
            "controller": True, "blockOwnerDeletion": True}  # fmt: skip


# -- what is served -----------------------------------------------------------------------------------------


def ready(obj: dict[str, Any] | None) -> bool:
    return obj is not None and conditions.is_true((obj.get("status") or {}).get("conditions") or [], "Ready")


def canary_state(obj: dict[str, Any] | None, name: str) -> tuple[bool, int | None]:
    """(ready, trafficPercent KServe last reconciled) of the Standard-mode canary predictor `name`: KServe's
    status.canaryStatuses[] entry (ready = its Deployment has an available replica) and the
    CanaryPredictorReady condition. Not ready while KServe has not reported on that name."""
    status = (obj or {}).get("status") or {}
    entry = next((c for c in status.get("canaryStatuses") or [] if c.get("name") == name), None)
    if entry is None:
        return False, None
    ok = bool(entry.get("ready")) and conditions.is_true(status.get("conditions") or [], CANARY_READY)
    return ok, entry.get("trafficPercent")


def url_host(obj: dict[str, Any] | None) -> str | None:
    """The host of the InferenceService's status.url (KServe renders its domain template even for a
    cluster-local service): the host the Rollout's HTTPRoute claims."""
    url = ((obj or {}).get("status") or {}).get("url") or ""
    host = url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return host or None


# -- applying -----------------------------------------------------------------------------------------------


def digest(manifest: dict[str, Any]) -> str:
    """A stable digest of what slipway applies: compared with the one in status, never with the live object,
    whose annotations and quantities KServe's webhooks canonicalise."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def key_fields(spec: dict[str, Any]) -> Any:
    """The fields no webhook rewrites and that decide what is served: a change by someone else is drift."""
    pred = spec.get("predictor") or {}

    def one(p: dict[str, Any]) -> tuple[Any, ...]:
        return (p.get("name") or "", (p.get("model") or {}).get("storageUri"), (p.get("logger") or {}).get("url"))

    canaries = [(one(c.get("predictor") or {}), c.get("trafficPercent")) for c in spec.get("canary") or []]
    return one(pred), pred.get("canaryTrafficPercent"), canaries


def needs_apply(observed: dict[str, Any] | None, desired: dict[str, Any], applied: str | None) -> bool:
    """Write when the intent changed since the last apply, the object is gone, or what it serves drifted."""
    if observed is None or applied != digest(desired):
        return True
    meta = observed.get("metadata") or {}
    labels, mine = meta.get("labels") or {}, desired["metadata"]["labels"]
    mode = normalized_mode((meta.get("annotations") or {}).get(MODE_ANNOTATION))
    return (
        key_fields(observed.get("spec") or {}) != key_fields(desired["spec"])
        or any(labels.get(k) != v for k, v in mine.items())
        or mode != normalized_mode(desired["metadata"]["annotations"][MODE_ANNOTATION])
    )


def stray_patch(observed: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any] | None:
    """A merge patch removing canary/logger fields slipway wants gone but does not own alone (an object written
    before slipway used server-side apply, or someone else's edit), or None."""
    if observed is None:
        return None
    spec, want = observed.get("spec") or {}, desired["spec"]
    patch: dict[str, Any] = {}
    if spec.get("canary") and "canary" not in want:
        patch["canary"] = None
    stray = {k: None for k in ("canaryTrafficPercent", "logger")
             if (spec.get("predictor") or {}).get(k) is not None and k not in want["predictor"]}  # fmt: skip
    if stray:
        patch["predictor"] = stray
    return {"spec": patch} if patch else None
