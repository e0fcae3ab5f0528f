"""What happened, sampled while the scenario runs: traffic weight per version, the drift p-value, and every
decision with its evidence. Plain data, so the report and the end-to-end test read the same record."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slipway.conditions import parse_time


def epoch(ts: str | None) -> float | None:
    parsed = parse_time(ts)
    return parsed.timestamp() if parsed else None


@dataclass
class Mark:
    """A decision: when, what (Promote, Rollback, RetrainingStarted, ...), and the sentence that explains it."""

    t: float
    action: str
    message: str
    source: str  # Rollout/<name> or DriftMonitor/<name>


@dataclass
class Timeline:
    started: float = field(default_factory=time.time)
    weights: list[tuple[float, dict[str, int]]] = field(default_factory=list)  # percent of traffic per version
    p_values: list[tuple[float, float, str]] = field(default_factory=list)  # (window time, p-value, version)
    error_rates: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # per version, from Prometheus
    marks: list[Mark] = field(default_factory=list)
    drift_level: float = 0.01

    def sample(self, rollout: dict[str, Any] | None, monitor: dict[str, Any] | None) -> None:
        now = time.time()
        if rollout:
            st = rollout.get("status") or {}
            stable, canary, weight = st.get("stableVersion"), st.get("canaryVersion"), int(st.get("canaryWeight") or 0)
            if st.get("stepStartedAt") is None:  # Standard mode: the route sends a canary nothing until it is ready
                weight = 0
            shares = {stable: 100 - weight if canary else 100} if stable else {}
            if canary:
                shares[canary] = weight
            self.weights.append((now, shares))
            for d in st.get("decisions") or []:
                self._mark(epoch(d.get("time")), d.get("action", ""), d.get("message", ""), "Rollout")
        if monitor:
            st = monitor.get("status") or {}
            window = st.get("lastWindow") or {}
            t = epoch(window.get("time"))
            if t is not None and window.get("pValue") is not None and all(t != p[0] for p in self.p_values):
                self.p_values.append((t, float(window["pValue"]), str(window.get("modelVersion"))))
            last = st.get("lastRetrain") or {}
            if last.get("time"):
                self._mark(epoch(last["time"]), "Retrain", f"TrainingJob {last.get('jobName')}: "
                           f"{last.get('reason', '')}", "DriftMonitor")  # fmt: skip

    def note(self, action: str, message: str, source: str) -> None:
        """Something the scenario did itself (not a decision of slipway's), marked now."""
        self._mark(time.time(), action, message, source)

    def _mark(self, t: float | None, action: str, message: str, source: str) -> None:
        if t is None or t < self.started - 1:
            return
        if any(m.t == t and m.action == action for m in self.marks):
            return
        self.marks.append(Mark(t, action, message, source))
        self.marks.sort(key=lambda m: m.t)

    def versions(self) -> list[str]:
        seen: dict[str, None] = {}
        for _, shares in self.weights:
            seen.update(dict.fromkeys(shares))
        return list(seen)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))
