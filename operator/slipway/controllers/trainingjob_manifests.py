"""Pure builders for what a TrainingJob creates: worker pods, the headless Service, the ModelVersion.

The contract with the trainer image is docs/trainer-contract.md.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from slipway import contract
from slipway.api.common import API_VERSION
from slipway.api.modelversion import model_version_name
from slipway.api.trainingjob import TrainingJob
from slipway.config import Settings
from slipway.sharding import shard_labels, shard_of
from slipway.storage import join_uri

LABEL_JOB, LABEL_JOB_UID = contract.TRAINING_JOB, contract.TRAINING_JOB_UID
LABEL_ATTEMPT, LABEL_RANK, LABEL_MODEL = contract.ATTEMPT, contract.RANK, contract.MODEL
# How many Kueue evictions came before the pod's attempt: read back like the attempt label after a restart.
ANNOTATION_PREEMPTIONS = contract.PREEMPTIONS
# Kueue's plain-Pod integration (v0.17): it manages only pods with a queue name, admits a pod group whole
# through one Workload named after the group (pods.py reads the gate that holds them until then).
KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY = "kueue.x-k8s.io/priority-class"
KUEUE_GROUP = "kueue.x-k8s.io/pod-group-name"
KUEUE_TOTAL = "kueue.x-k8s.io/pod-group-total-count"
KUEUE_RETRIABLE = "kueue.x-k8s.io/retriable-in-group"
KUEUE_API_GROUP, KUEUE_VERSION, WORKLOAD_PLURAL = "kueue.x-k8s.io", "v1beta2", "workloads"
LABEL_VALUE_MAX = 63
GPU = "nvidia.com/gpu"
GPU_PRODUCT = "nvidia.com/gpu.product"
MASTER_PORT = 29500
NON_ROOT = 65532


def workers(job: TrainingJob) -> int:
    return job.spec.distributed.workers if job.spec.distributed else 1


def nproc(job: TrainingJob) -> int:
    return job.spec.distributed.nproc_per_node if job.spec.distributed else 1


def distributed(job: TrainingJob) -> bool:
    return workers(job) > 1 or nproc(job) > 1


def output_prefix(job: TrainingJob) -> str:
    """Per job object, so a recreated job of the same name never overwrites an earlier one's artifacts."""
    meta = job.metadata
    return join_uri(job.spec.output.uri, f"{meta['name']}-{meta.get('uid', '')[:8]}")


def pod_name(job: TrainingJob, attempt: int, rank: int) -> str:
    return f"{job.metadata['name']}-a{attempt}-w{rank}"


def queue_name(job: TrainingJob) -> str:
    """The Kueue LocalQueue the job asks for ('' without one: Kueue leaves its pods alone)."""
    return str((job.metadata.get("labels") or {}).get(KUEUE_QUEUE) or "")


def pod_group(job: TrainingJob, attempt: int) -> str:
    """The Kueue pod group (and so the Workload's name) of one attempt: new per attempt, so a restarted gang is
    queued afresh rather than rejoining a Workload Kueue evicted or that counts the old pods; with part of the
    uid, so a job recreated under the same name never joins the Workload its predecessor's pods still hold.
    A label value, so at most 63 characters: a long job name is cut and a hash of it keeps it apart."""
    name: str = job.metadata["name"]
    uid: str = job.metadata.get("uid", "")[:8]
    suffix = f"-{uid}-a{attempt}" if uid else f"-a{attempt}"
    if len(name) + len(suffix) > LABEL_VALUE_MAX:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = name[: LABEL_VALUE_MAX - len(suffix) - len(digest) - 1].rstrip("-.") + "-" + digest
    return name + suffix


def owner_reference(obj: TrainingJob) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": obj.kind,
        "name": obj.metadata["name"],
        "uid": obj.metadata.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(job: TrainingJob) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "slipway-trainer",
        **contract.MANAGED,
        contract.COMPONENT: "trainer",
        LABEL_JOB: job.metadata["name"],
    }
    # Kueue reads both from each pod (a group's pods must agree); the job's labels are where a user sets them.
    for key in (KUEUE_QUEUE, KUEUE_PRIORITY):
        if value := (job.metadata.get("labels") or {}).get(key):
            out[key] = value
    return out


