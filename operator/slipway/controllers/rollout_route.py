"""The Gateway API HTTPRoute a Standard-mode Rollout owns: the one route to its InferenceService's host, with
the weights between the stable and canary predictor Services.

KServe's Standard mode gives each canary its own Deployment and Service but routes every request to the stable
Service (its HTTPRoutes and Ingress name only spec.predictor), so trafficPercent alone sends the canary nothing.
The Rollout labels its InferenceService `networking.kserve.io/visibility: cluster-local`, which makes KServe
create no route at all for it (and report IngressReady), and owns this route instead, as Argo Rollouts' Gateway
API plugin owns the weights of a route: nothing else writes it, so there is no precedence to win and no
reconciler to fight. See docs/serving-contract.md.
"""

from __future__ import annotations

from typing import Any

from slipway import conditions
from slipway.controllers import rollout_isvc as isvc

GATEWAY_GROUP, GATEWAY_VERSION, ROUTE_PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"
PORT = 80  # KServe's predictor Services listen on 80 (constants.CommonDefaultHttpPort)
# KServe's own routes set these on every request (constants.IsvcNameHeader / IsvcNamespaceHeader).
NAME_HEADER, NAMESPACE_HEADER = "KServe-Isvc-Name", "KServe-Isvc-Namespace"


def backends(stable: str, canary: str | None, weight: int) -> list[dict[str, Any]]:
    """stable and canary Service names -> weighted backendRefs. A canary not ready is left out (not weight 0:
    a route naming a Service that does not exist yet is not fully resolved on every gateway)."""
    refs = [(stable, 100 - weight if canary else 100)]
    if canary:
        refs.append((canary, weight))
    return [{"group": "", "kind": "Service", "name": name, "port": PORT, "weight": w} for name, w in refs]


def http_route(
    isvc_obj: dict[str, Any],
    gateway: str,
    host: str,
    stable: str,
    canary: str | None,
    weight: int,
    labels: dict[str, str],
) -> dict[str, Any]:
    """The route for `host` on `gateway` (<namespace>/<name>). Named after the InferenceService, like the
    top-level route KServe would make, and controlled by it: KServe's own route of that name, if the service
    once had one, is taken over rather than left to compete for the host; deleting the service deletes it."""
    meta = isvc_obj["metadata"]
    gw_ns, gw_name = gateway.split("/", 1)
    headers = [{"name": NAME_HEADER, "value": meta["name"]}, {"name": NAMESPACE_HEADER, "value": meta["namespace"]}]
    return {
        "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
        "kind": "HTTPRoute",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [isvc.isvc_owner(isvc_obj)],
        },
        "spec": {
            "parentRefs": [{"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": gw_ns, "name": gw_name}],
            "hostnames": [host],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": headers}}],
                    "backendRefs": backends(stable, canary, weight),
                }
            ],
        },
    }


def weights(route: dict[str, Any] | None) -> dict[str, int]:
    """Service name -> weight, as the live route has them."""
    rules = ((route or {}).get("spec") or {}).get("rules") or []
    return {b["name"]: b.get("weight", 1) for r in rules for b in r.get("backendRefs") or []}


def accepted(route: dict[str, Any] | None, gateway: str) -> bool:
    """The gateway accepted the route's current generation (status.parents[].conditions Accepted)."""
    if route is None:
        return False
    gw_ns, gw_name = gateway.split("/", 1)
    generation = (route.get("metadata") or {}).get("generation")
    for parent in (route.get("status") or {}).get("parents") or []:
        ref = parent.get("parentRef") or {}
        if ref.get("name") != gw_name or ref.get("namespace", route["metadata"].get("namespace")) != gw_ns:
            continue
        cond = conditions.find(parent.get("conditions") or [], "Accepted") or {}
        fresh = generation is None or cond.get("observedGeneration") in (None, generation)
        return cond.get("status") == "True" and fresh
    return False


def needs_apply(observed: dict[str, Any] | None, desired: dict[str, Any], applied: str | None) -> bool:
    """Write when the intent changed, the route is gone, or someone changed its host or weights."""
    if observed is None or applied != isvc.digest(desired):
        return True
    spec = observed.get("spec") or {}
    return spec.get("hostnames") != desired["spec"]["hostnames"] or weights(observed) != weights(desired)
