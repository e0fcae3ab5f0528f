"""Serverless (Knative) mode: what KServe v0.20.0 and Knative Serving v0.48.1 report about an InferenceService's
predictor, read as pure functions (no API calls).

KServe turns the predictor into one Knative Service, `{isvc}-predictor` when the predictor has no name
(constants.PredictorServiceName, pkg/constants/constants.go:799-804). With `canaryTrafficPercent: w` it routes
`latestRevision` (Knative's latest *ready* revision) at w % and the revision it last rolled out at 100 % (tag
`prev`) at the rest (ksvc_reconciler.go:132-164), and copies Knative's status into
`status.components.predictor`: latestCreatedRevision, latestReadyRevision, latestRolledoutRevision,
previousRolledoutRevision and traffic[] (inference_service_status.go:66-99, PropagateStatus :567-636).
"""

from __future__ import annotations

from typing import Any

# Knative labels a revision's pods with the revision's name (serving pkg/apis/serving/register.go:77); the
# scrape configuration's pod-discovery relabelling turns it into the `revision` label the analysis reads.
REVISION_POD_LABEL = "serving.knative.dev/revision"


def service_name(isvc: str) -> str:
    """The Knative Service KServe makes for an unnamed predictor: the same for every version, so its URL and its
    revisions stay, and `prev` always names a revision of the same Service (Knative refuses another Service's
    revision with RevisionNotOwned, serving pkg/reconciler/route/traffic/traffic.go:384-393)."""
    return f"{isvc}-predictor"


def predictor_status(obj: dict[str, Any] | None) -> dict[str, Any]:
    return (((obj or {}).get("status") or {}).get("components") or {}).get("predictor") or {}


def live_percent(obj: dict[str, Any] | None) -> int | None:
    """spec.predictor.canaryTrafficPercent as the live object has it."""
    value = (((obj or {}).get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent")
    return value if isinstance(value, int) else None


def pinned(obj: dict[str, Any] | None) -> bool:
    """Every request goes to the revision KServe last rolled out (stable), none to `latestRevision`: the live
    spec says canaryTrafficPercent 0, and Knative's route status (copied by KServe) agrees, with Knative's
    revision of that spec created (latestCreatedRevision is not the rolled-out one), so the revision recorded
    now is the canary's. A status Knative has not reconciled yet still shows the latest target's old percent."""
    comp = predictor_status(obj)
    entries = [t for t in comp.get("traffic") or [] if isinstance(t, dict)]
    latest = [int(t.get("percent") or 0) for t in entries if t.get("latestRevision")]
    fixed = [t for t in entries if not t.get("latestRevision") and int(t.get("percent") or 0) > 0]
    stable = comp.get("latestRolledoutRevision")
    return (
        live_percent(obj) == 0
        and bool(latest)
        and not any(latest)
        and sum(int(t["percent"]) for t in fixed) == 100
        and all(t.get("revisionName") == stable for t in fixed)
        and bool(comp.get("latestCreatedRevision"))
        and comp.get("latestCreatedRevision") != stable
    )


def newer_revision_ready(obj: dict[str, Any] | None, old: str) -> bool:
    """A revision newer than `old` (the rolled-back canary's) is Knative's latest and ready: dropping
    canaryTrafficPercent then sends `latestRevision` there, not to the canary. Knative creates a revision for
    every template change and latestRevision means the latest *ready* one (traffic.go:354-373), so until then
    it would still be the canary. When `old` is the rolled-out revision itself (the canary never had one),
    nothing newer is coming and the latest ready revision is stable's."""
    comp = predictor_status(obj)
    created, ready = comp.get("latestCreatedRevision"), comp.get("latestReadyRevision")
    if not created or created != ready:
        return False
    return created != old or old == comp.get("latestRolledoutRevision")


def revisions(obj: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(stable's revision, the canary's revision) during a canary, for the analysis: stable is the revision
    KServe rolled out last (the `prev` target); the canary is the latest created revision once it is also the
    latest ready one, so that `latestRevision` serves it (before that its requests, if any, reach an older
    revision, which is not the canary's)."""
    comp = predictor_status(obj)
    stable = comp.get("latestRolledoutRevision") or None
    created = comp.get("latestCreatedRevision")
    canary = created if created and created == comp.get("latestReadyRevision") and created != stable else None
    return stable, canary


def canary_serving(obj: dict[str, Any] | None, percent: int) -> bool:
    """The canary's revision is ready and Knative's route sends it `percent` %: its step clock may start. Until
    its revision is ready, KServe's `latestRevision` target is still stable's revision (the requests at the
    canary's percent reach stable), so a step counted from the request would hold and be analysed while the
    canary serves nothing (measured on the real stack: a 10 % step saw 6 % of the requests)."""
    if revisions(obj)[1] is None:
        return False
    latest = [t for t in predictor_status(obj).get("traffic") or [] if isinstance(t, dict) and t.get("latestRevision")]
    return any(int(t.get("percent") or 0) == percent for t in latest)
