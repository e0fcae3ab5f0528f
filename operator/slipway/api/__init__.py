"""The slipway.dev/v1alpha1 API: pydantic models are the one source of truth for the CRDs."""

from slipway.api.canaryanalysis import CanaryAnalysis
from slipway.api.common import API_VERSION, GROUP, VERSION
from slipway.api.driftmonitor import DriftMonitor
from slipway.api.kind import Kind
from slipway.api.modelversion import ModelVersion
from slipway.api.rollout import Rollout
from slipway.api.trainingjob import TrainingJob

# The kinds the operator reconciles (one controller each), and the records it only writes.
KINDS: tuple[type[Kind], ...] = (TrainingJob, ModelVersion, Rollout, DriftMonitor)
RECORDS: tuple[type[Kind], ...] = (CanaryAnalysis,)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "RECORDS",
    "VERSION",
    "CanaryAnalysis",
    "DriftMonitor",
    "Kind",
    "ModelVersion",
    "Rollout",
    "TrainingJob",
]
