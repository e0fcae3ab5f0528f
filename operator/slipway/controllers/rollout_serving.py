"""What a Rollout's decision writes: the storage identity, a logged canary's Service, the HTTPRoute and the
InferenceService, in that order, each only when its intent changed (digests kept in status.applied) or the live
object drifted.

Order matters: the ServiceAccount must exist before KServe's pods are admitted (the storage initializer reads
it then), and the route is applied before the InferenceService, so that a backend leaves the route before
KServe deletes its Service (rollback, promotion) and joins only once its Service is ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slipway.api.modelversion import ModelVersion
from slipway.api.rollout import Rollout
from slipway.config import Settings
from slipway.controllers import rollout_isvc as isvc
from slipway.controllers import rollout_route as route
from slipway.controllers import rollout_storage as storage
from slipway.controllers.base import Action, Apply, Delete, Patch

ISVC_KEY, ROUTE_KEY, SERVICE_PREFIX = "InferenceService", "HTTPRoute", "Service/"


@dataclass(frozen=True)
class Live:
    """The objects the plan compares with."""

    isvc: dict[str, Any] | None = None
    route: dict[str, Any] | None = None
    credentials: dict[str, tuple[dict[str, str], str]] = field(default_factory=dict)  # Secret -> (data, rv)
    accounts: frozenset[str] = frozenset()  # the storage ServiceAccounts that exist


@dataclass(frozen=True)
class Serving:
    """What the decision serves: stable, and the canary at `weight` percent once `canary_ready`."""

    stable: ModelVersion
    canary: ModelVersion | None = None
    weight: int = 0
    canary_ready: bool = False
    draining: tuple[ModelVersion, int] | None = None  # a retargeted canary kept off the route, its trafficPercent
    pinned: bool = False  # Serverless rollback: stable's spec with canaryTrafficPercent 0 (rollout_isvc)


def routed(rollout: Rollout, settings: Settings) -> bool:
    """Whether the Rollout owns the route (Standard mode with a Gateway configured)."""
    return isvc.standard(rollout) and bool(settings.gateway)


def logs(settings: Settings, monitor: str | None) -> bool:
    """Whether the predictors log their inputs (a DriftMonitor watches, and the drift runtime is configured)."""
    return bool(monitor and settings.drift_url)


def storage_sources(rollout: Rollout, versions: list[ModelVersion], settings: Settings) -> dict[str, Any]:
    """Version name -> (credentials Secret, endpoint, region) for the versions that need the Rollout's identity. In
    both modes KServe's pod webhook injects the same storage initializer, which reads only the ServiceAccount's."""
    found = {mv.metadata["name"]: storage.source(mv, settings) for mv in versions}
    return {name: src for name, src in found.items() if src is not None}


def plan(
    rollout: Rollout,
    serving: Serving,
    live: Live,
    settings: Settings,
    monitor: str | None,
    applied: dict[str, str],
) -> tuple[list[Action], dict[str, str]]:
    """(actions, status.applied after them)."""
    actions: list[Action] = []
    now = dict(applied)
    name = isvc.isvc_name(rollout)
    versions = [v for v in (serving.stable, serving.canary, serving.draining and serving.draining[0]) if v]
    accounts: dict[str, str] = {}
    for version, src in storage_sources(rollout, versions, settings).items():
        found = live.credentials.get(src[0])
        if found is None:
            continue  # the ModelVersion's Secret is gone: its Verified condition says so; serve without
        secret, account = storage.manifests(rollout.metadata, name, src, found[0])
        key, digest = f"ServiceAccount/{account['metadata']['name']}", storage.intent(secret, account, found[1])
        fresh = account["metadata"]["name"] not in accounts.values()  # versions may share one identity
        if fresh and (now.get(key) != digest or account["metadata"]["name"] not in live.accounts):
            actions += [Apply(secret), Apply(account)]
        now[key] = digest
        accounts[version] = account["metadata"]["name"]
    now = {k: v for k, v in now.items() if not k.startswith("ServiceAccount/") or k.split("/", 1)[1] in
           accounts.values()}  # fmt: skip

    desired = isvc.inference_service(
        rollout,
        serving.stable,
        serving.canary,
        serving.weight,
        settings,
        monitor,
        accounts,
        serving.draining,
        serving.pinned,
    )
    host = isvc.url_host(live.isvc)
    services: dict[str, str] = {}
    if routed(rollout, settings) and live.isvc is not None and host:
        stable_svc = isvc.predictor_service(name, serving.stable.metadata["name"])
        canary = serving.canary if serving.canary_ready else None
        labels = {k: v for k, v in desired["metadata"]["labels"].items() if k != isvc.VISIBILITY_LABEL}
        canary_svc = None
        if serving.canary is not None and logs(settings, monitor):
            # Made as soon as the canary is asked for, not when the route is to name it: its EndpointSlice then
            # follows the pods from their start and holds a ready address before the gateway sends it a share
            # (a route naming a Service the gateway knows no address for answers 503 for that share).
            svc = isvc.agent_service(live.isvc, serving.canary.metadata["name"], labels)
            key = SERVICE_PREFIX + svc["metadata"]["name"]
            services[key] = isvc.digest(svc)
            if applied.get(key) != services[key]:
                actions.append(Apply(svc))  # before the route names it
        if canary is not None:
            canary_svc = isvc.backend_service(name, canary.metadata["name"], logs(settings, monitor))
        want = route.http_route(live.isvc, settings.gateway, host, stable_svc, canary_svc, serving.weight, labels)
        if route.needs_apply(live.route, want, applied.get(ROUTE_KEY)):
            actions.append(Apply(want))
        now[ROUTE_KEY] = isvc.digest(want)
    # A logged canary's Service goes (promoted, rolled back, retargeted) once the live route no longer names it:
    # not in the same breath as the route change, which the gateway takes a moment to pick up.
    named = route.weights(live.route)
    for key in sorted(k for k in applied if k.startswith(SERVICE_PREFIX) and k not in services):
        if (gone := key.removeprefix(SERVICE_PREFIX)) not in named:
            actions.append(Delete("Service", gone))
            del now[key]
    now |= services
    if isvc.needs_apply(live.isvc, desired, applied.get(ISVC_KEY)):
        actions.append(Apply(desired))
    now[ISVC_KEY] = isvc.digest(desired)
    if (stray := isvc.stray_patch(live.isvc, desired)) is not None:
        ref = {"apiVersion": desired["apiVersion"], "kind": desired["kind"], "metadata": {"name": name}}
        actions.append(Patch(ref, stray))
    return actions, now
