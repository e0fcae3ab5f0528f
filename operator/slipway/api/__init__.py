"""The slipway.dev/v1alpha1 API: pydantic models are the one source of truth for the CRDs."""

from slipway.api.common import API_VERSION, GROUP, VERSION
from slipway.api.driftmonitor import DriftMonitor
from slipway.api.kind import Kind
from slipway.api.modelversion import ModelVersion
from slipway.api.rollout import Rollout
from slipway.api.trainingjob import TrainingJob

KINDS: tuple[type[Kind], ...] = (TrainingJob, ModelVersion, Rollout, DriftMonitor)

__all__ = ["API_VERSION", "GROUP", "KINDS", "VERSION", "DriftMonitor", "Kind", "ModelVersion", "Rollout", "TrainingJob"]
