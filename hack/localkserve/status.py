"""The InferenceService status, shaped as KServe writes it in Serverless mode (every field is
in the v0.20 CRD).

Pure: built from the revision plan (revisions.py), the revisions' health and the previous
status, so that an unchanged world gives an identical status (conditions keep their
lastTransitionTime while their status holds) and the controller can skip the write.

URLs follow KServe's defaults with the ingress domain `example.com`:
`http://<isvc>.<ns>.<domain>` (Knative's domain template). Nothing resolves these names; the
gateway answers them when a request carries one in its Host header (as with KServe behind an
ingress: `curl -H "Host: <host of status.url>" http://127.0.0.1:<gateway port>/v1/models/...`).

Only Serverless InferenceServices get a status from here (`serves`): Standard (RawDeployment)
mode is KServe's own, its real controller on the local cluster (hack/localcluster/serving.py)
writes theirs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from .revisions import Plan

Obj = dict[str, Any]

SERVERLESS, STANDARD = "Serverless", "Standard"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mode_of(isvc: Obj, default: str = SERVERLESS) -> str:
    """The deployment mode from the annotation (`default` without one). KServe v0.20 renamed
    the modes: Knative is Serverless here, RawDeployment is Standard; any other value
    (ModelMesh, a typo) is returned as it is."""
    value = str(((isvc.get("metadata") or {}).get("annotations") or {}).get(MODE_ANNOTATION) or default)
    if value in (SERVERLESS, "Knative"):
        return SERVERLESS
    if value in (STANDARD, "RawDeployment"):
        return STANDARD
    return value


def serves(isvc: Obj, default: str = SERVERLESS) -> bool:
    """Whether the gateway plays KServe for this InferenceService: Serverless mode only. Any
    other is left alone (no Deployments, status, route, payload logging or discovery):
    Standard mode is KServe's own controller's."""
    return mode_of(isvc, default) == SERVERLESS


@dataclass(frozen=True)
class Failure:
    """Why a revision cannot become ready (a crashing container, an image or config error)."""

    revision: str
    reason: str
    message: str
    exit_code: int | None = None


@dataclass(frozen=True)
class Health:
    """PredictorReady's status and why, and whether the gateway can route at all."""

    predictor: str
    reason: str = ""
    message: str = ""
    routable: bool = False
    failure: Failure | None = None


@dataclass(frozen=True)
class Urls:
    url: str
    address: str
    predictor_url: str
    predictor_address: str


def urls(isvc: Obj, domain: str) -> Urls:
    """Knative's: the InferenceService's and its predictor's, external and cluster-local."""
    name, ns = isvc["metadata"]["name"], isvc["metadata"].get("namespace", "default")
    return Urls(
        f"http://{name}.{ns}.{domain}",
        f"http://{name}.{ns}.svc.cluster.local",
        f"http://{name}-predictor.{ns}.{domain}",
        f"http://{name}-predictor.{ns}.svc.cluster.local",
    )


def condition(kind: str, status: str, reason: str, message: str, previous: Sequence[Obj], at: str) -> Obj:
    old = next((c for c in previous if c.get("type") == kind), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status and old.get("lastTransitionTime") else at
    cond: Obj = {"type": kind, "status": status, "lastTransitionTime": since}
    if status != TRUE:
        cond.update({k: v for k, v in (("reason", reason), ("message", message)) if v})
    return cond


def conditions(health: Health, previous: Sequence[Obj], at: str) -> list[Obj]:
    """IngressReady, PredictorReady and Ready (their conjunction), sorted by type as
    Knative's condition sets are."""
    ingress = TRUE if health.routable else FALSE
    overall = FALSE if FALSE in (health.predictor, ingress) else UNKNOWN if health.predictor == UNKNOWN else TRUE
    why = health.reason or ("IngressNotReady" if ingress != TRUE else "")
    return [
        condition(
            "IngressReady", ingress, "PredictorNotReady", "no ready predictor revision to route to", previous, at
        ),
        condition("PredictorReady", health.predictor, health.reason, health.message, previous, at),
        condition("Ready", overall, why, health.message or "no ready predictor revision to route to", previous, at),
    ]


def model_status(plan: Plan | None, health: Health) -> Obj:
    ready = health.predictor == TRUE
    if ready:
        transition = "UpToDate"
    elif health.reason in ("RuntimeNotRecognized", "NoSupportingRuntime", "RuntimeDisabled"):
        transition = "InvalidSpec"
    else:
        transition = "BlockedByFailedLoad" if health.failure else "InProgress"
    serving = plan is not None and plan.latest_ready is not None and health.routable
    target = "Loaded" if ready else ("FailedToLoad" if health.failure else "Loading")
    out: Obj = {
        "transitionStatus": transition,
        "states": {"activeModelState": "Loaded" if serving else target, "targetModelState": target},
    }
    if health.failure is not None:
        info: Obj = {
            "reason": "ModelLoadFailed",
            "message": health.failure.message,
            "modelRevisionName": health.failure.revision,
        }
        if health.failure.exit_code is not None:
            info["exitCode"] = health.failure.exit_code
        out["lastFailureInfo"] = info
    return out


def predictor_component(plan: Plan | None, health: Health, u: Urls, previous: Obj) -> Obj:
    """status.components.predictor. Without a plan (no usable runtime) the previous one
    stands: what was served is still served."""
    if plan is None:
        return dict(previous)
    out: Obj = {"latestCreatedRevision": plan.latest_created}
    for key, value in (
        ("latestReadyRevision", plan.latest_ready),
        ("latestRolledoutRevision", plan.rolled_out),
        ("previousRolledoutRevision", plan.previous_rolled_out),
    ):
        if value:
            out[key] = value
    out["traffic"] = [t.to_status() for t in plan.traffic]
    # KServe sets a component's URL once it is ready and keeps it.
    if health.predictor == TRUE or previous.get("url"):
        out["url"] = u.predictor_url
        out["address"] = {"url": u.predictor_address}
    return out


def build(isvc: Obj, plan: Plan | None, health: Health, domain: str, at: str | None = None) -> Obj:
    """The whole status for a Serverless `isvc` (its current status is the "previous" one)."""
    at = at or now()
    previous = isvc.get("status") or {}
    u = urls(isvc, domain)
    prev_predictor = (previous.get("components") or {}).get("predictor") or {}
    out: Obj = {
        "observedGeneration": isvc["metadata"].get("generation", 0),
        "deploymentMode": SERVERLESS,
        "conditions": conditions(health, previous.get("conditions") or [], at),
        "components": {"predictor": predictor_component(plan, health, u, prev_predictor)},
        "modelStatus": model_status(plan, health),
    }
    if health.routable or previous.get("url"):
        out["url"] = u.url
        out["address"] = {"url": u.address}
    return out


def health_of(required: Sequence[str], ready: Set[str], failures: Mapping[str, Failure], routable: bool) -> Health:
    """PredictorReady from the revisions the spec asks for: True once all are ready, False
    as soon as one has failed (Knative's RevisionFailed), Unknown while they come up."""
    waiting = [r for r in required if r not in ready]
    if not waiting:
        return Health(TRUE, routable=routable)
    failed = [failures[r] for r in waiting if r in failures]
    if failed:
        f = failed[0]
        message = f'Revision "{f.revision}" failed with message: {f.reason}: {f.message}'
        return Health(FALSE, "RevisionFailed", message, routable, f)
    return Health(UNKNOWN, "RevisionMissing", f"revision {', '.join(waiting)} is not ready yet", routable)
