"""Reading pod status the way a controller should: one verdict per pod, with the kubelet's own words."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from slipway.conditions import parse_time

State = Literal[
    "pending", "gated", "unschedulable", "waiting", "running", "succeeded", "failed", "terminating", "evicted"
]
# Container waiting reasons that need a person (or time) and deserve a condition of their own.
WAITING_REASONS = {
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
}
# Of those, the ones only a person can end (an image reference, a missing Secret or key): a worker waiting in one
# for STALL_AFTER seconds makes the job Stalled (kstatus: failed), so Flux and `kubectl wait` stop waiting. An
# image name that cannot be parsed never gets better: Stalled at once.
NEEDS_A_PERSON = {"ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "CreateContainerError"}
NEVER_BETTER = {"InvalidImageName"}
STALL_AFTER = 300.0
INVALID_INPUT_EXIT = 65
# Kueue (v0.17) marks each pod of a Workload it evicts with this condition before deleting it; the reason is
# WorkloadEvictedDueTo<why> (Preempted, PodsReadyTimeout, ...) and the message is the eviction's.
TERMINATION_TARGET = "TerminationTarget"
EVICTED_BY_KUEUE = "WorkloadEvictedDueTo"
# The gate Kueue's webhook puts on a pod it manages, lifted when the pod's Workload is admitted.
KUEUE_GATE = "kueue.x-k8s.io/admission"


@dataclass(frozen=True)
class PodView:
    name: str
    state: State
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    since: str = ""  # when the kubelet took the pod on (status.startTime), for a waiting container

    @property
    def permanent_failure(self) -> bool:
        """The trainer said its input is bad: retrying cannot help."""
        return self.state == "failed" and (self.exit_code == INVALID_INPUT_EXIT or self.reason == "InvalidInput")


def view(pod: dict[str, Any]) -> PodView:
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    conds = status.get("conditions") or []
    # First: an evicted pod is also being deleted and, once stopped, Failed; neither is what happened to it.
    if evicted := next((c for c in conds if evicted_by_kueue(c)), None):
        return PodView(name, "evicted", evicted["reason"], evicted.get("message", ""))
    if pod["metadata"].get("deletionTimestamp"):
        return PodView(name, "terminating")
    phase = status.get("phase", "Pending")
    container = (status.get("containerStatuses") or [{}])[0]
    if phase in ("Succeeded", "Failed"):
        term = (container.get("state") or {}).get("terminated") or {}
        reason, message = termination(term.get("message", ""))
        code = term.get("exitCode")
        state: State = "succeeded" if phase == "Succeeded" else "failed"
        return PodView(name, state, reason or term.get("reason", "") or status.get("reason", ""),
                       message or status.get("message", ""), code)  # fmt: skip
    if phase == "Running":
        return PodView(name, "running")
    scheduled: dict[str, Any] = next((c for c in conds if c.get("type") == "PodScheduled"), {})
    gates = {g.get("name") for g in (pod.get("spec") or {}).get("schedulingGates") or []}
    if KUEUE_GATE in gates or (scheduled.get("status") == "False" and scheduled.get("reason") == "SchedulingGated"):
        # Held back on purpose (by Kueue until it admits the group), not something the scheduler failed at.
        return PodView(name, "gated", "SchedulingGated", scheduled.get("message", ""))
    for cond in conds:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return PodView(name, "unschedulable", cond.get("reason", "Unschedulable"), cond.get("message", ""))
    waiting = (container.get("state") or {}).get("waiting") or {}
    if waiting.get("reason") in WAITING_REASONS:
        since = status.get("startTime") or pod["metadata"].get("creationTimestamp") or ""
        return PodView(name, "waiting", waiting["reason"], waiting.get("message", ""), since=since)
    return PodView(name, "pending")


def stall_in(pod: PodView, now: datetime) -> float | None:
    """Seconds until this pod's wait makes its job Stalled (0: it does now), or None when it never does."""
    if pod.state != "waiting" or pod.reason not in NEEDS_A_PERSON | NEVER_BETTER:
        return None
    if pod.reason in NEVER_BETTER:
        return 0.0
    if (since := parse_time(pod.since)) is None:
        return None  # no time to count from (a pod the kubelet has not taken on): not yet
    return max(0.0, STALL_AFTER - (now - since).total_seconds())


def evicted_by_kueue(cond: dict[str, Any]) -> bool:
    return (
        cond.get("type") == TERMINATION_TARGET
        and cond.get("status") == "True"
        and str(cond.get("reason", "")).startswith(EVICTED_BY_KUEUE)
    )


def termination(message: str) -> tuple[str, str]:
    """(reason, message) from a trainer's JSON termination message, or ('', the raw text)."""
    try:
        doc = json.loads(message)
    except ValueError:
        return "", message.strip()[-1024:]
    if not isinstance(doc, dict):
        return "", message.strip()[-1024:]
    return str(doc.get("reason", "")), str(doc.get("message", ""))[:1024]
