"""Each revision's state as its Deployment and pods tell it: ready endpoints, or why not.

Pure. A revision is ready when as many of its pods are ready (readiness probe passed, host
port published) as its Deployment asks for; it has failed when it is not ready and a pod
shows what Knative reports as a failed revision: a crashing container, an image or
configuration error, a pod that cannot be scheduled or created.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import manifests, routing
from .status import Failure

Obj = dict[str, Any]

FAILED_WAITING = {
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


@dataclass(frozen=True)
class RevisionState:
    desired: int
    endpoints: tuple[tuple[str, str], ...]  # (pod name, host:port) of ready pods
    failure: Failure | None = None

    @property
    def ready(self) -> bool:
        return self.desired > 0 and len(self.endpoints) >= self.desired


def revision_of(obj: Obj) -> str | None:
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(manifests.REVISION_LABEL)
    return str(value) if value else None


def pod_failure(revision: str, pod: Obj) -> Failure | None:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        return None
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            return Failure(revision, "Unschedulable", c.get("message") or "the pod cannot be scheduled")
    for cs in status.get("containerStatuses") or []:
        state, last = cs.get("state") or {}, (cs.get("lastState") or {}).get("terminated") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
        if waiting.get("reason") in FAILED_WAITING:
            message = last.get("message") or waiting.get("message") or waiting["reason"]
            code = last.get("exitCode")
            return Failure(revision, waiting["reason"], str(message).strip(), code if isinstance(code, int) else None)
        if terminated and terminated.get("exitCode", 0) != 0:
            message = terminated.get("message") or terminated.get("reason") or "Error"
            return Failure(revision, "Error", str(message).strip(), terminated.get("exitCode"))
    return None


def deployment_failure(revision: str, deployment: Obj) -> Failure | None:
    for c in (deployment.get("status") or {}).get("conditions") or []:
        if c.get("type") == "ReplicaFailure" and c.get("status") == "True":
            return Failure(revision, c.get("reason") or "ReplicaFailure", c.get("message") or "pods cannot be created")
    return None


def states(deployments: Iterable[Obj], pods: Iterable[Obj]) -> dict[str, RevisionState]:
    """The state of every revision that has a Deployment (not being deleted)."""
    by_revision: dict[str, list[Obj]] = {}
    for pod in pods:
        rev = revision_of(pod)
        if rev:
            by_revision.setdefault(rev, []).append(pod)
    out: dict[str, RevisionState] = {}
    for d in deployments:
        rev = revision_of(d)
        if not rev or (d.get("metadata") or {}).get("deletionTimestamp"):
            continue
        desired = int((d.get("spec") or {}).get("replicas", 1))
        pods_of = sorted(by_revision.get(rev, []), key=lambda p: str(p["metadata"]["name"]))
        endpoints = tuple((str(p["metadata"]["name"]), e) for p in pods_of if (e := routing.endpoint(p)) is not None)
        failure = None
        if len(endpoints) < desired:
            failures = [f for p in pods_of if (f := pod_failure(rev, p)) is not None]
            failure = failures[0] if failures else deployment_failure(rev, d)
        out[rev] = RevisionState(desired, endpoints, failure)
    return out


def ready_set(revision_states: Mapping[str, RevisionState]) -> frozenset[str]:
    return frozenset(r for r, s in revision_states.items() if s.ready)
