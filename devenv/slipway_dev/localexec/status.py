"""Pod status as the kubelet reports it, built from what the executor knows of its processes.

Pure functions over `ContainerRun` records, so the shapes (which the operator reads: phase,
container states, reasons, termination messages) are unit-tested without a cluster.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from .envres import HOST_IP

Obj = dict[str, Any]

LOOPBACK = HOST_IP  # status.hostIP: what a fieldRef to status.hostIP resolves to (envres.py)
WAITING, RUNNING, TERMINATED = "waiting", "running", "terminated"

# The kubelet's limits (pkg/kubelet/container: MaxContainerTerminationMessageLength, …LogLines,
# …LogLength).
MAX_MESSAGE_BYTES = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerRun:
    """One container of a pod, as the executor sees it."""

    name: str
    image: str
    state: str = WAITING
    reason: str = "ContainerCreating"
    message: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    restart_count: int = 0
    pid: int | None = None
    last_terminated: Obj | None = None
    probe_ready: bool = True  # its readiness probe passes (or it has none)
    startup_done: bool = True  # its startup probe has passed (or it has none)

    @property
    def ready(self) -> bool:
        return self.state == RUNNING and self.startup_done and self.probe_ready

    @property
    def started(self) -> bool:
        """The kubelet's `started`: running, and past its startup probe if it has one."""
        return self.state == RUNNING and self.startup_done

    def terminated_state(self) -> Obj:
        state: Obj = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        }
        if self.message:
            state["message"] = self.message
        if self.pid is not None:
            state["containerID"] = container_id(self.pid)
        return state


def container_id(pid: int) -> str:
    return f"localexec://{pid}"


def image_id(image: str) -> str:
    # No registry digest exists locally; the image name is all there is to identify it.
    return f"localexec://{image}"


def exit_code(returncode: int) -> int:
    """Popen's returncode as a container runtime reports it: death by signal N is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def exit_reason(code: int) -> str:
    return "Completed" if code == 0 else "Error"


def termination_message(file_text: str, log_tail: str, policy: str | None, code: int) -> str:
    """The container's termination message: the file the process wrote (capped at 4096
    bytes); with FallbackToLogsOnError, an empty file and a failure, the tail of its log."""
    message = _cap(file_text, MAX_MESSAGE_BYTES)
    if not message.strip() and policy == "FallbackToLogsOnError" and code != 0:
        lines = log_tail.splitlines(keepends=True)[-FALLBACK_LOG_LINES:]
        message = _tail_bytes("".join(lines), FALLBACK_LOG_BYTES)
    return message


def _cap(text: str, limit: int) -> str:
    return text.encode()[:limit].decode(errors="ignore")


def _tail_bytes(text: str, limit: int) -> str:
    return text.encode()[-limit:].decode(errors="ignore")


def container_status(run: ContainerRun) -> Obj:
    status: Obj = {
        "name": run.name,
        "image": run.image,
        "imageID": image_id(run.image) if run.started_at else "",
        "ready": run.ready,
        "started": run.started,
        "restartCount": run.restart_count,
    }
    if run.pid is not None:
        status["containerID"] = container_id(run.pid)
    if run.state == RUNNING:
        status["state"] = {"running": {"startedAt": run.started_at}}
    elif run.state == TERMINATED:
        status["state"] = {"terminated": run.terminated_state()}
    else:
        waiting: Obj = {"reason": run.reason}
        if run.message:
            waiting["message"] = run.message
        status["state"] = {"waiting": waiting}
    status["lastState"] = {"terminated": run.last_terminated} if run.last_terminated else {}
    return status


def init_done(init_runs: list[ContainerRun]) -> bool:
    return all(r.state == TERMINATED and r.exit_code == 0 for r in init_runs)


def pod_phase(runs: list[ContainerRun], restart_policy: str, init_runs: list[ContainerRun] | None = None) -> str:
    """The kubelet's getPhase: Pending while init containers run (Failed once one failed
    under restartPolicy Never), then from the regular containers."""
    if init_runs and not init_done(init_runs):
        failed = any(r.state == TERMINATED and r.exit_code != 0 for r in init_runs)
        return "Failed" if failed and restart_policy == "Never" else "Pending"
    if not runs:
        return "Pending"
    running = sum(r.state == RUNNING for r in runs)
    terminated = [r for r in runs if r.state == TERMINATED]
    waiting_after_start = sum(r.state == WAITING and r.last_terminated is not None for r in runs)
    waiting_fresh = sum(r.state == WAITING and r.last_terminated is None for r in runs)
    if waiting_fresh:
        return "Pending"
    if running or waiting_after_start:
        return "Running"
    if len(terminated) == len(runs):
        failed = any(r.exit_code != 0 for r in terminated)
        if restart_policy == "Always":
            return "Running"  # about to be restarted
        if restart_policy == "OnFailure" and failed:
            return "Running"
        return "Failed" if failed else "Succeeded"
    return "Pending"


def _condition(kind: str, ok: bool, previous: Obj, reason: str = "", message: str = "") -> Obj:
    status = "True" if ok else "False"
    old = next((c for c in previous.get("conditions") or [] if c.get("type") == kind), None)
    unchanged = old is not None and old.get("status") == status and old.get("lastTransitionTime")
    since = old["lastTransitionTime"] if old is not None and unchanged else now()
    cond: Obj = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if not ok and reason:
        cond["reason"], cond["message"] = reason, message
    return cond


def pod_status(
    pod: Obj,
    runs: list[ContainerRun],
    start_time: str,
    pod_ip: str | None = None,
    init_runs: list[ContainerRun] | None = None,
) -> Obj:
    """The status the executor reports for `pod`, from its containers' runs (`init_runs`:
    its init containers'). `pod_ip` is None until the pod's network exists (the kubelet's
    sandbox). Conditions keep their lastTransitionTime while their status does not change,
    as the kubelet's do."""
    previous = pod.get("status") or {}
    init_runs = init_runs or []
    phase = pod_phase(runs, (pod.get("spec") or {}).get("restartPolicy", "Always"), init_runs)
    unready = [r.name for r in runs if not r.ready]
    not_ready = f"containers with unready status: [{' '.join(unready)}]"
    incomplete = [r.name for r in init_runs if not (r.state == TERMINATED and r.exit_code == 0)]
    not_initialized = f"containers with incomplete status: [{' '.join(incomplete)}]"
    done = phase in ("Succeeded", "Failed")
    ready_reason = "PodCompleted" if done else "ContainersNotReady"
    init_reason = "PodCompleted" if done else "ContainersNotInitialized"
    out: Obj = {
        "phase": phase,
        "conditions": [
            _condition("PodReadyToStartContainers", pod_ip is not None, previous),
            _condition("Initialized", not incomplete, previous, init_reason, "" if done else not_initialized),
            _condition("Ready", not unready, previous, ready_reason, "" if done else not_ready),
            _condition("ContainersReady", not unready, previous, ready_reason, "" if done else not_ready),
        ],
        "hostIP": LOOPBACK,
        "hostIPs": [{"ip": LOOPBACK}],
        "startTime": start_time,
        "containerStatuses": [container_status(r) for r in runs],
    }
    if pod_ip is not None:
        out["podIP"], out["podIPs"] = pod_ip, [{"ip": pod_ip}]
    if init_runs:
        out["initContainerStatuses"] = [container_status(r) for r in init_runs]
    return out
