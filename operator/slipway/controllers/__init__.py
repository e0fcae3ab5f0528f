"""One module per kind: observe (async, reads), decide (pure), and the shared apply step in base."""

from __future__ import annotations

from typing import Any

from slipway.config import Settings
from slipway.controllers.base import Controller


def every_kind(settings: Settings) -> list[Controller[Any, Any]]:
    """The operator's controllers, one per kind of slipway.api.KINDS (in that order)."""
    from slipway.controllers.driftmonitor import DriftMonitorController
    from slipway.controllers.modelversion import ModelVersionController
    from slipway.controllers.rollout import RolloutController
    from slipway.controllers.trainingjob import TrainingJobController

    return [TrainingJobController(settings), ModelVersionController(settings), RolloutController(settings),
            DriftMonitorController(settings)]  # fmt: skip
