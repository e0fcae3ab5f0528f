"""Every outside system a reconcile pass talks to, as one bundle handed to each pass.

A controller's `observe(obj, clients, now)` only reads through these; every write is an action in its Result,
carried out by `controllers.base` (the one place that writes). The protocols are the operator's own interfaces,
so a unit test hands `observe` fakes of them; the integration tests use the real components behind them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from slipway.kube import Kube
from slipway.storage import ObjectInfo, S3Access


class ObjectStore(Protocol):
    """S3 as the operator reads it (storage.S3)."""

    async def head(self, access: S3Access, uri: str) -> ObjectInfo: ...

    async def sha256(self, access: S3Access, uri: str) -> tuple[str, ObjectInfo]: ...

    async def read_json(self, access: S3Access, uri: str, limit: int = ...) -> dict[str, Any]: ...


class Metrics(Protocol):
    """Prometheus' instant queries (analysis.Prometheus): (labels, value) per series; raises
    analysis.PrometheusError when it cannot answer."""

    async def query(self, address: str, promql: str) -> list[tuple[dict[str, str], float]]: ...


class Detectors(Protocol):
    """The shared drift runtime (drift.DriftRuntime): each monitor's configuration and results."""

    listed: bool

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def put(self, namespace: str, name: str, config: dict[str, Any]) -> dict[str, Any]: ...

    async def delete(self, namespace: str, name: str) -> None: ...

    async def summaries(self) -> dict[tuple[str, str], Any] | None: ...


@dataclass(frozen=True)
class Clients:
    kube: Kube
    s3: ObjectStore
    prometheus: Metrics
    drift: Detectors | None = None  # None: the operator has no SLIPWAY_DRIFT_URL
