"""The gateway's controller: KServe's InferenceService reconciler in Serverless mode, played
with Deployments.

Serverless InferenceServices only (annotation `serving.kserve.io/deploymentMode` Serverless or
Knative, or none with the default mode Serverless). Standard (RawDeployment) mode is KServe's
own: its real controller, webhooks and Traefik run it on the local cluster
(hack/localcluster/serving.py, `Cluster(serving=True)`), so any other InferenceService is left
alone: no Deployments, no status, no route (hence no payload logging), nothing in the
discovery file; that it is left to KServe's controller is logged once per object.

Informers keep InferenceServices, ServingRuntimes, ClusterServingRuntimes, the gateway's
Deployments and their pods in memory; any change queues the InferenceService concerned, and
one worker thread reconciles them one at a time (and all of them every `resync` seconds):

1. render the spec's predictor into a revision (manifests.py) and plan the traffic
   (revisions.py) from the previous status and the ready revisions;
2. create the Deployments of the revisions the plan keeps, delete the others;
3. hand the routing table its route (routing.py), the discovery file its targets;
4. write the status through the status subresource, only when it changed.

Nothing is kept in memory that the API does not hold: a restarted gateway lists everything
and carries on from the status and the Deployments.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localexec.kube import Api, ApiError, Unavailable

from . import discovery, manifests, pods, revisions, routing, status
from .informer import Informer, key_of

log = logging.getLogger("localkserve")
Obj = dict[str, Any]
Key = tuple[str, str]

ISVC_GROUP = "/apis/serving.kserve.io/v1beta1"
ISVCS = f"{ISVC_GROUP}/inferenceservices"
RUNTIMES = "/apis/serving.kserve.io/v1alpha1/servingruntimes"
CLUSTER_RUNTIMES = "/apis/serving.kserve.io/v1alpha1/clusterservingruntimes"
DEPLOYMENTS = "/apis/apps/v1/deployments"
PODS = "/api/v1/pods"
TAG_ROUTING = "serving.kserve.io/enable-tag-routing"


@dataclass(frozen=True)
class Settings:
    domain: str = "example.com"
    default_mode: str = status.SERVERLESS
    resync: float = 10.0
    file_sd: Path | None = None


@dataclass(frozen=True)
class Desired:
    """The spec rendered: the predictor's revision and Deployment, and its canary percent."""

    deployments: dict[str, Obj]
    latest: str
    canary_percent: int | None = None