def kueue_group(job: TrainingJob, attempt: int) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations) that make the attempt's workers one Kueue pod group, admitted all or none: a gang
    admitted in part would hold its quota while torchrun waits for the rest. Nothing without a queue name.

    Not retriable in the group: by default Kueue keeps a group whose pods failed or were evicted admitted (or
    re-admits it), holding its quota, until replacement pods join it. The operator retries a gang as a new
    attempt, in a new group, so the old group must finish as soon as none of its pods runs, releasing the
    quota (Kueue v0.17.0 pkg/controller/jobs/pod/pod_controller.go:342-386). Without it, a preempted job's old
    group was re-admitted and held the quota its own next attempt waited for."""
    if not queue_name(job):
        return {}, {}
    return {KUEUE_GROUP: pod_group(job, attempt)}, {KUEUE_TOTAL: str(workers(job)), KUEUE_RETRIABLE: "false"}


def trainer_config(job: TrainingJob) -> dict[str, Any]:
    spec = job.spec
    return {
        "modelName": spec.model_name,
        "framework": spec.framework,
        "algorithm": spec.algorithm,
        "hyperparameters": spec.hyperparameters,
        "dataset": spec.dataset.wire(),
        "seed": spec.seed,
        "output": output_prefix(job),
    }


def s3_env(job: TrainingJob, settings: Settings) -> list[dict[str, Any]]:
    out = job.spec.output
    env: list[dict[str, Any]] = [{"name": "AWS_DEFAULT_REGION", "value": out.region or settings.s3_region}]
    if out.endpoint or settings.s3_endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": out.endpoint or settings.s3_endpoint})
    if out.credentials_secret_ref:
        # By reference only: the kubelet resolves it, the values never pass through the operator.
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            ref = {"name": out.credentials_secret_ref.name, "key": key}
            env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    return env


def torchrun_env(job: TrainingJob, rank: int) -> list[dict[str, Any]]:
    name = job.metadata["name"]
    return [
        {"name": "MASTER_ADDR", "value": f"{name}-w0.{name}"},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
        {"name": "WORLD_SIZE", "value": str(workers(job))},
        {"name": "NODE_RANK", "value": str(rank)},
        {"name": "NPROC_PER_NODE", "value": str(nproc(job))},
    ]


def command(job: TrainingJob) -> list[str]:
    if not distributed(job):
        return ["python", "-m", "slipway_trainer"]
    return [
        "torchrun",
        "--nnodes=$(WORLD_SIZE)",
        "--nproc-per-node=$(NPROC_PER_NODE)",
        "--node-rank=$(NODE_RANK)",
        "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
        "-m",
        "slipway_trainer",
    ]


def resources(job: TrainingJob) -> dict[str, Any]:
    res = job.spec.resources
    if res is None:
        return {}
    quantities = {k: v for k, v in (("cpu", res.cpu), ("memory", res.memory)) if v}
    limits: dict[str, Any] = dict(quantities)
    if res.gpus:
        limits[GPU] = str(res.gpus)
    return {"requests": quantities, "limits": limits} if limits else {}


def scheduling(job: TrainingJob) -> dict[str, Any]:
    spec = job.spec
    selector = dict(spec.node_selector)
    tolerations = [t.wire() for t in spec.tolerations]
    if spec.resources and spec.resources.gpus:
        tolerations.append({"key": GPU, "operator": "Exists", "effect": "NoSchedule"})
        if spec.resources.gpu_product:
            selector[GPU_PRODUCT] = spec.resources.gpu_product
    out: dict[str, Any] = {}
    if selector:
        out["nodeSelector"] = selector
    if tolerations:
        out["tolerations"] = tolerations
    return out


RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": NON_ROOT,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def worker_pod(job: TrainingJob, attempt: int, rank: int, settings: Settings, preemptions: int = 0) -> dict[str, Any]:
    name = job.metadata["name"]
    env = s3_env(job, settings) + (torchrun_env(job, rank) if distributed(job) else [])
    container = {
        "name": "trainer",
        "image": job.spec.image or settings.trainer_image,
        "command": command(job),
        "args": ["--config", json.dumps(trainer_config(job), sort_keys=True, separators=(",", ":"))],
        "env": env,
        "resources": resources(job),
        "securityContext": RESTRICTED_CONTAINER,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if distributed(job):
        container["ports"] = [{"name": "torchrun", "containerPort": MASTER_PORT}]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": NON_ROOT},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        **scheduling(job),
    }
    if job.spec.output.service_account_name:
        pod_spec["serviceAccountName"] = job.spec.output.service_account_name
        pod_spec["automountServiceAccountToken"] = True  # workload identity needs the projected token
    if distributed(job):
        pod_spec |= {"hostname": f"{name}-w{rank}", "subdomain": name}
    group_labels, annotations = kueue_group(job, attempt)
    if preemptions:
        annotations[ANNOTATION_PREEMPTIONS] = str(preemptions)
    metadata: dict[str, Any] = {
        "name": pod_name(job, attempt, rank),
        "labels": {**labels(job), **group_labels, LABEL_ATTEMPT: str(attempt), LABEL_RANK: str(rank)},
        "ownerReferences": [owner_reference(job)],
    }
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def headless_service(job: TrainingJob) -> dict[str, Any]:
    name = job.metadata["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(job), "ownerReferences": [owner_reference(job)]},
        "spec": {
            "clusterIP": "None",
            # Workers must find rank 0 before any of them is Ready: torchrun's rendezvous comes first.
            "publishNotReadyAddresses": True,
            "selector": {LABEL_JOB: name},
            "ports": [{"name": "torchrun", "port": MASTER_PORT}],
        },
    }


def model_version(job: TrainingJob, manifest: dict[str, Any], version: int, settings: Settings) -> dict[str, Any]:
    """The registry entry for the job's artifact: no owner, it must outlive the job."""
    spec, meta, out = job.spec, job.metadata, job.spec.output
    connection = {
        "endpoint": out.endpoint or settings.s3_endpoint or None,
        "region": out.region or settings.s3_region,
        "credentialsSecretRef": out.credentials_secret_ref.wire() if out.credentials_secret_ref else None,
        "serviceAccountName": out.service_account_name,
    }
    artifact, dataset = manifest["artifact"], manifest.get("dataset") or {}
    inputs = (manifest.get("signature") or {}).get("inputs") or []
    mv_spec = {
        "modelName": spec.model_name,
        "version": version,
        "framework": spec.framework,
        "artifact": {
            "uri": artifact["uri"],
            "sha256": artifact["sha256"],
            "format": artifact["format"],
            "sizeBytes": artifact.get("sizeBytes"),
            **connection,
        },
        "metrics": manifest.get("metrics") or {},
        "headlineMetric": spec.gates[0].metric if spec.gates else None,
        "lineage": {
            "trainingJobRef": {"name": meta["name"], "uid": meta.get("uid")},
            "dataset": {"uri": dataset.get("uri", spec.dataset.uri), "sha256": dataset.get("sha256")},
            "algorithm": spec.algorithm,
            "hyperparameters": manifest.get("hyperparameters", spec.hyperparameters),
            "seed": spec.seed,
            "image": spec.image or settings.trainer_image,
            "libraries": manifest.get("libraries") or {},
        },
        "signature": {"inputs": inputs} if inputs else None,
        "classes": manifest.get("classes") or None,
        "referenceData": {"uri": manifest["referenceData"]["uri"], **connection}
        if manifest.get("referenceData")
        else None,
        "gates": [g.wire() for g in spec.gates],
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelVersion",
        "metadata": {
            "name": model_version_name(spec.model_name, version),
            # The job's shard reconciles its ModelVersion too: a model's lineage stays in one shard.
            "labels": {
                LABEL_MODEL: spec.model_name,
                LABEL_JOB: meta["name"],
                LABEL_JOB_UID: meta.get("uid", ""),
                **shard_labels(shard_of(meta.get("labels"))),
            },
        },
        "spec": prune(mv_spec),
    }


def prune(value: Any) -> Any:
    """Drop None values recursively: the API would reject explicit nulls in a structural schema."""
    if isinstance(value, dict):
        return {k: prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value
