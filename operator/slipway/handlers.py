"""Kopf wiring: thin handlers that hand every watch event to the kind's controller.

Level-triggered on purpose: `on.event` sees every change (and every object at start-up), the
controller compares desired with observed status, and nothing is written when they agree. Kopf's
change handlers are not used, so Kopf writes no annotations and adds no finalizers of its own.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import kopf

from slipway.api.common import GROUP, VERSION
from slipway.config import Settings
from slipway.controllers.base import Controller, reconcile
from slipway.controllers.driftmonitor import DriftMonitorController
from slipway.controllers.modelversion import ModelVersionController
from slipway.controllers.rollout import RolloutController
from slipway.controllers.trainingjob import TrainingJobController
from slipway.kube import Conflict, Kube
from slipway.observability import RECONCILE_SECONDS, RECONCILES, STATUS_PATCHES
from slipway.requeue import Requeuer

log = logging.getLogger(__name__)

CONTROLLERS: tuple[Controller[Any, Any], ...] = (
    TrainingJobController(),
    ModelVersionController(),
    RolloutController(),
    DriftMonitorController(),
)
CONFLICT_RETRY_SECONDS = 1.0
ERROR_RETRY_SECONDS = 10.0


class Runtime:
    """What the handlers share: the API client, the requeue timers, the settings."""

    def __init__(self, kube: Kube, settings: Settings) -> None:
        self.kube, self.settings, self.requeue = kube, settings, Requeuer()

    async def handle(self, controller: Controller[Any, Any], body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (controller.kind.plural, meta["namespace"], meta["name"])
        async with self.requeue.lock(key):
            delay = await self._pass(controller, body)
        self.requeue.schedule(key, delay, lambda: self._refetch(controller, key))

    async def _refetch(self, controller: Controller[Any, Any], key: tuple[str, str, str]) -> None:
        try:
            body = await self.kube.get(*key)
        except Exception:
            log.warning("could not re-read %s/%s/%s", *key, exc_info=True)
            self.requeue.schedule(key, ERROR_RETRY_SECONDS, lambda: self._refetch(controller, key))
            return
        if body is None:
            self.requeue.forget(key)
        else:
            await self.handle(controller, body)

    async def _pass(self, controller: Controller[Any, Any], body: dict[str, Any]) -> float:
        """One reconcile; returns when to look again. Never raises: a bad object must not stop the operator."""
        kind, started = controller.kind.kind, time.perf_counter()
        try:
            result = await reconcile(controller, body, self.kube, datetime.now(UTC))
        except Conflict:
            RECONCILES.labels(kind, "conflict").inc()
            return CONFLICT_RETRY_SECONDS
        except Exception:
            RECONCILES.labels(kind, "error").inc()
            log.exception(
                "reconcile of %s %s/%s failed", kind, body["metadata"].get("namespace"), body["metadata"]["name"]
            )
            return ERROR_RETRY_SECONDS
        finally:
            RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - started)
        RECONCILES.labels(kind, "ok").inc()
        if result.patched:
            STATUS_PATCHES.labels(kind).inc()
        resync = self.settings.resync_seconds
        return min(result.requeue_after, resync) if result.requeue_after else resync


def register(registry: kopf.OperatorRegistry, runtime_of: Any) -> None:
    """Register one event handler per kind; `runtime_of(memo)` gives the shared Runtime."""
    for controller in CONTROLLERS:
        _register_one(registry, controller, runtime_of)


def _register_one(registry: kopf.OperatorRegistry, controller: Controller[Any, Any], runtime_of: Any) -> None:
    @kopf.on.event(GROUP, VERSION, controller.kind.plural, registry=registry, id=f"reconcile-{controller.kind.plural}")
    async def on_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime = runtime_of(memo)
        if event["type"] == "DELETED":
            runtime.requeue.forget((controller.kind.plural, body.metadata.namespace, body.metadata.name))
            return
        await runtime.handle(controller, dict(event["object"]))
