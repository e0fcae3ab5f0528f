"""DriftMonitor: live input drift detection that can trigger retraining."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from slipway.api.common import LocalObjectReference, Model, StatusBase, cel
from slipway.api.kind import AGE_COLUMN, Kind, PrinterColumn
from slipway.api.trainingjob import TrainingJobSpec


class Detector(Model):
    """Which alibi-detect detector runs on each window."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "x-kubernetes-validations": [
            cel(
                "self.backend == 'numpy' || self.method == 'mmd' || self.method == 'lsdd'",
                "backend pytorch applies only to methods mmd and lsdd",
            )
        ]
    }

    method: Annotated[
        Literal["ks", "chisquare", "tabular", "mmd", "lsdd"],
        Field(default="ks", description="ks, chisquare and tabular test per feature; mmd and lsdd are multivariate."),
    ]
    p_value: Annotated[float, Field(default=0.05, gt=0, lt=1, description="Significance level of the test.")]
    correction: Annotated[
        Literal["bonferroni", "fdr"],
        Field(default="bonferroni", description="Multiple-testing correction (per feature)."),
    ]
    window_size: Annotated[int, Field(default=1000, ge=10, le=100000, description="Requests per evaluated window.")]
    features: Annotated[
        list[Annotated[str, Field(max_length=253)]],
        Field(default_factory=list, max_length=4096, description="Inputs to watch; all of the signature if empty."),
    ]
    backend: Annotated[Literal["numpy", "pytorch"], Field(default="numpy")]


class RetrainTemplate(Model):
    """Retraining when drift persists."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "x-kubernetes-validations": [
            cel("self.cooldownSeconds >= 0", "retrain.cooldownSeconds must be >= 0"),
        ]
    }

    enabled: Annotated[bool, Field(default=True)]
    template: Annotated[TrainingJobSpec, Field(description="Spec of the TrainingJob to create.")]
    consecutive_windows: Annotated[
        int, Field(default=2, ge=1, le=100, description="Drifted windows in a row before retraining.")
    ]
    cooldown_seconds: Annotated[
        int, Field(default=3600, description="No new retraining within this many seconds of the last one.")
    ]
    max_concurrent: Annotated[int, Field(default=1, ge=1, le=10, description="Retraining jobs running at once.")]
    create_rollout: Annotated[
        bool, Field(default=False, description="Roll the new version out through the monitored Rollout.")
    ]


class DriftMonitorSpec(Model):
    schema_extra: ClassVar[dict[str, Any]] = {
        "x-kubernetes-validations": [
            cel(
                "has(self.rolloutRef) != has(self.inferenceServiceRef)",
                "set exactly one of rolloutRef or inferenceServiceRef",
            ),
            cel(
                "!has(self.inferenceServiceRef) || has(self.modelVersionRef)",
                "inferenceServiceRef needs modelVersionRef for the reference data",
            ),
        ]
    }

    rollout_ref: Annotated[
        LocalObjectReference | None, Field(default=None, description="Watch what this Rollout serves.")
    ]
    inference_service_ref: Annotated[LocalObjectReference | None, Field(default=None)]
    model_version_ref: Annotated[
        LocalObjectReference | None,
        Field(default=None, description="Reference data source when watching an InferenceService directly."),
    ]
    detector: Annotated[Detector, Field(default_factory=Detector)]
    retrain: Annotated[RetrainTemplate | None, Field(default=None)]


class WindowResult(Model):
    time: Annotated[str, Field(json_schema_extra={"format": "date-time"})]
    model_version: Annotated[str | None, Field(default=None)]
    samples: Annotated[int, Field(ge=0)]
    drift: bool
    p_value: Annotated[float | None, Field(default=None, description="Smallest p-value (after correction).")]
    distance: Annotated[float | None, Field(default=None)]
    feature_p_values: Annotated[dict[str, float], Field(default_factory=dict)]


class RetrainRecord(Model):
    job_name: str
    time: Annotated[str, Field(json_schema_extra={"format": "date-time"})]
    reason: Annotated[str, Field(default="", max_length=2048)]
    model_version: Annotated[
        str | None, Field(default=None, description="The ModelVersion the job registered, once it has.")
    ]
    proposed: Annotated[
        bool, Field(default=False, description="Whether the new version was proposed to the Rollout (createRollout).")
    ]


DriftState = Literal["Pending", "Monitoring", "Drifting", "Retraining"]


class DriftMonitorStatus(StatusBase):
    state: Annotated[DriftState | None, Field(default=None)]
    model_version: Annotated[str | None, Field(default=None, description="Version whose reference data is in use.")]
    windows_evaluated: Annotated[int, Field(default=0, ge=0)]
    consecutive_drift_windows: Annotated[int, Field(default=0, ge=0)]
    last_window: Annotated[WindowResult | None, Field(default=None)]
    last_canary_window: Annotated[
        WindowResult | None, Field(default=None, description="Canary traffic, kept apart from the stable window.")
    ]
    last_result_seq: Annotated[
        int, Field(default=0, ge=0, description="Sequence number of the last detector result taken into account.")
    ]
    last_check_time: Annotated[str | None, Field(default=None, json_schema_extra={"format": "date-time"})]
    last_retrain: Annotated[RetrainRecord | None, Field(default=None)]


class DriftMonitor(Kind):
    """Watches live inference inputs for drift and retrains when it persists."""

    kind: ClassVar[str] = "DriftMonitor"
    plural: ClassVar[str] = "driftmonitors"
    short_names: ClassVar[tuple[str, ...]] = ("dm",)
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("State", ".status.state"),
        PrinterColumn("Version", ".status.modelVersion"),
        PrinterColumn("P-Value", ".status.lastWindow.pValue", type="number"),
        PrinterColumn("Windows", ".status.windowsEvaluated", type="integer"),
        PrinterColumn("Last-Check", ".status.lastCheckTime", type="date"),
        AGE_COLUMN,
    )

    spec: DriftMonitorSpec
    status: DriftMonitorStatus | None = None
