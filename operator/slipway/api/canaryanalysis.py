"""CanaryAnalysis: the record of one canary of a Rollout, every decision taken on it with its evidence.

The Rollout's status keeps only its latest decisions (a status must stay small and is rewritten at every look);
this record keeps all of one canary's, as Argo Rollouts' AnalysisRun keeps its measurements. The operator writes
it whole at each decision (server-side apply), owned by the Rollout, so it goes when the Rollout goes. Nobody
asks anything of it, so it has no status subresource: spec says which canary it records, status what happened.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from slipway.api.common import LocalObjectReference, Model, StatusBase
from slipway.api.kind import AGE_COLUMN, Kind, PrinterColumn
from slipway.api.rollout import Decision, Verdict

# A canary's decisions are a few per step and one per verdict change; a verdict flapping for days could grow
# the record past what an object may hold (etcd's 1.5 MiB), so the oldest beyond this many are counted, not kept.
MAX_RECORDED = 200

CanaryPhase = Literal["Running", "Promoted", "RolledBack", "Aborted", "Replaced"]


class CanaryAnalysisSpec(Model):
    """Which canary this records (set when it started, never changed)."""

    rollout_ref: LocalObjectReference
    canary_version: Annotated[str, Field(max_length=253, description="The ModelVersion under analysis.")]
    stable_version: Annotated[str, Field(max_length=253, description="The ModelVersion it was compared with.")]
    started_at: Annotated[
        str, Field(json_schema_extra={"format": "date-time"}, description="When the canary was asked for.")
    ]


class CanaryAnalysisStatus(StatusBase):
    """What happened to the canary."""

    phase: Annotated[
        CanaryPhase,
        Field(
            default="Running",
            description="Running until promoted, rolled back, aborted, or replaced by another target.",
        ),
    ]
    last_verdict: Annotated[Verdict | None, Field(default=None)]
    finished_at: Annotated[str | None, Field(default=None, json_schema_extra={"format": "date-time"})]
    decisions: Annotated[
        list[Decision],
        Field(
            default_factory=list, max_length=MAX_RECORDED, description="Every decision on this canary, oldest first."
        ),
    ]
    decisions_dropped: Annotated[
        int, Field(default=0, ge=0, description=f"Decisions older than the latest {MAX_RECORDED}, not kept.")
    ]


class CanaryAnalysis(Kind):
    """The record of one canary of a Rollout: every decision with its evidence (written by the operator)."""

    kind: ClassVar[str] = "CanaryAnalysis"
    plural: ClassVar[str] = "canaryanalyses"
    short_names: ClassVar[tuple[str, ...]] = ("mca",)
    status_subresource: ClassVar[bool] = False
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("Rollout", ".spec.rolloutRef.name"),
        PrinterColumn("Canary", ".spec.canaryVersion"),
        PrinterColumn("Stable", ".spec.stableVersion"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Verdict", ".status.lastVerdict"),
        AGE_COLUMN,
    )

    spec: CanaryAnalysisSpec
    status: CanaryAnalysisStatus | None = None
