"""TrainingJob decide(): the gang state machine, table-tested with a fixed clock and hand-made pods."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slipway.api import TrainingJob
from slipway.conditions import rfc3339
from slipway.config import Settings
from slipway.controllers import trainingjob_manifests as m
from slipway.controllers.base import Create, Delete, Result
from slipway.controllers.pods import view
from slipway.controllers.trainingjob import Observed, TrainingJobController

from tests.unit.fakes import FakeS3, clients

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UID = "0123456789abcdef"
CTRL = TrainingJobController(Settings(s3_endpoint="http://s3.local:9000"))


def job(
    status: dict[str, Any] | None = None, labels: dict[str, str] | None = None, name: str = "j", **spec: Any
) -> TrainingJob:
    base = {
        "modelName": "m",
        "framework": "sklearn",
        "algorithm": "sklearn.svm.SVC",
        "dataset": {"uri": "sklearn://iris"},
        "output": {"uri": "s3://bucket/m", "credentialsSecretRef": {"name": "s3"}},
        "gates": [{"metric": "accuracy", "min": 0.9}],
    }
    meta = {"name": name, "namespace": "ns", "uid": UID, "labels": {m.KUEUE_QUEUE: "q"} if labels is None else labels}
    return TrainingJob.model_validate({"metadata": meta, "spec": {**base, **spec}, "status": status})


def ddp(**extra: Any) -> dict[str, Any]:
    return {"framework": "pytorch", "algorithm": "mlp", "distributed": {"workers": 2},
            "resources": {"gpus": 1, "gpuProduct": "NVIDIA-H100-80GB-HBM3"}, **extra}  # fmt: skip


def pod(attempt: int, rank: int, phase: str = "Running", exit_code: int | None = None, **status: Any) -> dict[str, Any]:
    st: dict[str, Any] = {"phase": phase, **status}
    if exit_code is not None:
        st["containerStatuses"] = [{"state": {"terminated": {"exitCode": exit_code, "message": status.pop("msg", "")}}}]
    return {"metadata": {"name": f"j-a{attempt}-w{rank}", "labels": {m.LABEL_ATTEMPT: str(attempt)}}, "status": st}


def conds(result: Result) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in result.conditions}


def creates(result: Result) -> list[str]:
    return [f"{a.manifest['kind']}/{a.manifest['metadata']['name']}" for a in result.actions if isinstance(a, Create)]


def deletes(result: Result) -> list[str]:
    return sorted(f"{a.kind}/{a.name}" for a in result.actions if isinstance(a, Delete))


RUNNING = {"attempts": 1, "phase": "Running", "startTime": "2026-03-01T11:00:00Z"}


def test_first_pass_launches_attempt_one() -> None:
    r = CTRL.decide(job(), Observed(True), NOW)
    assert creates(r) == ["Pod/j-a1-w0"]
    # Queued by Kueue: the deadline's clock waits for the admission.
    assert r.fields == {"phase": "Pending", "attempts": 1}
    assert conds(r)["Reconciling"] == ("True", "Launching") and [e.reason for e in r.events] == ["Launched"]
    free = CTRL.decide(job(labels={}), Observed(True), NOW)
    assert free.fields == {"phase": "Pending", "attempts": 1, "startTime": "2026-03-01T12:00:00Z"}


def test_the_deadline_clock_starts_when_the_gang_is_admitted_or_resumed() -> None:
    gated = pod(1, 0, "Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}])
    queued = CTRL.decide(job(status={"attempts": 1, "phase": "Pending"}), Observed(True, pods=(gated,)), NOW)
    assert "startTime" not in queued.fields and conds(queued)["Reconciling"] == ("True", "Queued")
    admitted = CTRL.decide(job(status={"attempts": 1, "phase": "Pending"}), Observed(True, pods=(pod(1, 0),)), NOW)
    assert admitted.fields["startTime"] == "2026-03-01T12:00:00Z"
    # Resumed after runPolicy.suspend (which cleared startTime): counted from the resume.
    resumed = CTRL.decide(
        job(labels={}, status={"attempts": 1, "phase": "Suspended"}), Observed(True, pods=(pod(1, 0),)), NOW
    )
    assert resumed.fields["startTime"] == "2026-03-01T12:00:00Z"
    running = CTRL.decide(job(status=RUNNING), Observed(True, pods=(pod(1, 0),)), NOW)
    assert "startTime" not in running.fields  # set once, never moved


def test_distributed_launch_creates_service_and_gang() -> None:
    r = CTRL.decide(job(**ddp()), Observed(True), NOW)
    assert creates(r) == ["Service/j", "Pod/j-a1-w0", "Pod/j-a1-w1"]


def test_worker_pod_spec() -> None:
    p = m.worker_pod(job(**ddp()), 2, 1, CTRL.settings)
    c = p["spec"]["containers"][0]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    assert env["MASTER_ADDR"] == "j-w0.j" and env["WORLD_SIZE"] == "2" and env["NODE_RANK"] == "1"
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3", "key": "AWS_SECRET_ACCESS_KEY"}}
    assert env["AWS_ENDPOINT_URL"] == "http://s3.local:9000"
    assert c["command"][0] == "torchrun" and "--node-rank=$(NODE_RANK)" in c["command"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in p["spec"]["tolerations"]
    assert p["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert p["spec"]["hostname"] == "j-w1" and p["spec"]["subdomain"] == "j"
    assert p["metadata"]["labels"][m.KUEUE_QUEUE] == "q" and p["metadata"]["labels"][m.LABEL_ATTEMPT] == "2"
    assert p["metadata"]["ownerReferences"][0]["uid"] == UID
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"] == {"drop": ["ALL"]}
    config = json.loads(c["args"][1])
    assert config["output"] == "s3://bucket/m/j-01234567" and config["framework"] == "pytorch"


def test_single_worker_runs_python_not_torchrun() -> None:
    c = m.worker_pod(job(), 1, 0, CTRL.settings)["spec"]["containers"][0]
    assert c["command"] == ["python", "-m", "slipway_trainer"]
    assert "MASTER_ADDR" not in {e["name"] for e in c["env"]}


@pytest.mark.parametrize(
    ("pods", "reason", "phase"),
    [
        ([pod(1, 0, "Pending")], "Pending", "Pending"),
        ([pod(1, 0)], "Running", "Running"),
        ([pod(1, 0, "Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                              "message": "0/4 nodes have enough nvidia.com/gpu"}])],
         "Unschedulable", "Pending"),
        ([pod(1, 0, "Pending", containerStatuses=[{"state": {"waiting": {"reason": "ImagePullBackOff",
                                                                          "message": "no such image"}}}])],
         "ImagePullBackOff", "Pending"),
    ],
)  # fmt: skip
def test_waiting_states_surface(pods: list[dict[str, Any]], reason: str, phase: str) -> None:
    r = CTRL.decide(job(RUNNING), Observed(True, tuple(pods)), NOW)
    assert conds(r)["Ready"] == ("False", reason) and r.fields["phase"] == phase
    assert not creates(r) and r.requeue_after


def waiting_pod(reason: str, waited: float) -> dict[str, Any]:
    started = rfc3339(NOW - timedelta(seconds=waited))
    waiting = {"state": {"waiting": {"reason": reason, "message": "pull access denied"}}}
    return pod(1, 0, "Pending", startTime=started, containerStatuses=[waiting])


@pytest.mark.parametrize(
    ("reason", "waited", "stalled", "requeue"),
    [
        ("ImagePullBackOff", 60, False, 30.0),
        ("ImagePullBackOff", 290, False, 10.0),  # woken when the wait turns into Stalled
        ("ImagePullBackOff", 301, True, 30.0),
        ("CreateContainerConfigError", 600, True, 30.0),
        ("InvalidImageName", 0, True, 30.0),  # never gets better by waiting
    ],
)
def test_a_wait_only_a_person_can_end_becomes_stalled(
    reason: str, waited: float, stalled: bool, requeue: float
) -> None:
    r = CTRL.decide(job(RUNNING), Observed(True, (waiting_pod(reason, waited),)), NOW)
    c = conds(r)
    assert c["Ready"] == ("False", reason) and r.fields["phase"] == "Pending" and not creates(r)
    # kstatus: Stalled=True reads failed (Flux, kubectl wait stop waiting); Reconciling=True reads in progress.
    assert c["Stalled"] == ("True" if stalled else "False", reason)
    assert c["Reconciling"][0] == ("False" if stalled else "True")
    assert r.requeue_after == pytest.approx(requeue)
    assert "pull access denied" in next(x for x in r.conditions if x.type == "Ready").message


def test_unschedulable_message_is_the_schedulers() -> None:
    p = pod(1, 0, "Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": "0/4 nodes are available"}])  # fmt: skip
    r = CTRL.decide(job(RUNNING), Observed(True, (p,)), NOW)
    assert "0/4 nodes are available" in r.conditions[0].message
    assert [e.type for e in r.events] == ["Warning"]


def test_one_failed_worker_restarts_the_whole_gang() -> None:
    pods = (pod(1, 0), pod(1, 1, "Failed", exit_code=1))
    r = CTRL.decide(job(RUNNING, **ddp()), Observed(True, pods, service_exists=True), NOW)
    assert deletes(r) == ["Pod/j-a1-w0", "Pod/j-a1-w1"]
    assert creates(r) == ["Service/j", "Pod/j-a2-w0", "Pod/j-a2-w1"]  # the Service create is idempotent
    assert r.fields["attempts"] == 2 and r.fields["startTime"] == RUNNING["startTime"]
    assert [e.reason for e in r.events] == ["GangRestart"] and "exit code 1" in r.events[0].message


def test_invalid_input_burns_no_retry() -> None:
    msg = json.dumps({"reason": "InvalidInput", "message": "column 'label' not found"})
    pods = (pod(1, 0, "Failed", exit_code=65, msg=msg),)
    r = CTRL.decide(job(RUNNING), Observed(True, pods), NOW)
    assert conds(r)["Failed"] == ("True", "InvalidInput") and conds(r)["Stalled"][0] == "True"
    assert "column 'label' not found" in r.conditions[0].message
    assert not creates(r) and r.fields["phase"] == "Failed" and "attempts" not in r.fields


def test_backoff_limit_exceeded() -> None:
    status = {**RUNNING, "attempts": 4}
    r = CTRL.decide(
        job(status, runPolicy={"backoffLimit": 3}), Observed(True, (pod(4, 0, "Failed", exit_code=1),)), NOW
    )
    assert conds(r)["Failed"] == ("True", "BackoffLimitExceeded") and not creates(r)


def test_deadline_exceeded_kills_the_gang() -> None:
    r = CTRL.decide(job(RUNNING, runPolicy={"activeDeadlineSeconds": 600}), Observed(True, (pod(1, 0),)), NOW)
    assert conds(r)["Failed"] == ("True", "DeadlineExceeded") and deletes(r) == ["Pod/j-a1-w0"]


def test_running_requeues_at_the_deadline() -> None:
    r = CTRL.decide(job(RUNNING, runPolicy={"activeDeadlineSeconds": 3610}), Observed(True, (pod(1, 0),)), NOW)
    assert r.requeue_after == pytest.approx(10)


MANIFEST = {
    "artifact": {
        "uri": "s3://bucket/m/j-01234567/model.joblib",
        "sha256": "a" * 64,
        "sizeBytes": 10,
        "format": "joblib",
    },
    "metrics": {"accuracy": 0.95},
    "dataset": {"uri": "sklearn://iris", "sha256": "b" * 64},
    "hyperparameters": {"C": 1.0},
    "signature": {"inputs": [{"name": "x", "dtype": "float64"}]},
    "referenceData": {"uri": "s3://bucket/m/j-01234567/reference.parquet", "rows": 5},
    "libraries": {"scikit-learn": "1.9.1"},
    "classes": ["benign", "malignant"],
}


def test_success_registers_a_model_version_with_lineage() -> None:
    obs = Observed(True, (pod(1, 0, "Succeeded", exit_code=0),), manifest=MANIFEST, next_version=3)
    r = CTRL.decide(job(RUNNING), obs, NOW)
    [mv] = [a.manifest for a in r.actions if isinstance(a, Create)]
    assert mv["metadata"]["name"] == "m-v3" and mv["metadata"]["labels"][m.LABEL_JOB_UID] == UID
    assert "ownerReferences" not in mv["metadata"]  # it must outlive the job
    lineage = mv["spec"]["lineage"]
    assert lineage["trainingJobRef"] == {"name": "j", "uid": UID}
    assert lineage["dataset"] == {"uri": "sklearn://iris", "sha256": "b" * 64}
    assert lineage["seed"] == 0 and lineage["hyperparameters"] == {"C": 1.0} and lineage["image"]
    assert mv["spec"]["artifact"]["credentialsSecretRef"] == {"name": "s3"}
    assert mv["spec"]["gates"] == [{"metric": "accuracy", "min": 0.9}]
    assert mv["spec"]["classes"] == ["benign", "malignant"]
    assert r.fields["modelVersionRef"] == {"name": "m-v3"} and r.fields["phase"] == "Succeeded"
    assert conds(r)["Ready"] == ("True", "Succeeded") and conds(r)["Succeeded"][0] == "True"


def test_success_adopts_a_model_version_created_before_a_crash() -> None:
    obs = Observed(True, (pod(1, 0, "Succeeded", exit_code=0),), manifest=MANIFEST, model_version="m-v2")
    r = CTRL.decide(job(RUNNING), obs, NOW)
    assert not creates(r) and r.fields["modelVersionRef"] == {"name": "m-v2"}


def test_success_without_manifest_waits() -> None:
    obs = Observed(True, (pod(1, 0, "Succeeded", exit_code=0),), manifest_problem="no manifest.json")
    r = CTRL.decide(job(RUNNING), obs, NOW)
    assert conds(r)["Ready"] == ("False", "ManifestUnavailable") and r.requeue_after


def test_suspend_removes_pods_and_resets_the_clock() -> None:
    r = CTRL.decide(job(RUNNING, runPolicy={"suspend": True}), Observed(True, (pod(1, 0),)), NOW)
    assert deletes(r) == ["Pod/j-a1-w0"] and r.fields == {"phase": "Suspended", "startTime": None}
    assert conds(r)["Suspended"] == ("True", "Suspended")


def test_resume_recreates_the_gang_of_the_current_attempt() -> None:
    r = CTRL.decide(job({"attempts": 1, "phase": "Suspended"}), Observed(True, ()), NOW)
    assert creates(r) == ["Pod/j-a1-w0"]


def test_pods_of_a_newer_attempt_win_over_stale_status() -> None:
    # The operator died after creating attempt 2's pods but before writing attempts=2.
    r = CTRL.decide(job(RUNNING), Observed(True, (pod(1, 0, "Failed", exit_code=1), pod(2, 0))), NOW)
    assert not creates(r) and deletes(r) == ["Pod/j-a1-w0"] and conds(r)["Ready"] == ("False", "Running")


@pytest.mark.parametrize(("age", "deleted"), [(30, False), (120, True)])
def test_ttl_after_finished(age: int, deleted: bool) -> None:
    done = (NOW - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {"phase": "Succeeded", "completionTime": done, "modelVersionRef": {"name": "m-v1"}}
    r = CTRL.decide(job(status, runPolicy={"ttlSecondsAfterFinished": 60}), Observed(True), NOW)
    assert (deletes(r) == ["TrainingJob/j"]) is deleted
    assert r.conditions == []  # finished jobs keep their conditions


@pytest.mark.parametrize(
    ("spec", "secret", "reason", "stalled"),
    [
        ({}, False, "SecretNotFound", "False"),
        ({"algorithm": "svc"}, True, "InvalidSpec", "True"),
        ({"framework": "pytorch", "algorithm": "resnet"}, True, "InvalidSpec", "True"),
        ({"resources": {"gpus": 1}}, True, "InvalidSpec", "True"),
    ],
)
def test_spec_problems(spec: dict[str, Any], secret: bool, reason: str, stalled: str) -> None:
    r = CTRL.decide(job(**spec), Observed(secret), NOW)
    assert conds(r)["Ready"] == ("False", reason) and conds(r)["Stalled"][0] == stalled
    assert not creates(r)


# Kueue (v0.17, plain-Pod integration): one pod group per attempt, Queued while gated, a new attempt after an
# eviction that uses up no retry.

GROUP = "j-01234567-a1"  # <job>-<uid[:8]>-a<attempt>
GATED = {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
         "message": "Scheduling is blocked due to non-empty scheduling gates"}  # fmt: skip
PREEMPTED = ("Preempted to accommodate a workload (UID: 5e0c, JobUID: 77aa) due to prioritization in the "
             "ClusterQueue; preemptor path: /gpu-cluster-queue; preemptee path: /gpu-cluster-queue")  # fmt: skip
PENDING_WORKLOAD = {"status": {"conditions": [
    {"type": "QuotaReserved", "status": "False", "reason": "Pending",
     "message": "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor "
                "gpu, 2 more needed"}]}}  # fmt: skip


def gated(attempt: int, rank: int, condition: bool = True) -> dict[str, Any]:
    p = pod(attempt, rank, "Pending", **({"conditions": [GATED]} if condition else {}))
    p["spec"] = {"schedulingGates": [{"name": "kueue.x-k8s.io/admission"}]}
    return p


def evicted(attempt: int, rank: int, phase: str = "Running", reason: str = "WorkloadEvictedDueToPreempted",
            **status: Any) -> dict[str, Any]:  # fmt: skip
    target = {"type": "TerminationTarget", "status": "True", "reason": reason, "message": PREEMPTED}
    p = pod(attempt, rank, phase, conditions=[target], **status)
    p["metadata"]["deletionTimestamp"] = "2026-03-01T11:59:00Z"  # Kueue deletes it; its finalizer keeps it a while
    return p


def test_each_attempt_is_one_kueue_pod_group() -> None:
    j = job(**ddp())
    first = [m.worker_pod(j, 1, rank, CTRL.settings)["metadata"] for rank in (0, 1)]
    assert {md["labels"][m.KUEUE_GROUP] for md in first} == {GROUP}
    assert all(
        md["annotations"] == {m.KUEUE_TOTAL: "2", m.KUEUE_RETRIABLE: "false"} and md["labels"][m.KUEUE_QUEUE] == "q"
        for md in first
    )
    assert m.worker_pod(j, 2, 0, CTRL.settings)["metadata"]["labels"][m.KUEUE_GROUP] == "j-01234567-a2"
    assert m.KUEUE_GROUP not in m.headless_service(j)["metadata"]["labels"]  # only pods make up the group


def test_priority_class_is_copied_to_every_pod() -> None:
    j = job(labels={m.KUEUE_QUEUE: "q", m.KUEUE_PRIORITY: "training-low"}, **ddp())
    assert {m.worker_pod(j, 1, r, CTRL.settings)["metadata"]["labels"][m.KUEUE_PRIORITY] for r in (0, 1)} == {
        "training-low"
    }


def test_without_a_queue_name_kueue_is_not_involved() -> None:
    meta = m.worker_pod(job(labels={}, **ddp()), 1, 0, CTRL.settings)["metadata"]
    assert not {m.KUEUE_QUEUE, m.KUEUE_GROUP} & meta["labels"].keys() and "annotations" not in meta


def test_a_long_job_name_gives_a_short_distinct_group_name() -> None:
    long_name = "x" * 50 + "." + "y" * 120
    group = m.pod_group(job(name=long_name), 12)
    assert len(group) <= 63 and group.endswith("-01234567-a12")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", group)  # DNS subdomain
    assert m.pod_group(job(name=long_name[:-1] + "z"), 12) != group  # same prefix, different job
    assert m.pod_group(job(name="x" * 63), 1) != m.pod_group(job(name="x" * 64), 1)


@pytest.mark.parametrize(
    ("pod_", "state", "reason"),
    [
        (gated(1, 0), "gated", "SchedulingGated"),
        (gated(1, 0, condition=False), "gated", "SchedulingGated"),  # the scheduler has not looked yet
        (pod(1, 0, "Pending", conditions=[{**GATED, "reason": "Unschedulable"}]), "unschedulable", "Unschedulable"),
        (evicted(1, 0), "evicted", "WorkloadEvictedDueToPreempted"),  # before its deletionTimestamp
        (evicted(1, 0, "Failed", exit_code=137), "evicted", "WorkloadEvictedDueToPreempted"),  # not a failure
        (evicted(1, 0, reason="WorkloadDeleted"), "terminating", ""),  # stopped, but not an eviction
    ],
)  # fmt: skip
def test_pod_view_of_kueue_states(pod_: dict[str, Any], state: str, reason: str) -> None:
    v = view(pod_)
    assert (v.state, v.reason) == (state, reason)
    if state == "evicted":
        assert v.message == PREEMPTED


@pytest.mark.parametrize(
    ("workload", "why"),
    [
        (PENDING_WORKLOAD, ": couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu"),
        (None, ""),  # Kueue has not created the Workload yet, or it is not installed
    ],
)
def test_a_gang_waiting_for_kueue_is_queued_not_unschedulable(workload: dict[str, Any] | None, why: str) -> None:
    obs = Observed(True, (gated(1, 0), gated(1, 1)), service_exists=True, workload=workload)
    r = CTRL.decide(job(RUNNING, **ddp()), obs, NOW)
    assert conds(r)["Ready"] == ("False", "Queued") and conds(r)["Reconciling"] == ("True", "Queued")
    message = r.conditions[0].message
    assert message.startswith(f"waiting for Kueue to admit pod group {GROUP} (queue q){why}")
    assert r.fields["phase"] == "Pending" and not creates(r) and not deletes(r)
    assert [(e.type, e.reason, e.message) for e in r.events] == [("Normal", "Queued", message)]


def test_admitted_but_unschedulable_is_still_unschedulable() -> None:
    p = pod(1, 0, "Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": "0/4 nodes are available"}])  # fmt: skip
    r = CTRL.decide(job(RUNNING), Observed(True, (p,), workload=PENDING_WORKLOAD), NOW)
    assert conds(r)["Ready"] == ("False", "Unschedulable") and [e.type for e in r.events] == ["Warning"]


def test_a_gate_without_a_queue_name_is_not_kueues() -> None:
    r = CTRL.decide(job(RUNNING, labels={}), Observed(True, (gated(1, 0),)), NOW)
    assert conds(r)["Ready"] == ("False", "SchedulingGated") and [e.type for e in r.events] == ["Warning"]


def test_preemption_restarts_the_gang_as_a_new_attempt_without_using_a_retry() -> None:
    pods = (evicted(1, 0), evicted(1, 1))
    r = CTRL.decide(job(RUNNING, runPolicy={"backoffLimit": 0}, **ddp()), Observed(True, pods, True), NOW)
    assert deletes(r) == ["Pod/j-a1-w0", "Pod/j-a1-w1"]
    assert creates(r) == ["Service/j", "Pod/j-a2-w0", "Pod/j-a2-w1"]
    new_groups = {a.manifest["metadata"]["labels"].get(m.KUEUE_GROUP) for a in r.actions if isinstance(a, Create)}
    assert new_groups == {None, "j-01234567-a2"}  # a new group, so a new Workload
    assert r.fields["attempts"] == 2 and r.fields["preemptions"] == 1 and r.fields["phase"] == "Pending"
    assert r.fields["startTime"] is None  # the deadline counts again from the re-admission
    assert conds(r)["Reconciling"] == ("True", "Preempted") and conds(r)["Ready"] == ("False", "Preempted")
    [event] = r.events
    assert (event.type, event.reason) == ("Normal", "Preempted")
    assert f"Kueue evicted pod group {GROUP} (Preempted): {PREEMPTED}" in event.message


def test_a_worker_that_failed_because_its_peers_were_evicted_is_no_failure() -> None:
    pods = (evicted(1, 0), pod(1, 1, "Failed", exit_code=1, msg="rendezvous: connection reset"))
    r = CTRL.decide(job(RUNNING, runPolicy={"backoffLimit": 0}, **ddp()), Observed(True, pods, True), NOW)
    assert r.fields["attempts"] == 2 and r.fields["preemptions"] == 1 and r.events[0].reason == "Preempted"


def test_a_failed_pod_kueue_evicted_is_evicted_not_failed() -> None:
    pods = (evicted(1, 0, "Failed", exit_code=137),)
    r = CTRL.decide(job(RUNNING, runPolicy={"backoffLimit": 0}), Observed(True, pods), NOW)
    assert conds(r)["Reconciling"] == ("True", "Preempted") and "Failed" not in r.fields.values()
    assert creates(r) == ["Pod/j-a2-w0"] and r.fields["preemptions"] == 1


def test_other_evictions_restart_too_under_their_own_reason() -> None:
    pods = (evicted(1, 0, reason="WorkloadEvictedDueToPodsReadyTimeout"),)
    r = CTRL.decide(job(RUNNING), Observed(True, pods), NOW)
    assert conds(r)["Reconciling"] == ("True", "Evicted") and r.events[0].reason == "Evicted"
    assert "(PodsReadyTimeout)" in r.events[0].message and r.fields["preemptions"] == 1


def test_the_restart_after_a_preemption_happens_once() -> None:
    # The next pass: attempt 2 written, its pods queued, attempt 1's still held by Kueue's finalizer.
    status = {**RUNNING, "attempts": 2, "preemptions": 1, "phase": "Pending"}
    pods = (evicted(1, 0), evicted(1, 1), gated(2, 0), gated(2, 1))
    r = CTRL.decide(job(status, **ddp()), Observed(True, pods, True), NOW)
    assert not creates(r) and deletes(r) == ["Pod/j-a1-w0", "Pod/j-a1-w1"]
    assert "attempts" not in r.fields and "preemptions" not in r.fields and conds(r)["Ready"][1] == "Queued"
    assert "pod group j-01234567-a2 (queue q)" in r.conditions[0].message


def test_backoff_limit_zero_survives_two_preemptions_and_still_fails_on_its_own_failure() -> None:
    limit0 = {"backoffLimit": 0}
    twice = CTRL.decide(job({**RUNNING, "attempts": 2, "preemptions": 1}, runPolicy=limit0),
                        Observed(True, (evicted(2, 0),)), NOW)  # fmt: skip
    assert twice.fields["attempts"] == 3 and twice.fields["preemptions"] == 2
    status = {**RUNNING, "attempts": 3, "preemptions": 2}
    r = CTRL.decide(job(status, runPolicy=limit0), Observed(True, (pod(3, 0),)), NOW)
    assert conds(r)["Ready"] == ("False", "Running") and not creates(r)
    r = CTRL.decide(job(status, runPolicy=limit0), Observed(True, (pod(3, 0, "Failed", exit_code=1),)), NOW)
    assert conds(r)["Failed"] == ("True", "BackoffLimitExceeded")
    r = CTRL.decide(job(status, runPolicy={"backoffLimit": 1}), Observed(True, (pod(3, 0, "Failed", exit_code=1),)),
                    NOW)  # fmt: skip
    assert r.fields["attempts"] == 4 and "preemptions" not in r.fields  # one retry of its own left


def test_suspend_removes_a_queued_gang_and_resume_queues_it_again() -> None:
    pods = (gated(1, 0), gated(1, 1))
    r = CTRL.decide(job(RUNNING, runPolicy={"suspend": True}, **ddp()), Observed(True, pods, True), NOW)
    assert deletes(r) == ["Pod/j-a1-w0", "Pod/j-a1-w1"] and r.fields["phase"] == "Suspended"
    r = CTRL.decide(job({"attempts": 1, "phase": "Suspended"}, **ddp()), Observed(True, (), True), NOW)
    groups = {a.manifest["metadata"]["labels"][m.KUEUE_GROUP] for a in r.actions if isinstance(a, Create)
              and a.manifest["kind"] == "Pod"}  # fmt: skip
    assert creates(r) == ["Pod/j-a1-w0", "Pod/j-a1-w1"] and groups == {GROUP}


class FakeKube:
    """What TrainingJobController.observe reads, with the Workload reads it makes recorded."""

    def __init__(self, pods: list[dict[str, Any]], workload: dict[str, Any] | None) -> None:
        self._pods, self._workload = pods, workload
        self.reads: list[tuple[str, ...]] = []

    async def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        return {}

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return self._pods

    async def service_exists(self, namespace: str, name: str) -> bool:
        return True

    async def get_optional(self, group: str, version: str, plural: str, namespace: str, name: str) -> Any:
        self.reads.append((group, version, plural, namespace, name))
        return self._workload


def owned(p: dict[str, Any]) -> dict[str, Any]:
    p["metadata"]["ownerReferences"] = [{"uid": UID}]
    return p


@pytest.mark.parametrize(
    ("labels", "pods", "reads"),
    [
        (None, [gated(1, 0)], [("kueue.x-k8s.io", "v1beta2", "workloads", "ns", GROUP)]),
        (None, [pod(1, 0)], []),  # admitted and running: nothing to explain
        ({}, [gated(1, 0)], []),  # no queue name: not Kueue's gate
    ],
)
async def test_observe_reads_the_workload_only_while_kueue_holds_the_gang(
    labels: dict[str, str] | None, pods: list[dict[str, Any]], reads: list[tuple[str, ...]]
) -> None:
    kube = FakeKube([owned(p) for p in pods], PENDING_WORKLOAD)
    observed = await CTRL.observe(job(RUNNING, labels=labels), clients(kube), NOW)
    assert kube.reads == reads and observed.workload == (PENDING_WORKLOAD if reads else None)


async def test_an_unreadable_workload_is_none_not_an_error() -> None:
    from kubernetes_asyncio.client.exceptions import ApiException
    from slipway.kube import Kube

    class Custom:
        status = 404

        async def get_namespaced_custom_object(self, *args: Any) -> None:
            raise ApiException(status=self.status, reason="nope")

    kube = Kube.__new__(Kube)
    kube._custom = Custom()  # type: ignore[assignment]
    for status in (404, 403):  # no such Workload or no Kueue; RBAC without the chart's workloads rule
        Custom.status = status
        assert await kube.get_optional("kueue.x-k8s.io", "v1beta2", "workloads", "ns", GROUP) is None
    Custom.status = 500
    with pytest.raises(ApiException):
        await kube.get_optional("kueue.x-k8s.io", "v1beta2", "workloads", "ns", GROUP)


def test_an_admitted_gang_whose_pods_vanished_is_queued_again_as_a_new_attempt() -> None:
    # Kueue evicted and released the pods before any pass saw its condition: only their absence is left.
    r = CTRL.decide(job(RUNNING, runPolicy={"backoffLimit": 0}, **ddp()), Observed(True, (pod(1, 0),), True), NOW)
    assert r.fields["attempts"] == 2 and r.fields["preemptions"] == 1 and r.fields["startTime"] is None
    assert conds(r)["Ready"] == ("False", "Evicted") and "j-a1-w1" in r.events[0].message
    assert deletes(r) == ["Pod/j-a1-w0"] and creates(r) == ["Service/j", "Pod/j-a2-w0", "Pod/j-a2-w1"]
    # Not while one is still terminating (its condition may yet be read), and not before an admission (startTime
    # unset: launched, or resumed after a suspend): then the missing pod is recreated. (Without Kueue: see
    # test_a_gang_that_lost_a_worker_restarts_whole.)
    terminating = pod(1, 1)
    terminating["metadata"]["deletionTimestamp"] = "2026-03-01T11:59:00Z"
    r = CTRL.decide(job(RUNNING, **ddp()), Observed(True, (pod(1, 0), terminating), True), NOW)
    assert "attempts" not in r.fields and not creates(r)
    r = CTRL.decide(job({"attempts": 1, "phase": "Pending"}, **ddp()), Observed(True, (pod(1, 0),), True), NOW)
    assert "attempts" not in r.fields and creates(r) == ["Pod/j-a1-w1"]
    # Nor when the attempt's launch never reached status (one of its pods failed to be created, so the pass that
    # launched it wrote nothing): the missing pod is created.
    r = CTRL.decide(job(RUNNING, **ddp()), Observed(True, (pod(2, 0),), True), NOW)
    assert "attempts" not in r.fields and creates(r) == ["Pod/j-a2-w1"]


def test_a_gang_that_lost_a_worker_restarts_whole() -> None:
    """Regression (bench/chaos.py: a 2-worker gang whose rank 0 was deleted mid-run stayed Running for good: rank 0
    created again alone waited for a peer that was training without it). Without Kueue, a launched gang missing a
    worker restarts whole as the next attempt, one of its retries; a finished worker's pod lost counts too."""
    for survivor in (pod(1, 1), pod(1, 1, "Succeeded", exit_code=0)):
        r = CTRL.decide(job(RUNNING, labels={}, **ddp()), Observed(True, (survivor,), True), NOW)
        assert r.fields["attempts"] == 2 and "preemptions" not in r.fields
        assert conds(r)["Ready"] == ("False", "Launching") and "j-a1-w0" in r.events[0].message
        assert deletes(r) == ["Pod/j-a1-w1"] and creates(r) == ["Service/j", "Pod/j-a2-w0", "Pod/j-a2-w1"]
    # Retries spent: Failed, the survivor stopped.
    spent = job({**RUNNING, "attempts": 1}, labels={}, runPolicy={"backoffLimit": 0}, **ddp())
    r = CTRL.decide(spent, Observed(True, (pod(1, 1),), True), NOW)
    assert conds(r)["Ready"] == ("False", "BackoffLimitExceeded") and deletes(r) == ["Pod/j-a1-w1"]
    # Not while the lost one is still terminating, nor before the attempt's launch reached status.
    terminating = pod(1, 0)
    terminating["metadata"]["deletionTimestamp"] = "2026-03-01T11:59:00Z"
    r = CTRL.decide(job(RUNNING, labels={}, **ddp()), Observed(True, (terminating, pod(1, 1)), True), NOW)
    assert "attempts" not in r.fields and not creates(r)
    r = CTRL.decide(job(RUNNING, labels={}, **ddp()), Observed(True, (pod(2, 1),), True), NOW)
    assert "attempts" not in r.fields and creates(r) == ["Pod/j-a2-w0"]
    # One worker: created again in its attempt.
    r = CTRL.decide(job(RUNNING, labels={}), Observed(True, (), True), NOW)
    assert "attempts" not in r.fields and creates(r) == ["Pod/j-a1-w0"]


