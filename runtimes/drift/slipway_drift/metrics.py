"""Prometheus metrics, on a registry of their own (one per server, so tests can run several in a process)."""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

REJECT_REASONS = ("malformed", "unknown_monitor", "unknown_version", "too_large", "too_slow", "unsupported_type")
_MV = ("namespace", "monitor", "version")


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # the `_created` series double the output and nobody graphs them
        r = self.registry = CollectorRegistry()
        self.events = Counter("slipway_drift_events", "Request events accepted.", _MV, registry=r)
        self.rows = Counter("slipway_drift_rows", "Rows accepted into windows.", _MV, registry=r)
        self.rejected = Counter("slipway_drift_events_rejected", "Events refused, by reason.", ["reason"], registry=r)
        self.ignored = Counter("slipway_drift_events_ignored", "Response events (they carry no inputs).", registry=r)
        self.window_samples = Gauge("slipway_drift_window_samples", "Rows in the open window.", _MV, registry=r)
        self.windows = Counter("slipway_drift_windows", "Windows evaluated.", (*_MV, "drift"), registry=r)
        self.p_value = Gauge("slipway_drift_p_value", "Last window's corrected p-value.", _MV, registry=r)
        self.feature_p_value = Gauge(
            "slipway_drift_feature_p_value", "Last window's p-value per feature.", (*_MV, "feature"), registry=r
        )
        self.distance = Gauge("slipway_drift_distance", "Last window's distance.", _MV, registry=r)
        self.detected = Gauge("slipway_drift_detected", "1 if the last window drifted.", _MV, registry=r)
        self.detection_seconds = Histogram(
            "slipway_drift_detection_seconds",
            "Time to evaluate one window.",
            ["method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        self.ignored.inc(0)
        # Label sets written per monitor, so that deleting a monitor can remove exactly its series.
        self._features: dict[tuple[str, str, str], set[str]] = {}
        self._series: dict[tuple[str, str], set[str]] = {}

    def accepted(self, ns: str, mon: str, version: str, rows: int, window: int) -> None:
        self._series.setdefault((ns, mon), set()).add(version)
        self.events.labels(ns, mon, version).inc()
        self.rows.labels(ns, mon, version).inc(rows)
        self.window_samples.labels(ns, mon, version).set(window)

    def result(self, ns: str, mon: str, result: dict[str, Any], window: int) -> None:
        v = result["version"]
        self._series.setdefault((ns, mon), set()).add(v)
        self.windows.labels(ns, mon, v, "true" if result["drift"] else "false").inc()
        self.p_value.labels(ns, mon, v).set(result["pValue"])
        self.distance.labels(ns, mon, v).set(result["distance"])
        self.detected.labels(ns, mon, v).set(1 if result["drift"] else 0)
        self.window_samples.labels(ns, mon, v).set(window)
        self.detection_seconds.labels(result["method"]).observe(result["durationSeconds"])
        seen = self._features.setdefault((ns, mon, v), set())
        for feature, p in result["featurePValues"].items():
            seen.add(feature)
            self.feature_p_value.labels(ns, mon, v, feature).set(p)

    def forget(self, ns: str, mon: str, version: str | None = None) -> None:
        """Remove a monitor's series (all of its versions, or one)."""
        versions = self._series.get((ns, mon), set())
        for v in [version] if version is not None else list(versions):
            versions.discard(v)
            for metric in (self.events, self.rows, self.window_samples, self.p_value, self.distance, self.detected):
                _remove(metric, ns, mon, v)
            for drift in ("true", "false"):
                _remove(self.windows, ns, mon, v, drift)
            for feature in self._features.pop((ns, mon, v), set()):
                _remove(self.feature_p_value, ns, mon, v, feature)
        if version is None:
            self._series.pop((ns, mon), None)


def _remove(metric: Any, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
