"""The names slipway's parts agree on, in one place: labels and annotations on objects, environment variables
and metric names across the serving contract, the finalizer.

Plain constants, no imports: the operator, the kubectl plugin, the dev tools (hack/) and the benchmarks import
them from here. The runtimes (predictor, drift, trainer) ship in images without the operator's package, so they
keep their own copy of the names they read or export; tests/unit/test_contract.py starts them with these names
and fails when the two sides part.
"""

from __future__ import annotations

GROUP = "slipway.dev"

# -- labels ---------------------------------------------------------------------------------------------------
MANAGED_BY_KEY, MANAGED_BY = "app.kubernetes.io/managed-by", "slipway"
MANAGED = {MANAGED_BY_KEY: MANAGED_BY}  # on everything slipway creates
COMPONENT = "slipway.dev/component"  # what a pod is: trainer, ... (kwok's and localexec's stages select on it)
TRAINING_JOB = "slipway.dev/training-job"  # a worker pod's TrainingJob; a ModelVersion's job
TRAINING_JOB_UID = "slipway.dev/training-job-uid"  # a ModelVersion's job object (names are reused, uids not)
ATTEMPT = "slipway.dev/attempt"  # a worker pod's attempt (1, 2, ...)
RANK = "slipway.dev/rank"  # a worker pod's rank in its gang
MODEL = "slipway.dev/model"  # the model a pod or version belongs to
ROLLOUT = "slipway.dev/rollout"  # what a Rollout owns: its InferenceService's storage objects, its canary records
DRIFT_MONITOR = "slipway.dev/drift-monitor"  # a retraining TrainingJob's DriftMonitor
SHARD_KEY = "sharding.slipway.dev/key"  # which operator shard reconciles an object (sharding.py)

# -- annotations ----------------------------------------------------------------------------------------------
# On a Rollout, by a person or `kubectl slipway`: each value is acted on once (status keeps the token).
PROMOTE, ABORT, RETRY = "slipway.dev/promote", "slipway.dev/abort", "slipway.dev/retry"
# On a Rollout, by a DriftMonitor: the retrained version it proposes, while spec.modelVersionRef is CANDIDATE_BASE.
CANDIDATE, CANDIDATE_BASE, CANDIDATE_SOURCE = (
    "slipway.dev/candidate",
    "slipway.dev/candidate-base",
    "slipway.dev/candidate-source",
)
PREEMPTIONS = "slipway.dev/preemptions"  # on a worker pod: Kueue evictions before its attempt
# On a retraining TrainingJob: why and from which window it was started.
RETRAIN_REASON = "slipway.dev/retrain-reason"
DRIFTED_VERSION = "slipway.dev/drifted-version"
DRIFT_WINDOW = "slipway.dev/drift-window"
DRIFT_P_VALUE = "slipway.dev/drift-p-value"

# -- finalizers and reporting ---------------------------------------------------------------------------------
IN_USE_PROTECTION = "slipway.dev/in-use-protection"  # a ModelVersion while a Rollout serves it
REPORTING_CONTROLLER = "slipway.dev/operator"  # Events' reportingController

# -- the predictor (runtimes/predictor): what the Rollout sets, what it exports --------------------------------
ENV_MODEL_VERSION = "SLIPWAY_MODEL_VERSION"
ENV_FRAMEWORK = "SLIPWAY_FRAMEWORK"
ENV_ARTIFACT_SHA256 = "SLIPWAY_ARTIFACT_SHA256"
ENV_SIGNATURE = "SLIPWAY_SIGNATURE"
ENV_CLASSES = "SLIPWAY_CLASSES"
# Prometheus series (the client library adds _total, _bucket): by `version` (the ModelVersion) and `outcome`.
PREDICTOR_REQUESTS = "slipway_predictor_requests_total"
PREDICTOR_LATENCY = "slipway_predictor_request_duration_seconds_bucket"
PREDICTOR_SERVER_ERROR = "server_error"  # the `outcome` of a request the version failed
