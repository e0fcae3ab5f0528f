"""TrainingJob and ModelVersion on the local control plane: real trainer processes (through the local
executor), a real S3 server, the real scheduler deciding where GPU pods go."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from typing import Any

import pytest
import yaml
from slipway_dev.kubectl import Kubectl

from tests.conftest import REPO, Operator, wait_for

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples"
TRAIN_TIMEOUT = 240.0


@pytest.fixture
def training(kubectl: Kubectl, operator: Operator, s3: Any) -> Kubectl:
    kubectl.apply(EXAMPLES / "s3-credentials.yaml")
    return kubectl


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def job(example: str, name: str | None = None, **spec: Any) -> str:
    doc = yaml.safe_load((EXAMPLES / example).read_text())
    if name:
        doc["metadata"]["name"] = name
    doc["spec"] = merge(doc["spec"], spec)
    return yaml.safe_dump(doc)


def status(kubectl: Kubectl, kind: str, name: str) -> dict[str, Any]:
    return (kubectl.get(kind, name) or {}).get("status") or {}


def cond(kubectl: Kubectl, kind: str, name: str, type_: str) -> tuple[str, str, str]:
    c = kubectl.condition(kind, name, type_)
    return c.get("status", ""), c.get("reason", ""), c.get("message", "")


def phase_is(kubectl: Kubectl, name: str, *phases: str) -> Any:
    return lambda: status(kubectl, "trainingjob", name).get("phase") in phases and status(kubectl, "trainingjob", name)


def pods_of(kubectl: Kubectl, name: str) -> list[dict[str, Any]]:
    return list(kubectl.json("pods", "-l", f"slipway.dev/training-job={name}")["items"])


def test_sklearn_example_ends_in_a_verified_model_version_with_lineage(training: Kubectl) -> None:
    training.apply(EXAMPLES / "trainingjob-sklearn.yaml")
    st = wait_for("Succeeded", phase_is(training, "cancer-rf-1", "Succeeded", "Failed"), timeout=TRAIN_TIMEOUT)
    assert st["phase"] == "Succeeded", st
    assert cond(training, "trainingjob", "cancer-rf-1", "Ready")[:2] == ("True", "Succeeded")
    assert st["metrics"]["accuracy"] > 0.9 and st["attempts"] == 1 and len(st["artifact"]["sha256"]) == 64
    name = st["modelVersionRef"]["name"]
    assert name.startswith("cancer-rf-v")

    wait_for("Verified", lambda: cond(training, "modelversion", name, "Ready")[0] == "True", timeout=60)
    mv = training.get("modelversion", name) or {}
    assert cond(training, "modelversion", name, "Verified")[:2] == ("True", "ChecksumMatches")
    assert cond(training, "modelversion", name, "GatesPassed")[0] == "True"
    lineage = mv["spec"]["lineage"]
    uid = (training.get("trainingjob", "cancer-rf-1") or {})["metadata"]["uid"]
    assert lineage["trainingJobRef"] == {"name": "cancer-rf-1", "uid": uid}
    assert lineage["dataset"]["uri"] == "sklearn://breast_cancer" and len(lineage["dataset"]["sha256"]) == 64
    assert lineage["hyperparameters"] == {"n_estimators": 100, "max_depth": 8}
    assert lineage["seed"] == 42 and lineage["image"].endswith("/trainer:0.1.0")
    assert mv["spec"]["artifact"]["sha256"] == st["artifact"]["sha256"]
    assert len(mv["spec"]["signature"]["inputs"]) == 30 and mv["spec"]["referenceData"]["uri"].endswith(".parquet")
    assert mv["spec"]["classes"] == [0, 1]  # int-or-string labels, as the manifest has them
    assert not mv["metadata"].get("ownerReferences")  # it outlives the job
    assert mv["status"]["headline"].startswith("accuracy=")


def test_ddp_gpu_pods_carry_gpu_scheduling_torchrun_env_and_secret_refs(training: Kubectl) -> None:
    spec = {"hyperparameters": {"epochs": 2, "hidden_layers": [32]}}
    training.apply(job("trainingjob-pytorch-ddp-gpu.yaml", **spec))
    pods = wait_for("two worker pods", lambda: len(pods_of(training, "digits-mlp-ddp")) == 2
                    and pods_of(training, "digits-mlp-ddp"))  # fmt: skip
    svc = json.loads(training("get", "service", "digits-mlp-ddp", "-o", "json").stdout)
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    for p in pods:
        c = p["spec"]["containers"][0]
        env = {e["name"]: e for e in c["env"]}
        assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert p["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
        assert any(t.get("key") == "nvidia.com/gpu" for t in p["spec"]["tolerations"])
        assert env["MASTER_ADDR"]["value"] == "digits-mlp-ddp-w0.digits-mlp-ddp"
        assert env["WORLD_SIZE"]["value"] == "2" and env["NODE_RANK"]["value"] in ("0", "1")
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "s3-credentials"
        assert "value" not in env["AWS_SECRET_ACCESS_KEY"]
        assert p["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
        assert c["securityContext"]["runAsNonRoot"] is True

    def nodes() -> set[str] | None:
        names = {p["spec"].get("nodeName") for p in pods_of(training, "digits-mlp-ddp")}
        return None if None in names else names

    assert all(n.startswith("gpu-") for n in wait_for("scheduled on GPU nodes", nodes))
    st = wait_for("DDP training", phase_is(training, "digits-mlp-ddp", "Succeeded", "Failed"), timeout=TRAIN_TIMEOUT)
    assert st["phase"] == "Succeeded", (st, cond(training, "trainingjob", "digits-mlp-ddp", "Ready"))


def test_one_failed_worker_restarts_the_gang_until_the_backoff_limit(training: Kubectl) -> None:
    # Rank 0 checks the output bucket first and fails fast; rank 1 is still waiting for it when the
    # operator sees the failure and replaces the whole gang.
    spec = {"output": {"endpoint": "http://127.0.0.1:9"}, "runPolicy": {"backoffLimit": 1}}
    training.apply(job("trainingjob-pytorch-ddp-gpu.yaml", "unreachable-s3", **spec))
    st = wait_for("Failed", phase_is(training, "unreachable-s3", "Failed"), timeout=TRAIN_TIMEOUT)
    assert st["attempts"] == 2
    assert cond(training, "trainingjob", "unreachable-s3", "Failed")[:2] == ("True", "BackoffLimitExceeded")
    events = training.json("events", "--field-selector", "involvedObject.name=unreachable-s3")["items"]
    restarts = [e["message"] for e in events if e["reason"] == "GangRestart"]
    assert len(restarts) == 1 and "restarting all workers" in restarts[0]
    names = {p["metadata"]["name"] for p in pods_of(training, "unreachable-s3")}
    assert "unreachable-s3-a2-w0" in names and not any("-a1-" in n for n in names)


def test_ttl_removes_the_finished_job_but_not_its_model_version(training: Kubectl) -> None:
    training.apply(job("trainingjob-sklearn.yaml", "short-lived", runPolicy={"ttlSecondsAfterFinished": 2}))

    # Its Succeeded phase lasts the TTL (2 s), which a poll of two kubectl calls can miss on a busy machine: what
    # shows it finished is what it leaves behind, the ModelVersion it registered and its Succeeded Event.
    def versions() -> list[dict[str, Any]]:
        return list(training.json("modelversions", "-l", "slipway.dev/training-job=short-lived")["items"])

    wait_for("its ModelVersion", versions, timeout=TRAIN_TIMEOUT)
    wait_for("job deleted", lambda: training.get("trainingjob", "short-lived") is None)
    wait_for("pods collected", lambda: pods_of(training, "short-lived") == [])
    selector = "involvedObject.kind=TrainingJob,involvedObject.name=short-lived,reason=Succeeded"
    assert training.json("events", "--field-selector", selector)["items"]
    assert len(versions()) == 1


def test_invalid_input_fails_at_once(training: Kubectl) -> None:
    training.apply(job("trainingjob-sklearn.yaml", "bad-target", dataset={"target": "no_such_column"}))
    st = wait_for("Failed", phase_is(training, "bad-target", "Failed"), timeout=TRAIN_TIMEOUT)
    failed = cond(training, "trainingjob", "bad-target", "Failed")
    assert failed[:2] == ("True", "InvalidInput") and "no_such_column" in failed[2]
    assert st["attempts"] == 1


def test_deadline_exceeded(training: Kubectl) -> None:
    spec = {"hyperparameters": {"epochs": 100000}, "runPolicy": {"activeDeadlineSeconds": 3}}
    text = job("trainingjob-pytorch-ddp-gpu.yaml", "slow", distributed={"workers": 1}, resources={"gpus": 0}, **spec)
    doc = yaml.safe_load(text)
    doc["spec"]["resources"].pop("gpuProduct")
    training.apply(yaml.safe_dump(doc))
    wait_for("Failed", phase_is(training, "slow", "Failed"), timeout=60)
    assert cond(training, "trainingjob", "slow", "Failed")[:2] == ("True", "DeadlineExceeded")
    wait_for("pods gone", lambda: not [p for p in pods_of(training, "slow") if p["status"].get("phase") == "Running"])


def test_unschedulable_gpu_request_shows_as_a_condition(training: Kubectl) -> None:
    training.apply(job("trainingjob-pytorch-ddp-gpu.yaml", "too-big", resources={"gpus": 8}))
    wait_for("Unschedulable", lambda: cond(training, "trainingjob", "too-big", "Ready")[1] == "Unschedulable")
    assert "nvidia.com/gpu" in cond(training, "trainingjob", "too-big", "Ready")[2]
    assert cond(training, "trainingjob", "too-big", "Reconciling")[0] == "True"


def test_an_image_the_cluster_cannot_pull_shows_as_a_condition(training: Kubectl) -> None:
    training.apply(job("trainingjob-sklearn.yaml", "no-image", image="registry.invalid/other:1"))
    wait_for("ImagePullBackOff", lambda: cond(training, "trainingjob", "no-image", "Ready")[1]
             in ("ErrImagePull", "ImagePullBackOff"))  # fmt: skip


def test_suspend_and_resume(training: Kubectl) -> None:
    training.apply(job("trainingjob-sklearn.yaml", "paused", runPolicy={"suspend": True}))
    wait_for("Suspended", phase_is(training, "paused", "Suspended"))
    assert pods_of(training, "paused") == []
    training("patch", "trainingjob", "paused", "--type=merge", "-p", '{"spec":{"runPolicy":{"suspend":false}}}')
    st = wait_for("Succeeded", phase_is(training, "paused", "Succeeded", "Failed"), timeout=TRAIN_TIMEOUT)
    assert st["phase"] == "Succeeded"


def test_a_failing_gate_keeps_the_version_from_gates_passed(training: Kubectl) -> None:
    training.apply(job("trainingjob-sklearn.yaml", "strict", gates=[{"metric": "accuracy", "min": 0.9999}]))
    st = wait_for("Succeeded", phase_is(training, "strict", "Succeeded", "Failed"), timeout=TRAIN_TIMEOUT)
    name = st["modelVersionRef"]["name"]
    wait_for("GatesFailed", lambda: cond(training, "modelversion", name, "GatesPassed")[1] == "GatesFailed")
    assert cond(training, "modelversion", name, "Ready")[0] == "False"
    assert "below the minimum 0.9999" in cond(training, "modelversion", name, "GatesPassed")[2]


def registered(kubectl: Kubectl, s3: Any, payload: bytes) -> str:
    """A hand-registered ModelVersion over an object we put in S3 ourselves."""
    key = f"hand/{uuid.uuid4().hex}/model.joblib"
    s3.put_object(Bucket="models", Key=key, Body=payload)
    doc = yaml.safe_load((EXAMPLES / "modelversion.yaml").read_text())
    doc["spec"]["artifact"].update(uri=f"s3://models/{key}", sha256=hashlib.sha256(payload).hexdigest())
    kubectl.apply(yaml.safe_dump(doc))
    wait_for("Verified", lambda: cond(kubectl, "modelversion", "cancer-rf-v1", "Verified")[0] == "True")
    return key


def test_tampered_and_missing_artifacts_are_not_verified(kubectl: Kubectl, operator_factory: Any, s3: Any) -> None:
    """A changed object is noticed at the next verification (SLIPWAY_VERIFY_SECONDS, shortened here from its
    3600 s default): its new ETag makes the operator read it again and compare the sha256."""
    kubectl.apply(EXAMPLES / "s3-credentials.yaml")
    operator_factory(SLIPWAY_VERIFY_SECONDS="2")
    training = kubectl
    key = registered(training, s3, b"original model bytes")
    assert ((training.get("modelversion", "cancer-rf-v1") or {}).get("status") or {}).get("verifiedAt")
    s3.put_object(Bucket="models", Key=key, Body=b"something else")
    wait_for("ChecksumMismatch", lambda: cond(training, "modelversion", "cancer-rf-v1", "Verified")[1]
             == "ChecksumMismatch")  # fmt: skip
    assert cond(training, "modelversion", "cancer-rf-v1", "Stalled")[0] == "True"
    s3.delete_object(Bucket="models", Key=key)
    wait_for("ArtifactNotFound", lambda: cond(training, "modelversion", "cancer-rf-v1", "Verified")[1]
             == "ArtifactNotFound")  # fmt: skip


def test_deleting_a_served_model_version_is_blocked(training: Kubectl, s3: Any) -> None:
    registered(training, s3, b"served model")
    training.apply(EXAMPLES / "rollout.yaml")
    wait_for("finalizer", lambda: "slipway.dev/in-use-protection"
             in ((training.get("modelversion", "cancer-rf-v1") or {})["metadata"].get("finalizers") or []))  # fmt: skip
    training("delete", "modelversion", "cancer-rf-v1", "--wait=false")
    wait_for("DeletionBlocked", lambda: cond(training, "modelversion", "cancer-rf-v1", "Ready")[1] == "DeletionBlocked")
    assert "cancer-rf" in cond(training, "modelversion", "cancer-rf-v1", "Ready")[2]
    assert training.get("modelversion", "cancer-rf-v1") is not None
    training("delete", "rollout", "cancer-rf")
    wait_for("ModelVersion gone", lambda: training.get("modelversion", "cancer-rf-v1") is None)
