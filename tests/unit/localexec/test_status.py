"""Pod status shapes the local executor reports (slipway_dev/localexec/status.py)."""

from __future__ import annotations

from typing import Any

import pytest
from slipway_dev.localexec.status import (
    RUNNING,
    TERMINATED,
    WAITING,
    ContainerRun,
    container_status,
    exit_code,
    pod_phase,
    pod_status,
    termination_message,
)


def run(state: str, code: int | None = None, **kw: Any) -> ContainerRun:
    r = ContainerRun("trainer", "ghcr.io/slipway-dev/trainer:0.1.0", state=state, exit_code=code, **kw)
    if state != WAITING:
        r.started_at = "2026-01-01T00:00:00Z"
    if state == TERMINATED:
        r.finished_at, r.reason = "2026-01-01T00:01:00Z", "Completed" if code == 0 else "Error"
    return r


def test_running_container_status() -> None:
    s = container_status(run(RUNNING, pid=42))
    assert s["state"] == {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    assert s["ready"] is True and s["started"] is True and s["restartCount"] == 0
    assert s["image"] == "ghcr.io/slipway-dev/trainer:0.1.0" and s["imageID"]
    assert s["containerID"] == "localexec://42"


def test_terminated_container_status() -> None:
    r = run(TERMINATED, 3, message='{"reason": "InvalidInput"}')
    state = container_status(r)["state"]["terminated"]
    assert state == {
        "exitCode": 3,
        "reason": "Error",
        "message": '{"reason": "InvalidInput"}',
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:01:00Z",
    }


def test_waiting_container_status() -> None:
    r = run(WAITING, reason="ImagePullBackOff", message="Back-off pulling image")
    s = container_status(r)
    assert s["state"] == {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
    assert s["ready"] is False and s["imageID"] == ""


@pytest.mark.parametrize(
    ("runs", "policy", "phase"),
    [
        ([], "Never", "Pending"),
        ([run(WAITING)], "Never", "Pending"),
        ([run(RUNNING)], "Never", "Running"),
        ([run(TERMINATED, 0)], "Never", "Succeeded"),
        ([run(TERMINATED, 3)], "Never", "Failed"),
        ([run(TERMINATED, 0), run(TERMINATED, 1)], "Never", "Failed"),
        ([run(TERMINATED, 0), run(RUNNING)], "Never", "Running"),
        ([run(TERMINATED, 0)], "OnFailure", "Succeeded"),
        ([run(TERMINATED, 1)], "OnFailure", "Running"),
        ([run(TERMINATED, 0)], "Always", "Running"),
        ([run(WAITING, last_terminated={"exitCode": 1})], "Always", "Running"),  # CrashLoopBackOff
    ],
)
def test_pod_phase(runs: list[ContainerRun], policy: str, phase: str) -> None:
    assert pod_phase(runs, policy) == phase


def test_pod_status_running() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"restartPolicy": "Never"}, "status": {}}
    s = pod_status(pod, [run(RUNNING)], "2026-01-01T00:00:00Z", "198.18.0.2")
    assert s["phase"] == "Running"
    assert s["podIP"] == "198.18.0.2" and s["podIPs"] == [{"ip": "198.18.0.2"}] and s["hostIP"] == "127.0.0.1"
    assert "initContainerStatuses" not in s
    assert s["startTime"] == "2026-01-01T00:00:00Z"
    conditions = {c["type"]: c["status"] for c in s["conditions"]}
    assert conditions == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
    }


def test_pod_status_without_a_sandbox_has_no_pod_ip() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"restartPolicy": "Never"}, "status": {}}
    s = pod_status(pod, [run(WAITING)], "2026-01-01T00:00:00Z")
    assert "podIP" not in s and s["hostIP"] == "127.0.0.1"
    conditions = {c["type"]: c["status"] for c in s["conditions"]}
    assert conditions["PodReadyToStartContainers"] == "False"


@pytest.mark.parametrize(
    ("init", "policy", "phase"),
    [
        ([run(RUNNING)], "Never", "Pending"),
        ([run(TERMINATED, 0), run(WAITING)], "Never", "Pending"),
        ([run(TERMINATED, 1), run(WAITING)], "Never", "Failed"),
        ([run(WAITING, last_terminated={"exitCode": 1})], "Always", "Pending"),  # Init:CrashLoopBackOff
        ([run(TERMINATED, 1)], "OnFailure", "Pending"),  # about to be restarted
    ],
)
def test_pod_phase_with_init_containers(init: list[ContainerRun], policy: str, phase: str) -> None:
    assert pod_phase([run(WAITING)], policy, init) == phase


def test_pod_status_with_init_containers() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"restartPolicy": "Always"}, "status": {}}
    init = [run(TERMINATED, 0), run(RUNNING)]
    init[0].name, init[1].name = "fetch", "unpack"
    s = pod_status(pod, [run(WAITING, reason="PodInitializing")], "2026-01-01T00:00:00Z", "198.18.0.2", init)
    assert s["phase"] == "Pending"
    by_type = {c["type"]: c for c in s["conditions"]}
    assert by_type["Initialized"]["status"] == "False"
    assert by_type["Initialized"]["reason"] == "ContainersNotInitialized"
    assert by_type["Initialized"]["message"] == "containers with incomplete status: [unpack]"
    assert [c["name"] for c in s["initContainerStatuses"]] == ["fetch", "unpack"]
    assert s["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert s["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}


def test_pod_status_keeps_transition_times_of_unchanged_conditions() -> None:
    before = {"type": "Initialized", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}
    ready = {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}
    pod = {"metadata": {"name": "p"}, "spec": {"restartPolicy": "Never"}, "status": {"conditions": [before, ready]}}
    s = pod_status(pod, [run(TERMINATED, 0)], "2026-01-01T00:00:00Z")
    by_type = {c["type"]: c for c in s["conditions"]}
    assert by_type["Initialized"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert by_type["Ready"]["status"] == "False" and by_type["Ready"]["reason"] == "PodCompleted"
    assert by_type["Ready"]["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    assert s["phase"] == "Succeeded"


def test_termination_message() -> None:
    log = "".join(f"line {i}\n" for i in range(200))
    assert termination_message('{"manifest": "s3://b/m.json"}', log, "FallbackToLogsOnError", 0) == (
        '{"manifest": "s3://b/m.json"}'
    )
    # An empty file and a failure: the log's tail, at most 80 lines and 2048 bytes.
    fallback = termination_message("", log, "FallbackToLogsOnError", 1)
    assert fallback.endswith("line 199\n") and fallback.count("\n") <= 80 and len(fallback.encode()) <= 2048
    assert termination_message("", log, "File", 1) == ""
    assert termination_message("", log, "FallbackToLogsOnError", 0) == ""
    assert len(termination_message("x" * 10_000, "", None, 0)) == 4096


def test_exit_code_of_signals() -> None:
    assert exit_code(0) == 0 and exit_code(3) == 3
    assert exit_code(-9) == 137 and exit_code(-15) == 143
