"""Rollout: a ModelVersion behind a KServe InferenceService, with an analysed canary."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from slipway.api.common import (
    DNS_LABEL,
    LocalObjectReference,
    Model,
    ServiceAccountName,
    StatusBase,
    cel,
)
from slipway.api.kind import AGE_COLUMN, READY_COLUMN, Kind, PrinterColumn
from slipway.api.trainingjob import QUANTITY


class PredictorResources(Model):
    cpu: Annotated[str | None, Field(default=None, max_length=64, pattern=QUANTITY)]
    memory: Annotated[str | None, Field(default=None, max_length=64, pattern=QUANTITY)]
    gpus: Annotated[int, Field(default=0, ge=0, le=16)]


class Predictor(Model):
    """The predictor slipway writes into the InferenceService."""

    runtime: Annotated[
        str, Field(default="slipway-predictor", max_length=253, description="ServingRuntime that serves the model.")
    ]
    model_format: Annotated[
        str,
        Field(
            default="slipway",
            max_length=63,
            pattern=r"^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$",
            description="The modelFormat the runtime serves: slipway for slipway's predictor; sklearn, xgboost, "
            "lightgbm, ... with one of KServe's own runtimes (runtime: kserve-sklearnserver, ...), which load the "
            "artifact KServe's storage initializer fetched and report no version-labelled metrics "
            "(canary analysis then needs source: traefik, or knative in Serverless mode).",
        ),
    ]
    protocol_version: Annotated[Literal["v1", "v2"], Field(default="v2", description="Inference protocol.")]
    min_replicas: Annotated[int, Field(default=1, ge=0, le=100)]
    max_replicas: Annotated[int | None, Field(default=None, ge=1, le=1000)]
    resources: Annotated[PredictorResources | None, Field(default=None)]
    service_account_name: Annotated[
        ServiceAccountName | None, Field(default=None, description="Its identity for reading the artifact from S3.")
    ]


# KServe's InferenceService name format (its validating webhook's IsvcNameFmt): a DNS-1035 label.
ISVC_NAME = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


class InferenceServiceTemplate(Model):
    """The KServe InferenceService this Rollout owns."""

    name: Annotated[
        str | None,
        Field(
            default=None,
            max_length=45,
            pattern=ISVC_NAME,
            description="Defaults to the Rollout's name. Starts with a letter; in Standard mode at most 37 "
            "characters, so that <name>-<predictor>-predictor and KServe's app label fit in 63.",
        ),
    ]
    deployment_mode: Annotated[
        Literal["Serverless", "Standard"],
        Field(
            default="Standard",
            description="Serverless: canaryTrafficPercent on one predictor (Knative). "
            "Standard: spec.canary[] with a named predictor (KServe >= 0.20).",
        ),
    ]
    predictor: Annotated[Predictor, Field(default_factory=Predictor)]


class CanaryStep(Model):
    """Send `weight`% to the canary, then wait `holdSeconds` under analysis, or for a manual promote."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "x-kubernetes-validations": [
            cel(
                "!(has(self.holdSeconds) && has(self.manualGate) && self.manualGate)",
                "a step has holdSeconds or manualGate, not both",
            )
        ]
    }

    # The bounds here too, not only in Canary's rule: a refusal then names the step's weight itself.
    weight: Annotated[int, Field(ge=1, le=100, description="Percent of traffic on the canary (1-100).")]
    hold_seconds: Annotated[int | None, Field(default=None, ge=0, le=86400)]
    manual_gate: Annotated[bool | None, Field(default=None, description="Wait for the slipway.dev/promote annotation.")]


class Prometheus(Model):
    address: Annotated[
        str, Field(max_length=2048, pattern=r"^https?://", description="Base URL of the Prometheus HTTP API.")
    ]


class ErrorRateAnalysis(Model):
    """Canary vs stable server-error rate, judged by an exact sequential test on the request counts."""

    enabled: bool = True
    margin: Annotated[
        float,
        Field(
            default=0.02,
            ge=0,
            le=1,
            description="How much higher than stable's (in rate points: 0.02 is two points) the canary's error rate "
            "may be. Healthy, which ends a step, needs the always-valid interval of the difference below it; "
            "Regressed, which rolls back, needs it above 0.",
        ),
    ]


