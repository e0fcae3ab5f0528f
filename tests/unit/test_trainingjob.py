"""TrainingJob decide(): the gang state machine, table-tested with a fixed clock and hand-made pods."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slipway.api import TrainingJob
from slipway.config import Settings
from slipway.controllers import trainingjob_manifests as m
from slipway.controllers.base import Create, Delete, Result
from slipway.controllers.trainingjob import Observed, TrainingJobController
from slipway.storage import S3

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UID = "0123456789abcdef"
CTRL = TrainingJobController(Settings(s3_endpoint="http://s3.local:9000"), S3())


def job(status: dict[str, Any] | None = None, **spec: Any) -> TrainingJob:
    base = {
        "modelName": "m",
        "framework": "sklearn",
        "algorithm": "sklearn.svm.SVC",
        "dataset": {"uri": "sklearn://iris"},
        "output": {"uri": "s3://bucket/m", "credentialsSecretRef": {"name": "s3"}},
        "gates": [{"metric": "accuracy", "min": 0.9}],
    }
    meta = {"name": "j", "namespace": "ns", "uid": UID, "labels": {m.KUEUE_QUEUE: "q"}}
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
    assert r.fields == {"phase": "Pending", "attempts": 1, "startTime": "2026-03-01T12:00:00Z"}
    assert conds(r)["Reconciling"] == ("True", "Launching") and [e.reason for e in r.events] == ["Launched"]


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
