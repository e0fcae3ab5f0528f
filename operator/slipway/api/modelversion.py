"""ModelVersion: the registry entry for one trained artifact."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, WithJsonSchema

from slipway.api.common import DNS_LABEL, Gate, LocalObjectReference, Model, S3Location, StatusBase, cel
from slipway.api.kind import AGE_COLUMN, READY_COLUMN, Kind, PrinterColumn, condition_column
from slipway.api.trainingjob import Framework

SHA256 = r"^[a-f0-9]{64}$"


class ModelArtifact(S3Location):
    """The artifact in S3 and the checksum it must have."""

    sha256: Annotated[str, Field(pattern=SHA256, description="Hex sha256 the stored object must match.")]
    format: Annotated[
        Literal["joblib", "torchscript", "state_dict"], Field(description="How the artifact is serialised.")
    ]
    size_bytes: Annotated[int | None, Field(default=None, ge=0)]


class DatasetLineage(Model):
    uri: Annotated[str, Field(max_length=2048, description="Dataset the model was trained on.")]
    sha256: Annotated[str | None, Field(default=None, pattern=SHA256, description="Hash of the training data.")]


class TrainingJobReference(LocalObjectReference):
    uid: Annotated[str | None, Field(default=None, max_length=64, description="UID of the job, which may be gone.")]


class Lineage(Model):
    """Where this model came from: everything needed to reproduce it."""

    training_job_ref: Annotated[TrainingJobReference | None, Field(default=None)]
    dataset: Annotated[DatasetLineage | None, Field(default=None)]
    algorithm: Annotated[str | None, Field(default=None, max_length=253)]
    hyperparameters: Annotated[dict[str, Any], Field(default_factory=dict)]
    seed: Annotated[int | None, Field(default=None, ge=0)]
    image: Annotated[str | None, Field(default=None, max_length=1024, description="Trainer image.")]
    libraries: Annotated[dict[str, str], Field(default_factory=dict, description="Library versions used.")]


DType = Literal["float64", "float32", "int64", "int32", "bool", "string"]


class SignatureColumn(Model):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    dtype: DType


class Signature(Model):
    """The model's input columns, in order; requests are validated against it."""

    inputs: Annotated[list[SignatureColumn], Field(min_length=1, max_length=4096)]


# A class label as the trainer's manifest has it: an integer or a string (int-or-string in the CRD).
ClassLabel = Annotated[int | str, WithJsonSchema({"x-kubernetes-int-or-string": True})]


class ModelVersionSpec(Model):
    """An immutable record of one trained artifact."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "x-kubernetes-validations": [
            cel("self.artifact == oldSelf.artifact", "spec.artifact is immutable: register a new version instead"),
            cel("self.version == oldSelf.version", "spec.version is immutable"),
        ]
    }

    model_name: Annotated[str, Field(max_length=50, pattern=DNS_LABEL)]
    version: Annotated[int, Field(ge=1, description="Increasing version number within modelName.")]
    framework: Framework
    artifact: ModelArtifact
    metrics: Annotated[dict[str, float], Field(default_factory=dict, description="Validation metrics.")]
    headline_metric: Annotated[
        str | None, Field(default=None, max_length=63, description="Metric shown first; the first gate's if unset.")
    ]
    lineage: Annotated[Lineage, Field(default_factory=Lineage)]
    signature: Annotated[Signature | None, Field(default=None)]
    classes: Annotated[
        list[ClassLabel],
        Field(
            default_factory=list,
            max_length=10000,
            description="A classifier's labels in the order of its outputs (from the trainer's manifest); the "
            "predictor answers with these for TorchScript models (scikit-learn models carry their own).",
        ),
    ]
    reference_data: Annotated[
        S3Location | None, Field(default=None, description="A sample of training inputs: the drift baseline.")
    ]
    gates: Annotated[list[Gate], Field(default_factory=list, max_length=16)]


class ModelVersionStatus(StatusBase):
    """Observed state of a ModelVersion."""

    headline: Annotated[str | None, Field(default=None, description="e.g. accuracy=0.973, for printer columns.")]
    served_by: Annotated[
        list[str], Field(default_factory=list, max_length=256, description="Rollouts that serve this version.")
    ]
    verified_sha256: Annotated[str | None, Field(default=None, description="Checksum last verified against S3.")]
    verified_etag: Annotated[
        str | None, Field(default=None, description="ETag of the object when it was verified; a change re-verifies.")
    ]
    verified_at: Annotated[
        str | None,
        Field(
            default=None,
            json_schema_extra={"format": "date-time"},
            description="When S3 was last asked (HEAD); the artifact is asked again SLIPWAY_VERIFY_SECONDS later.",
        ),
    ]


class ModelVersion(Kind):
    """A registered, verifiable model artifact with its lineage."""

    kind: ClassVar[str] = "ModelVersion"
    plural: ClassVar[str] = "modelversions"
    short_names: ClassVar[tuple[str, ...]] = ("mv",)
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("Model", ".spec.modelName"),
        PrinterColumn("Version", ".spec.version", type="integer"),
        PrinterColumn("Framework", ".spec.framework"),
        PrinterColumn("Metric", ".status.headline"),
        condition_column("Verified", "Verified"),
        READY_COLUMN,
        AGE_COLUMN,
    )

    spec: ModelVersionSpec
    status: ModelVersionStatus | None = None


def model_version_name(model_name: str, version: int) -> str:
    return f"{model_name}-v{version}"


__all__ = ["DNS_LABEL", "ModelVersion", "ModelVersionSpec", "ModelVersionStatus", "model_version_name"]