def test_the_preemption_count_survives_a_status_write_lost_after_the_relaunch() -> None:
    r = CTRL.decide(job(RUNNING, **ddp()), Observed(True, (evicted(1, 0), evicted(1, 1)), True), NOW)
    pods = [a.manifest for a in r.actions if isinstance(a, Create) and a.manifest["kind"] == "Pod"]
    assert {p["metadata"]["annotations"][m.ANNOTATION_PREEMPTIONS] for p in pods} == {"1"}
    # The operator was killed before the status patch: status still says attempt 1, no preemption.
    for p in pods:
        p["status"] = {"phase": "Running"}
    lost = job(RUNNING, runPolicy={"backoffLimit": 1}, **ddp())
    r = CTRL.decide(lost, Observed(True, tuple(pods), True), NOW)
    assert r.fields["preemptions"] == 1  # written back from the pods
    pods[0]["status"] = {"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"exitCode": 1}}}]}
    r = CTRL.decide(lost, Observed(True, tuple(pods), True), NOW)
    assert r.fields["attempts"] == 3 and conds(r)["Reconciling"][1] == "Launching"  # its one retry, not a failure
    assert {a.manifest["metadata"]["annotations"][m.ANNOTATION_PREEMPTIONS] for a in r.actions
            if isinstance(a, Create) and a.manifest["kind"] == "Pod"} == {"1"}  # fmt: skip


async def test_two_jobs_of_one_model_finishing_together_register_two_versions() -> None:
    """Regression (bench/chaos.py: three Succeeded jobs pointed at one ModelVersion, 3 versions lost). Jobs of one
    model that finish together read the same next number from a cache that has not seen the other's version yet:
    the version is created as a claim, so the second job's pass ends in a Conflict instead of adopting the first
    job's version, and its retry, reading the first one's version, takes the next number."""
    from slipway.controllers.base import act
    from slipway.kube import Conflict, ObjectRef

    class Registry:
        """The API as far as registering goes: a create of a taken name answers False (HTTP 409)."""

        def __init__(self) -> None:
            self.versions: list[dict[str, Any]] = []

        async def create(self, manifest: dict[str, Any]) -> bool:
            if any(v["metadata"]["name"] == manifest["metadata"]["name"] for v in self.versions):
                return False
            self.versions.append(manifest)
            return True

        async def list_custom(self, plural: str, namespace: str, fresh: bool = False) -> list[dict[str, Any]]:
            assert fresh  # a version number is never read from the watch cache
            return self.versions

        async def delete(self, *args: Any) -> None:  # the finished gang's pods
            pass

    class Manifests(FakeS3):
        async def read_json(self, access: Any, uri: str) -> Any:
            return MANIFEST

    ctrl, api = TrainingJobController(CTRL.settings), Registry()
    seen = clients(api, Manifests())
    done = (pod(1, 0, "Succeeded", exit_code=0),)
    a, b = job(RUNNING), job(RUNNING)  # two jobs (uids) of model "m"
    b.metadata["uid"] = "another-uid"
    seen_a = await ctrl._observe_outcome(a, seen, Observed(True, done), {})
    seen_b = await ctrl._observe_outcome(b, seen, Observed(True, done), {})
    assert seen_a.next_version == seen_b.next_version == 1  # neither has registered yet
    ref = ObjectRef.of({"apiVersion": "slipway.dev/v1alpha1", "kind": "TrainingJob", "metadata": a.metadata})
    first = ctrl.decide(a, seen_a, NOW)
    await act(TrainingJob, ref, first.actions, seen)
    with pytest.raises(Conflict):
        await act(TrainingJob, ref, ctrl.decide(b, seen_b, NOW).actions, seen)
    again = await ctrl._observe_outcome(b, seen, Observed(True, done), {})
    second = ctrl.decide(b, again, NOW)
    await act(TrainingJob, ref, second.actions, seen)
    assert [first.fields["modelVersionRef"], second.fields["modelVersionRef"]] == [{"name": "m-v1"}, {"name": "m-v2"}]
    assert [v["metadata"]["labels"][m.LABEL_JOB_UID] for v in api.versions] == [UID, "another-uid"]


async def test_the_next_version_skips_a_name_another_model_has_taken() -> None:
    """Model "m" at v1, and a version of another model that happens to be named m-v2: the next is m-v3, or the
    claim would conflict at every retry."""
    taken = [{"metadata": {"name": "m-v1", "labels": {}}, "spec": {"modelName": "m", "version": 1}},
             {"metadata": {"name": "m-v2", "labels": {}}, "spec": {"modelName": "m-v", "version": 2}}]  # fmt: skip

    class Api:
        async def list_custom(self, plural: str, namespace: str, fresh: bool = False) -> list[dict[str, Any]]:
            assert fresh  # a version number is never read from the watch cache
            return taken

    class Manifests(FakeS3):
        async def read_json(self, access: Any, uri: str) -> Any:
            return MANIFEST

    ctrl = TrainingJobController(CTRL.settings)
    seen = await ctrl._observe_outcome(job(RUNNING), clients(Api(), Manifests()), Observed(True, ()), {})
    assert seen.next_version == 3
