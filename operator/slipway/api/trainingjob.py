"""TrainingJob: launches (GPU) training pods, single or distributed (torchrun)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from slipway.api.common import (
    DNS_LABEL,
    Gate,
    LocalObjectReference,
    Model,
    S3Location,
    StatusBase,
    cel,
)
from slipway.api.kind import AGE_COLUMN, READY_COLUMN, Kind, PrinterColumn

Framework = Literal["sklearn", "pytorch"]

QUANTITY = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"


class Dataset(Model):
    """Where the training data comes from."""

    uri: Annotated[
        str,
        Field(
            max_length=2048,
            pattern=r"^(s3://.+|sklearn://(breast_cancer|iris|wine|digits|diabetes))$",
            description="s3://bucket/key.csv|.parquet, or a dataset bundled with scikit-learn: "
            "sklearn://breast_cancer, iris, wine, digits or diabetes.",
        ),
    ]
    format: Annotated[
        Literal["csv", "parquet"] | None,
        Field(default=None, description="File format of an s3:// dataset; guessed from the key's suffix if unset."),
    ]
    target: Annotated[
        str | None,
        Field(default=None, max_length=253, description="Label column; bundled datasets default to 'target'."),
    ]
    features: Annotated[
        list[Annotated[str, Field(max_length=253)]] | None,
        Field(default=None, max_length=1024, description="Input columns; all but the target if unset."),
    ]


class TrainingOutput(S3Location):
    """The S3 prefix the trainer writes the artifact, its manifest and reference data under."""


class TrainingResources(Model):
    """Resources for each worker pod."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "x-kubernetes-validations": [cel("!has(self.gpuProduct) || self.gpus > 0", "gpuProduct needs gpus > 0")]
    }

    gpus: Annotated[int, Field(default=0, ge=0, le=16, description="nvidia.com/gpu per worker.")]
    gpu_product: Annotated[
        str | None,
        Field(
            default=None,
            max_length=253,
            description="Required nvidia.com/gpu.product node label, e.g. NVIDIA-H100-80GB-HBM3.",
        ),
    ]
    cpu: Annotated[
        str | None, Field(default=None, max_length=64, pattern=QUANTITY, description="CPU request and limit.")
    ]
    memory: Annotated[
        str | None, Field(default=None, max_length=64, pattern=QUANTITY, description="Memory request and limit.")
    ]


class Toleration(Model):
    """A pod toleration, passed through to every worker."""

    key: Annotated[str | None, Field(default=None, max_length=316)]
    operator: Annotated[Literal["Exists", "Equal"] | None, Field(default=None)]
    value: Annotated[str | None, Field(default=None, max_length=63)]
    effect: Annotated[Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None, Field(default=None)]
    toleration_seconds: Annotated[int | None, Field(default=None)]


class Distributed(Model):
    """Data-parallel training with torchrun: one pod per worker behind a headless Service."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "x-kubernetes-validations": [cel("self.workers >= 1", "distributed.workers must be at least 1")]
    }

    workers: Annotated[int, Field(default=1, le=64, description="Number of worker pods (torchrun nodes).")]
    nproc_per_node: Annotated[int, Field(default=1, ge=1, le=16, description="Processes per worker pod.")]


class RunPolicy(Model):
    """Retries, deadline, clean-up and Kueue-style suspension."""

    backoff_limit: Annotated[
        int, Field(default=3, ge=0, le=100, description="Retries of the whole gang after a transient failure.")
    ]
    active_deadline_seconds: Annotated[
        int | None, Field(default=None, ge=1, description="Fail the job when it runs longer than this.")
    ]
    ttl_seconds_after_finished: Annotated[
        int | None, Field(default=None, ge=0, description="Delete the finished job (not its ModelVersion) after this.")
    ]
    suspend: Annotated[bool, Field(default=False, description="Remove the pods and wait; set to false to resume.")]


class TrainingJobSpec(Model):
    """What to train, on what data, where to write it, on which hardware."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "x-kubernetes-validations": [
            cel(
                "!has(self.distributed) || self.framework == 'pytorch'", "distributed training needs framework pytorch"
            ),
        ]
    }

    model_name: Annotated[
        str,
        Field(max_length=50, pattern=DNS_LABEL, description="Registry name; versions are named <modelName>-v<N>."),
    ]
    framework: Annotated[Framework, Field(description="sklearn or pytorch.")]
    image: Annotated[
        str | None,
        Field(default=None, max_length=1024, description="Trainer image; the operator's default if unset."),
    ]
    algorithm: Annotated[
        str,
        Field(
            min_length=1,
            max_length=253,
            description="sklearn: estimator class path (sklearn.ensemble.RandomForestClassifier); pytorch: mlp.",
        ),
    ]
    hyperparameters: Annotated[
        dict[str, Any],
        Field(default_factory=dict, description="Passed to the estimator or network as keyword arguments."),
    ]
    dataset: Dataset
    seed: Annotated[int, Field(default=0, ge=0, le=2**31 - 1, description="Seed for the split and the training.")]
    output: TrainingOutput
    resources: Annotated[TrainingResources | None, Field(default=None)]
    node_selector: Annotated[dict[str, str], Field(default_factory=dict, description="Added to every worker pod.")]
    tolerations: Annotated[list[Toleration], Field(default_factory=list, max_length=32)]
    distributed: Annotated[Distributed | None, Field(default=None)]
    run_policy: Annotated[RunPolicy, Field(default_factory=RunPolicy)]
    gates: Annotated[
        list[Gate],
        Field(
            default_factory=list, max_length=16, description="Metric bounds the trained model must meet to be served."
        ),
    ]


class Artifact(Model):
    """The trained model as written to S3."""

    uri: Annotated[str, Field(max_length=2048)]
    sha256: Annotated[str, Field(max_length=64)]
    size_bytes: Annotated[int, Field(ge=0)]


TrainingPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Suspended"]


class TrainingJobStatus(StatusBase):
    """Observed state of a TrainingJob."""

    phase: Annotated[
        TrainingPhase | None, Field(default=None, description="Summary for people; use conditions in code.")
    ]
    attempts: Annotated[int, Field(default=0, ge=0, description="Gang launches so far.")]
    preemptions: Annotated[
        int,
        Field(
            default=0,
            ge=0,
            description="Gang restarts after Kueue evicted the gang; they do not count against backoffLimit.",
        ),
    ]
    start_time: Annotated[str | None, Field(default=None, json_schema_extra={"format": "date-time"})]
    completion_time: Annotated[str | None, Field(default=None, json_schema_extra={"format": "date-time"})]
    metrics: Annotated[dict[str, float], Field(default_factory=dict, description="Validation metrics.")]
    artifact: Annotated[Artifact | None, Field(default=None)]
    model_version_ref: Annotated[LocalObjectReference | None, Field(default=None)]


class TrainingJob(Kind):
    """Trains a model in (GPU) pods and registers the result as a ModelVersion."""

    kind: ClassVar[str] = "TrainingJob"
    plural: ClassVar[str] = "trainingjobs"
    short_names: ClassVar[tuple[str, ...]] = ("tj",)
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("Model", ".spec.modelName"),
        PrinterColumn("Framework", ".spec.framework"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Attempts", ".status.attempts", type="integer"),
        PrinterColumn(
            "Preemptions",
            ".status.preemptions",
            type="integer",
            description="Gang restarts after a Kueue eviction",
            priority=1,
        ),
        PrinterColumn("Version", ".status.modelVersionRef.name"),
        READY_COLUMN,
        AGE_COLUMN,
    )

    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None
