"""TrainingJobs under real Kueue v0.17.0 (its manager, CRDs and webhooks on the local control plane):
gangs admitted whole against a GPU quota, queued jobs shown as Queued, preemption by priority, and
jobs without a queue name left alone. Trainer pods are real processes (the local executor)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from slipway_dev.kubectl import Kubectl

from tests.conftest import REPO, Operator, _local_cluster, _namespace, _operators, wait_for

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples"
TRAIN_TIMEOUT = 300.0
GROUP = "kueue.x-k8s.io/pod-group-name"
GATE = "kueue.x-k8s.io/admission"


@pytest.fixture(scope="module")
def kueue_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from _local_cluster(tmp_path_factory, "kueue", "Kueue", 300.0, kueue=True)


@pytest.fixture
def queued(kueue_cluster: Any, s3_server: Any, s3: Any, tmp_path: Path) -> Iterator[Kubectl]:
    """A namespace with the example's queues (a 2-GPU ClusterQueue, LocalQueue gpu-queue) and the
    S3 credentials, an operator watching it."""
    for kubectl in _namespace(kueue_cluster):
        kubectl.apply(EXAMPLES / "kueue" / "queues.yaml")
        kubectl.apply(EXAMPLES / "s3-credentials.yaml")
        operators: Iterator[Callable[..., Operator]] = _operators(kueue_cluster, s3_server, tmp_path)
        next(operators)()
        yield kubectl
        # Shown by pytest when the test failed: where every job, pod and Workload ended up, and why.
        print(kubectl("get", "trainingjobs,pods,workloads", "-o", "wide", check=False).stdout)
        print(kubectl("get", "events", "--sort-by=.lastTimestamp", check=False).stdout[-6000:])
        for _ in operators:  # stops the operator
            pass


def gpu_job(name: str, epochs: int, priority: str | None = None, queue: str | None = "gpu-queue") -> str:
    """The GPU DDP example (2 workers x 1 GPU), sized so a run takes long enough to be seen waiting."""
    doc = yaml.safe_load((EXAMPLES / "trainingjob-pytorch-ddp-gpu.yaml").read_text())
    labels = doc["metadata"]["labels"]
    doc["metadata"]["name"] = name
    if queue is None:
        labels.pop("kueue.x-k8s.io/queue-name")
    if priority:
        labels["kueue.x-k8s.io/priority-class"] = priority
    doc["spec"]["hyperparameters"] = {"epochs": epochs, "hidden_layers": [32], "batch_size": 16}
    doc["spec"]["resources"].update(cpu="1", memory="1Gi")
    doc["spec"]["runPolicy"] = {"backoffLimit": 0}
    doc["spec"].pop("gates")
    return yaml.safe_dump(doc)


def status(kubectl: Kubectl, name: str) -> dict[str, Any]:
    return (kubectl.get("trainingjob", name) or {}).get("status") or {}


def ready(kubectl: Kubectl, name: str) -> dict[str, Any]:
    return kubectl.condition("trainingjob", name, "Ready")


def pods(kubectl: Kubectl, name: str) -> list[dict[str, Any]]:
    return list(kubectl.json("pods", "-l", f"slipway.dev/training-job={name}")["items"])


def running(kubectl: Kubectl, name: str, attempt: int = 1) -> Callable[[], bool]:
    def check() -> bool:
        mine = [p for p in pods(kubectl, name) if p["metadata"]["labels"].get("slipway.dev/attempt") == str(attempt)]
        return len(mine) == 2 and all(p["status"].get("phase") == "Running" for p in mine)

    return check


def finished(kubectl: Kubectl, name: str) -> dict[str, Any]:
    st = wait_for(f"{name} finished", lambda: status(kubectl, name).get("phase") in ("Succeeded", "Failed")
                  and status(kubectl, name), timeout=TRAIN_TIMEOUT)  # fmt: skip
    assert st["phase"] == "Succeeded", (st, ready(kubectl, name))
    return st


def test_two_gangs_on_a_two_gpu_quota_one_runs_the_other_waits_queued_then_runs(queued: Kubectl) -> None:
    queued.apply(gpu_job("first", epochs=40))
    wait_for("the first gang admitted and running", running(queued, "first"), timeout=120)
    groups = {p["metadata"]["labels"][GROUP] for p in pods(queued, "first")}
    assert len(groups) == 1  # one pod group per attempt: Kueue admits both workers or neither
    group = groups.pop()
    assert queued.get("workloads.kueue.x-k8s.io", group)["status"]["admission"]["clusterQueue"] == "gpu-cluster-queue"

    queued.apply(gpu_job("second", epochs=2))
    wait_for("the second job Queued", lambda: ready(queued, "second").get("reason") == "Queued", timeout=60)
    waiting = pods(queued, "second")
    workload = waiting[0]["metadata"]["labels"][GROUP]  # Kueue names the pod group's Workload after the group

    def kueue_relayed() -> bool:
        """Why Kueue does not admit it (its Workload's QuotaReserved message) is in the job's Ready message."""
        conds = (queued.get("workloads.kueue.x-k8s.io", workload) or {}).get("status", {}).get("conditions", [])
        reserved = next((c for c in conds if c["type"] == "QuotaReserved"), {})
        said = reserved.get("message") if reserved.get("status") == "False" else None
        return bool(said) and said in ready(queued, "second").get("message", "")

    wait_for("Kueue's reason in the Queued condition", kueue_relayed, timeout=60)
    assert len(waiting) == 2 and status(queued, "second")["phase"] == "Pending"
    for pod in waiting:  # gated by Kueue: not bound to a node, not Unschedulable
        assert not pod["spec"].get("nodeName"), pod["metadata"]["name"]
        assert GATE in [g["name"] for g in pod["spec"].get("schedulingGates") or []]
    assert status(queued, "first")["phase"] == "Running"  # the first still holds the quota

    finished(queued, "first")
    second = finished(queued, "second")  # no deadlock: admitted once the quota was released
    assert second["attempts"] == 1


def test_a_higher_priority_job_preempts_a_running_gang_which_resumes_as_a_new_attempt(queued: Kubectl) -> None:
    queued.apply(gpu_job("low", epochs=60, priority="training-low"))
    wait_for("the low-priority gang running", running(queued, "low"), timeout=120)
    queued.apply(gpu_job("high", epochs=2, priority="training-high"))

    def preempted() -> dict[str, Any] | None:
        st = status(queued, "low")
        return st if st.get("preemptions", 0) >= 1 and st.get("attempts") == 2 else None

    wait_for("the low-priority gang preempted and relaunched as attempt 2", preempted, timeout=120)
    # Preempted (Kueue's message read from the pods' TerminationTarget condition) when a pass saw the pods
    # being evicted; Evicted when Kueue had already released them (the local kubelet stops a trainer fast).
    events = queued.json("events", "--field-selector", "involvedObject.name=low")["items"]
    restarts = [(e["reason"], e["message"]) for e in events if e["reason"] in ("Preempted", "Evicted")]
    assert len(restarts) == 1 and "queueing all workers again as attempt 2" in restarts[0][1], restarts
    reason, message = restarts[0]
    assert (reason == "Preempted" and message.startswith("Kueue evicted pod group ")) or (
        reason == "Evicted" and "are gone after Kueue admitted it" in message), restarts  # fmt: skip
    kueue_said = queued.json("events", "--field-selector", "involvedObject.kind=Workload")["items"]
    assert any(e["reason"] == "Preempted" and e["involvedObject"]["name"].startswith("low-") for e in kueue_said)
    finished(queued, "high")
    low = finished(queued, "low")  # backoffLimit 0: the preemption did not use up a retry
    assert low["attempts"] == 2 and low["preemptions"] == 1
    assert {p["metadata"]["labels"]["slipway.dev/attempt"] for p in pods(queued, "low")} == {"2"}


def test_a_job_without_a_queue_name_is_untouched_by_kueue(queued: Kubectl) -> None:
    queued.apply(gpu_job("free", epochs=2, queue=None))
    wait_for("worker pods", lambda: len(pods(queued, "free")) == 2)
    for pod in pods(queued, "free"):
        labels = pod["metadata"]["labels"]
        assert GROUP not in labels and "kueue.x-k8s.io/managed" not in labels
        assert not pod["spec"].get("schedulingGates") and "kueue.x-k8s.io/managed" not in (
            pod["metadata"].get("finalizers") or []
        )
    finished(queued, "free")
    assert queued.json("workloads.kueue.x-k8s.io")["items"] == []


def test_suspend_with_a_queue_name_removes_the_gang_and_resume_runs_it(queued: Kubectl) -> None:
    doc = yaml.safe_load(gpu_job("paused", epochs=2))
    doc["spec"]["runPolicy"]["suspend"] = True
    queued.apply(yaml.safe_dump(doc))
    wait_for("Suspended", lambda: status(queued, "paused").get("phase") == "Suspended")
    assert pods(queued, "paused") == []
    queued("patch", "trainingjob", "paused", "--type=merge", "-p", '{"spec":{"runPolicy":{"suspend":false}}}')
    finished(queued, "paused")