class LatencyAnalysis(Model):
    """Canary latency quantile against stable's, with always-valid bounds read off the duration histograms."""

    enabled: bool = True
    quantile: Annotated[float, Field(default=0.95, gt=0, lt=1)]
    max_ratio: Annotated[
        float,
        Field(
            default=1.5,
            gt=1,
            le=100,
            description="The margin: Regressed when the canary's quantile is proven above this many times stable's, "
            "Healthy when proven at most this (at the resolution of the histogram's buckets).",
        ),
    ]
    min_samples: Annotated[int, Field(default=100, ge=1, description="Requests per side before any verdict.")]


class CustomMetric(Model):
    """A PromQL expression with bounds; `{{version}}` is replaced by the canary's version label. A bound, not a
    statistical test: it spends none of falseRollbackRate, so give it a query already aggregated over a window."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "x-kubernetes-validations": [cel("has(self.min) || has(self.max)", "a custom metric needs min or max")]
    }

    name: Annotated[str, Field(max_length=63, pattern=DNS_LABEL)]
    query: Annotated[str, Field(min_length=1, max_length=4096)]
    min: Annotated[float | None, Field(default=None)]
    max: Annotated[float | None, Field(default=None)]
    relative_to_stable: Annotated[
        bool,
        Field(
            default=False,
            description="Run the query for stable's version too and hold min/max against canary over stable "
            "(e.g. max: 1.1 for at most 10 % above stable's value).",
        ),
    ]


class Analysis(Model):
    """How the canary is judged; no evidence never promotes."""

    prometheus: Prometheus
    source: Annotated[
        Literal["predictor", "traefik", "knative"] | None,
        Field(
            default=None,
            description=(
                "Where the request counts and latencies per version come from. predictor: the version-labelled "
                "metrics of slipway's predictor runtime. traefik: the data plane's per-backend request counter "
                "(by status code) and duration histogram, with Traefik implementing the Rollout's HTTPRoute "
                "(Standard mode); any serving runtime, KServe's own included. knative: Knative's queue-proxy "
                "request metrics (kn_serving_invocation_duration_seconds, by response code) per revision "
                "(Serverless mode; any serving runtime); the canary's and stable's revisions are read from the "
                "InferenceService's status. Unset: knative in Serverless mode, predictor in Standard mode."
            ),
        ),
    ]
    interval_seconds: Annotated[int, Field(default=10, ge=1, le=3600)]
    false_rollback_rate: Annotated[
        float,
        Field(
            default=0.05,
            gt=0,
            le=0.5,
            description="Alpha: highest chance that a healthy canary is rolled back by the analysis as a whole, "
            "however often it looks; the error-rate and latency tests share it equally.",
        ),
    ]
    min_requests: Annotated[int, Field(default=20, ge=1, description="Requests per side needed before any verdict.")]
    on_no_data: Annotated[
        Literal["hold", "rollback"],
        Field(default="hold", description="What to do after maxHoldSeconds without evidence."),
    ]
    max_hold_seconds: Annotated[int, Field(default=600, ge=0)]
    error_rate: Annotated[ErrorRateAnalysis, Field(default_factory=ErrorRateAnalysis)]
    latency: Annotated[LatencyAnalysis, Field(default_factory=LatencyAnalysis)]
    custom_metrics: Annotated[list[CustomMetric], Field(default_factory=list, max_length=16)]


class Canary(Model):
    schema_extra: ClassVar[dict[str, Any]] = {
        "x-kubernetes-validations": [
            cel(
                "self.steps.all(s, s.weight >= 1 && s.weight <= 100)",
                "canary step weights must be between 1 and 100",
                fieldPath=".steps",
            ),
            cel(
                "self.steps.map(s, s.weight).isSorted()"
                " && self.steps.all(a, self.steps.exists_one(b, b.weight == a.weight))",
                "canary step weights must be strictly increasing",
                fieldPath=".steps",
            ),
        ]
    }

    steps: Annotated[list[CanaryStep], Field(min_length=1, max_length=20)]
    analysis: Annotated[Analysis | None, Field(default=None)]
    progress_deadline_seconds: Annotated[
        int,
        Field(
            default=600,
            ge=30,
            le=86400,
            description="How long the canary's predictor may take to become ready (Standard mode: KServe's "
            "status.canaryStatuses[].ready) before it is rolled back. Step clocks start when it is ready.",
        ),
    ]
    scale_down_delay_seconds: Annotated[
        int,
        Field(
            default=10,
            ge=0,
            le=3600,
            description="Standard mode with the Rollout's HTTPRoute: how long a version keeps its pods after the "
            "route stopped sending it requests (before promotion, the old stable; after a rollback, the canary). "
            "A gateway applies a route change a moment after accepting it; removing the pods at once would fail "
            "the requests still in flight to them. As Argo Rollouts' scaleDownDelaySeconds.",
        ),
    ]


class RolloutSpec(Model):
    schema_extra: ClassVar[dict[str, Any]] = {
        "x-kubernetes-validations": [
            cel(
                "!has(self.canary) || !has(self.canary.analysis) || !has(self.canary.analysis.source)"
                " || self.canary.analysis.source != 'traefik'"
                " || !has(self.inferenceService.deploymentMode) || self.inferenceService.deploymentMode == 'Standard'",
                "canary.analysis.source traefik needs inferenceService.deploymentMode Standard",
                fieldPath=".canary.analysis.source",
            ),
            cel(
                "!has(self.canary) || !has(self.canary.analysis) || !has(self.canary.analysis.source)"
                " || self.canary.analysis.source != 'knative'"
                " || (has(self.inferenceService.deploymentMode)"
                " && self.inferenceService.deploymentMode == 'Serverless')",
                "canary.analysis.source knative needs inferenceService.deploymentMode Serverless",
                fieldPath=".canary.analysis.source",
            ),
        ]
    }

    model_version_ref: LocalObjectReference
    inference_service: Annotated[InferenceServiceTemplate, Field(default_factory=InferenceServiceTemplate)]
    canary: Annotated[
        Canary | None, Field(default=None, description="Without it a new version takes all traffic at once.")
    ]


Verdict = Literal["Healthy", "Regressed", "Inconclusive"]


class SideEvidence(Model):
    samples: Annotated[float, Field(ge=0)]
    value: Annotated[float | None, Field(default=None)]
    interval: Annotated[
        list[float], Field(default_factory=list, max_length=2, description="Latency: the quantile's bounds (lo, hi].")
    ]


class Evidence(Model):
    metric: str
    verdict: Verdict
    canary: SideEvidence
    stable: SideEvidence
    effect: Annotated[float | None, Field(default=None, description="Canary minus (or over) stable.")]
    interval: Annotated[list[float], Field(default_factory=list, max_length=2, description="Confidence interval.")]
    p_value: Annotated[float | None, Field(default=None)]
    margin: Annotated[float | None, Field(default=None, description="The tolerance the verdict was judged against.")]
    alpha: Annotated[float | None, Field(default=None, description="The share of falseRollbackRate this test spends.")]


class Decision(Model):
    time: Annotated[str, Field(json_schema_extra={"format": "date-time"})]
    action: Annotated[str, Field(max_length=63, description="e.g. Hold, Advance, Promote, Rollback.")]
    step: Annotated[int | None, Field(default=None)]
    weight: Annotated[int | None, Field(default=None)]
    verdict: Annotated[Verdict | None, Field(default=None)]
    message: Annotated[str, Field(default="", max_length=2048)]
    evidence: Annotated[list[Evidence], Field(default_factory=list, max_length=16)]


RolloutPhase = Literal["Pending", "Progressing", "Paused", "Promoted", "RolledBack", "Aborted", "Failed"]


class RolloutStatus(StatusBase):
    """Observed state of a Rollout."""

    phase: Annotated[RolloutPhase | None, Field(default=None)]
    stable_version: Annotated[str | None, Field(default=None, description="ModelVersion taking the stable traffic.")]
    canary_version: Annotated[str | None, Field(default=None, description="ModelVersion under analysis.")]
    current_step: Annotated[int | None, Field(default=None, ge=0)]
    canary_weight: Annotated[int, Field(default=0, ge=0, le=100)]
    step_started_at: Annotated[str | None, Field(default=None, json_schema_extra={"format": "date-time"})]
    last_verdict: Annotated[Verdict | None, Field(default=None)]
    decisions: Annotated[
        list[Decision], Field(default_factory=list, max_length=20, description="The latest decisions with evidence.")
    ]
    canary_started_at: Annotated[
        str | None,
        Field(default=None, json_schema_extra={"format": "date-time"}, description="Evidence counts from here."),
    ]
    canary_deployed_at: Annotated[
        str | None,
        Field(
            default=None,
            json_schema_extra={"format": "date-time"},
            description="When the canary's predictor was asked for; progressDeadlineSeconds counts from here.",
        ),
    ]
    draining_version: Annotated[
        str | None,
        Field(
            default=None,
            description="A rolled-back canary whose pods stay (no requests): Standard mode until drainUntil; "
            "Serverless mode while its revision is still Knative's latest, until a revision of stable's spec is "
            "ready (see rolledBackRevision).",
        ),
    ]
    drain_until: Annotated[str | None, Field(default=None, json_schema_extra={"format": "date-time"})]
    rolled_back_revision: Annotated[
        str | None,
        Field(
            default=None,
            max_length=253,
            description="Serverless rollback: the rolled-back canary's Knative revision, recorded once every "
            "request was seen going to stable's revision (canaryTrafficPercent 0); stable's spec is restored then, "
            "still at canaryTrafficPercent 0, and the field dropped once a newer revision is ready.",
        ),
    ]
    applied: Annotated[
        dict[str, str] | None,
        Field(
            default=None,
            description="Digest of what the operator last applied, per object it owns (InferenceService, "
            "HTTPRoute, storage ServiceAccount): it writes only when that intent changes or the object drifted.",
        ),
    ]
    last_analysis_time: Annotated[str | None, Field(default=None, json_schema_extra={"format": "date-time"})]
    last_evidence: Annotated[
        list[Evidence] | None,
        Field(
            default=None,
            max_length=16,
            description="The evidence of the latest look (lastAnalysisTime), written at every look; decisions keep "
            "the evidence each decision was taken on.",
        ),
    ]
    rolled_back_version: Annotated[
        str | None, Field(default=None, description="Not tried again until the target changes or a retry is asked for.")
    ]
    promote_token: Annotated[str | None, Field(default=None, description="Last slipway.dev/promote value acted on.")]
    retry_token: Annotated[str | None, Field(default=None, description="Last slipway.dev/retry value acted on.")]
    abort_token: Annotated[str | None, Field(default=None, description="Last slipway.dev/abort value acted on.")]
    candidate: Annotated[
        str | None,
        Field(
            default=None,
            description="Who proposed the version being rolled out instead of spec.modelVersionRef "
            "(slipway.dev/candidate), e.g. DriftMonitor/cancer-rf; unset when the spec decides.",
        ),
    ]
    drift_monitor: Annotated[
        str | None, Field(default=None, description="DriftMonitor whose detector receives this service's inputs.")
    ]


class Rollout(Kind):
    """Serves a ModelVersion through KServe, progressively, with automatic rollback."""

    kind: ClassVar[str] = "Rollout"
    plural: ClassVar[str] = "rollouts"
    short_names: ClassVar[tuple[str, ...]] = ("mro",)
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("Stable", ".status.stableVersion"),
        PrinterColumn("Canary", ".status.canaryVersion"),
        PrinterColumn("Weight", ".status.canaryWeight", type="integer"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Verdict", ".status.lastVerdict"),
        READY_COLUMN,
        AGE_COLUMN,
    )

    spec: RolloutSpec
    status: RolloutStatus | None = None