class Controller:
    def __init__(self, api: Api, table: routing.Table, settings: Settings) -> None:
        self.api, self.table, self.settings = api, table, settings
        self.queue: queue.Queue[Key | None] = queue.Queue()
        self._pending: set[Key] = set()
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.isvcs = Informer(api, ISVCS, self._on_isvc, name="inferenceservices")
        self.runtimes = Informer(api, RUNTIMES, self._on_runtime, name="servingruntimes")
        self.cluster_runtimes = Informer(api, CLUSTER_RUNTIMES, self._on_runtime, name="clusterservingruntimes")
        selector = f"{manifests.MANAGED_BY[0]}={manifests.MANAGED_BY[1]}"
        self.deployments = Informer(api, DEPLOYMENTS, self._on_owned, selector, "deployments")
        self.pods = Informer(api, PODS, self._on_owned, manifests.REVISION_LABEL, "pods")
        self.informers = [self.isvcs, self.runtimes, self.cluster_runtimes, self.deployments, self.pods]
        self._discovered: str | None = None
        self._left_alone: dict[Key, str] = {}  # InferenceServices of another mode -> uid (logged once)

    # ---- queueing ---------------------------------------------------------------------

    def enqueue(self, key: Key) -> None:
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        self.queue.put(key)

    def _on_isvc(self, obj: Obj) -> None:
        self.enqueue(key_of(obj))

    def _on_runtime(self, obj: Obj) -> None:
        namespace = obj["metadata"].get("namespace")  # none for a ClusterServingRuntime
        for isvc in self.isvcs.items(namespace):
            self.enqueue(key_of(isvc))

    def _on_owned(self, obj: Obj) -> None:
        name = (obj["metadata"].get("labels") or {}).get(manifests.ISVC_LABEL)
        if name:
            self.enqueue((obj["metadata"].get("namespace", "default"), name))

    # ---- loop -------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Start the informers and wait for their first lists (the CRDs must be installed)."""
        for informer in self.informers:
            informer.start()
        deadline = time.monotonic() + timeout
        for informer in self.informers:
            if not informer.synced.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"no list of {informer.path} within {timeout:.0f}s")
        threading.Thread(target=self.run, name="reconcile", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        for informer in self.informers:
            informer.stopping.set()
        self.queue.put(None)

    def run(self) -> None:
        next_resync = 0.0
        while not self.stopping.is_set():
            if time.monotonic() >= next_resync:
                for isvc in self.isvcs.items():
                    self.enqueue(key_of(isvc))
                next_resync = time.monotonic() + self.settings.resync
            try:
                key = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if key is None:
                continue
            with self._lock:
                self._pending.discard(key)
            self._guarded(f"{key[0]}/{key[1]}", self.reconcile, key)
            if self.queue.empty():
                self._guarded("discovery", self.write_discovery)

    def _guarded(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Unavailable as err:
            log.warning("%s: API unavailable (%s); retried at the next resync", what, err)
        except Exception:  # one bad InferenceService must not stop the others
            log.exception("%s: reconcile failed; retried at the next resync", what)

    # ---- one InferenceService ---------------------------------------------------------

    def reconcile(self, key: Key) -> None:
        namespace, name = key
        isvc = self.isvcs.get(namespace, name)
        owned = [d for d in self.deployments.items(namespace) if pods.revision_of(d) and _owner(d) == name]
        if isvc is None or isvc["metadata"].get("deletionTimestamp"):
            self.table.drop(namespace, name)
            if isvc is None:
                self._left_alone.pop(key, None)
                # The garbage collector deletes them too (owner references), but it can take
                # tens of seconds to notice; with the route gone they serve nothing.
                for d in owned:
                    self._delete_revision(d)
            return
        stale = [d for d in owned if _owner_uid(d) != isvc["metadata"]["uid"]]  # an earlier isvc's of that name
        for d in stale:
            self._delete_revision(d)
        owned = [d for d in owned if d not in stale]
        if not status.serves(isvc, self.settings.default_mode):
            self._leave_alone(isvc, owned)
            return
        self._left_alone.pop(key, None)
        states = pods.states(owned, [p for p in self.pods.items(namespace) if _owner(p) == name])
        try:
            desired = self._desired(isvc)
        except manifests.RuntimeProblem as problem:
            # KServe leaves what is served alone and reports the spec it cannot serve.
            route = next((r for r in self.table.routes() if (r.namespace, r.name) == key), None)
            health = status.Health(status.FALSE, problem.reason, str(problem), bool(route and route.live()))
            self._write_status(isvc, status.build(isvc, None, health, self.settings.domain))
            return
        plan = self._plan(isvc, desired, states)
        self._converge(isvc, desired, plan, owned)
        route = self._route(isvc, plan, states, owned)
        self.table.put(route)
        # What PredictorReady waits for: Knative's latest revision and whatever takes traffic.
        required = [plan.latest_created, *(t.revision for t in plan.traffic if t.percent > 0)]
        failures = {r: s.failure for r, s in states.items() if s.failure is not None}
        ready = pods.ready_set(states)
        health = status.health_of(list(dict.fromkeys(required)), ready, failures, bool(route.live()))
        self._write_status(isvc, status.build(isvc, plan, health, self.settings.domain))

    def _leave_alone(self, isvc: Obj, owned: list[Obj]) -> None:
        """An InferenceService of another deployment mode (Standard): KServe's controller's.
        Nothing is written to it; a route and Deployments of the gateway's own for it (it was
        Serverless before, or the gateway ran with another default mode) go."""
        meta = isvc["metadata"]
        key, uid = (meta["namespace"], meta["name"]), str(meta.get("uid", ""))
        self.table.drop(*key)
        for d in owned:
            self._delete_revision(d)
        if self._left_alone.get(key) != uid:
            self._left_alone[key] = uid
            mode = status.mode_of(isvc, self.settings.default_mode)
            log.info("%s/%s: deploymentMode %s: left to KServe's controller", *key, mode)

    def _route(
        self, isvc: Obj, plan: revisions.Plan, states: dict[str, pods.RevisionState], owned: list[Obj]
    ) -> routing.Route:
        namespace, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
        by_revision = {pods.revision_of(d): d for d in owned}
        backends = []
        for t in plan.traffic:
            if t.revision not in states:
                continue
            dep = by_revision.get(t.revision) or {}
            predictor = ((dep.get("metadata") or {}).get("annotations") or {}).get(manifests.PREDICTOR_ANNOTATION, "")
            endpoints = tuple(e for _, e in states[t.revision].endpoints)
            backends.append(routing.Backend(t.revision, t.percent, endpoints, manifests.sink_of(dep), predictor))
        u = status.urls(isvc, self.settings.domain)
        hosts = routing.hosts(name, namespace, [u.url, u.address, u.predictor_url, u.predictor_address])
        return routing.Route(namespace, name, hosts, tuple(backends))

    def _desired(self, isvc: Obj) -> Desired:
        """The predictor's revision (`spec.canary` is Standard mode's and is ignored here, as
        KServe's Knative reconciler ignores it)."""
        spec, namespace = isvc.get("spec") or {}, isvc["metadata"].get("namespace", "default")
        predictor = spec.get("predictor") or {}
        percent = predictor.get("canaryTrafficPercent")
        # canaryTrafficPercent routes revisions; it is not part of any (Knative's neither).
        predictor = {k: v for k, v in predictor.items() if k != "canaryTrafficPercent"}
        runtime = manifests.find_runtime(predictor, self.runtimes.items(namespace), self.cluster_runtimes.items())
        latest, deployment = manifests.revision(isvc, predictor, runtime)
        return Desired({latest: deployment}, latest, int(percent) if percent is not None else None)

    def _plan(self, isvc: Obj, desired: Desired, states: dict[str, pods.RevisionState]) -> revisions.Plan:
        prior = ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}
        existing, ready = set(states), pods.ready_set(states)
        tags = (isvc["metadata"].get("annotations") or {}).get(TAG_ROUTING) == "true"
        return revisions.serverless(desired.latest, desired.canary_percent, prior, existing, ready, tags)

    def _converge(self, isvc: Obj, desired: Desired, plan: revisions.Plan, owned: list[Obj]) -> None:
        """Create the kept revisions' Deployments that are missing, delete the others."""
        namespace = isvc["metadata"].get("namespace", "default")
        present = {pods.revision_of(d) for d in owned}
        for rev in sorted(plan.keep - present):
            if rev in desired.deployments:  # a kept revision from before has no spec any more
                log.info("%s/%s: creating revision %s", namespace, isvc["metadata"]["name"], rev)
                created = self._call(
                    "POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", desired.deployments[rev]
                )
                if created:
                    self.deployments.put(created)
        for d in owned:
            if pods.revision_of(d) not in plan.keep:
                self._delete_revision(d)

    def _delete_revision(self, deployment: Obj) -> None:
        meta = deployment["metadata"]
        if meta.get("deletionTimestamp"):
            return
        log.info("%s/%s: deleting revision %s (not served)", meta["namespace"], _owner(deployment), meta["name"])
        body = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Background",
            "preconditions": {"uid": meta["uid"]},
        }
        self._call("DELETE", f"/apis/apps/v1/namespaces/{meta['namespace']}/deployments/{meta['name']}", body)

    def _call(self, method: str, path: str, body: Obj) -> Obj | None:
        """An API write; None when it conflicts with what exists (the caches will catch up)."""
        try:
            result = self.api.call(method, path, body)
        except ApiError as err:
            if isinstance(err, Unavailable) or err.status not in (404, 409):
                raise
            return None
        return result if isinstance(result, dict) else None

    def _write_status(self, isvc: Obj, new: Obj) -> None:
        if _same(new, isvc.get("status") or {}):
            return
        meta = isvc["metadata"]
        path = f"{ISVC_GROUP}/namespaces/{meta['namespace']}/inferenceservices/{meta['name']}/status"
        # A PUT carries the resourceVersion: a status computed from a stale object is refused (409).
        updated = self._call("PUT", path, {**isvc, "status": new})
        if updated is None:
            self.enqueue(key_of(isvc))
            time.sleep(0.05)  # let the watch deliver the newer object first
            return
        self.isvcs.put(updated)

    # ---- Prometheus discovery -----------------------------------------------------------

    def write_discovery(self) -> None:
        if self.settings.file_sd is None:
            return
        # Only pods of InferenceServices the gateway routes (Serverless ones).
        served = {(r.namespace, r.name) for r in self.table.routes()}
        mine = [p for p in self.pods.items() if (p["metadata"].get("namespace", "default"), _owner(p)) in served]
        content = discovery.render(discovery.targets(mine))
        if content != self._discovered:
            discovery.write(self.settings.file_sd, content)
            self._discovered = content


def _owner(obj: Obj) -> str | None:
    return (obj["metadata"].get("labels") or {}).get(manifests.ISVC_LABEL)


def _owner_uid(obj: Obj) -> str | None:
    refs = obj["metadata"].get("ownerReferences") or []
    return next((str(r.get("uid")) for r in refs if r.get("controller")), None)


def _same(a: Obj, b: Obj) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
