"""Canary analysis from Prometheus: query what serves the requests, then judge it with `stats`.

Canary and stable are compared over the same window (since the canary started), on concurrent traffic. Two
sources say which request went to which version:

- `predictor`: slipway's predictor labels its metrics with `version`;
- `traefik`: the data plane (Traefik implementing the Rollout's HTTPRoute) counts requests by status code and
  times them per backend Service, and each version has its own predictor Service. Nothing is asked of the
  model server, so a version served by any runtime (KServe's sklearn server, Triton, ...) can be canaried.
- `knative` (Serverless mode): every revision pod's queue-proxy times each request it proxies to the model
  server in `kn_serving_invocation_duration_seconds` (histogram, label `http_response_status_code`; probes left
  out; knative.dev/serving v0.48.1 pkg/queue/request_metric.go:60-66,94-111), served as Prometheus text on
  :9091 (port `http-usermetric`) when config-observability says `request-metrics-protocol: prometheus`. The
  series carry no revision (OpenTelemetry resource attributes go to `target_info` only): the scrape
  configuration must relabel the pod label `serving.knative.dev/revision` to `revision` (and the namespace to
  `namespace`). Canary and stable are told apart by revision, read from the InferenceService's status
  (rollout_knative.revisions). Any runtime, as with `traefik`.

An unreachable Prometheus or a failing query is never healthy: it is reported as Inconclusive, which holds
the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from slipway import contract, stats
from slipway.api.rollout import Analysis, CustomMetric
from slipway.clients import Metrics
from slipway.stats import Verdict

REQUESTS, LATENCY = contract.PREDICTOR_REQUESTS, contract.PREDICTOR_LATENCY
TRAEFIK_REQUESTS = "traefik_service_requests_total"
TRAEFIK_LATENCY = "traefik_service_request_duration_seconds_bucket"
KNATIVE_REQUESTS = "kn_serving_invocation_duration_seconds_count"
KNATIVE_LATENCY = "kn_serving_invocation_duration_seconds_bucket"
SERVICE_PORT = 80  # KServe's predictor Services listen on 80
QUERY_TIMEOUT_SECONDS = 5.0


class PrometheusError(Exception):
    """Prometheus could not be asked (unreachable, bad answer, failed query)."""


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    evidence: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""


class Prometheus:
    """Prometheus' HTTP API (instant queries), one pooled session for every Rollout's analysis: a session (and
    its connections) per query cost a TCP handshake at every look of every canary. Each Rollout names its own
    address (spec.canary.analysis.prometheus.address), so the address comes with each query."""

    def __init__(self, timeout: float = QUERY_TIMEOUT_SECONDS) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def query(self, address: str, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: (labels, value) per series."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        url = address.rstrip("/") + "/api/v1/query"
        try:
            async with self._session.get(url, params={"query": promql}) as resp:
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise PrometheusError(f"{address}: {type(e).__name__}: {e}") from e
        if not isinstance(body, dict) or body.get("status") != "success":
            raise PrometheusError(f"query failed: {body.get('error', body) if isinstance(body, dict) else body}")
        return [(r.get("metric", {}), float(r["value"][1])) for r in body["data"]["result"]]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


@dataclass(frozen=True)
class Side:
    """What Prometheus says about one version over the window."""

    requests: float = 0.0
    server_errors: float = 0.0
    latency: stats.Histogram = field(default_factory=lambda: stats.Histogram((), (), 0.0))


def selector(namespace: str, model: str) -> str:
    return f'namespace="{namespace}",model="{model}"'


def traefik_service(namespace: str, service: str) -> str:
    """How Traefik's Gateway API provider names a backend Service in its metrics (`service` label)."""
    return f"{namespace}-{service}-http-{SERVICE_PORT}@kubernetesgateway"


@dataclass(frozen=True)
class Signals:
    """Where one source keeps its request counter and latency histogram, which label tells the versions apart,
    and which label says a request was a server error."""

    requests: str
    latency: str
    side_label: str
    error_label: str
    is_error: Callable[[str], bool]


PREDICTOR = Signals(REQUESTS, LATENCY, "version", "outcome", lambda outcome: outcome == contract.PREDICTOR_SERVER_ERROR)
# A server error is the backend's 5xx, or the gateway's when it could not reach it.
TRAEFIK = Signals(TRAEFIK_REQUESTS, TRAEFIK_LATENCY, "service", "code", lambda code: code.startswith("5"))
# A server error is the model server's 5xx, or the queue-proxy's own when it could not reach it.
KNATIVE = Signals(KNATIVE_REQUESTS, KNATIVE_LATENCY, "revision", "http_response_status_code",
                  lambda code: code.startswith("5"))  # fmt: skip


def source_of(analysis: Analysis, serverless: bool) -> str:
    """The source the analysis reads: as set, else knative in Serverless mode and predictor in Standard mode."""
    return analysis.source or ("knative" if serverless else "predictor")


def knative_selector(namespace: str, revisions: list[str]) -> str:
    # Namespaces and revision names are DNS labels: nothing in them is special to a regular expression.
    return f'namespace="{namespace}",revision=~"' + "|".join(sorted(revisions)) + '"'


async def observe(
    prom: Metrics, analysis: Analysis, signals: Signals, sel: str, sides: dict[str, str], window_s: int
) -> dict[str, Side]:
    """Each version's Side over the window; `sides` maps the value of `signals.side_label` to the version."""
    window, by = f"{max(window_s, 1)}s", signals.side_label
    counts = await prom.query(
        analysis.prometheus.address,
        f"sum by ({by}, {signals.error_label}) (increase({signals.requests}{{{sel}}}[{window}]))",
    )
    buckets: list[tuple[dict[str, str], float]] = []
    if analysis.latency.enabled:
        buckets = await prom.query(
            analysis.prometheus.address, f"sum by (le, {by}) (increase({signals.latency}{{{sel}}}[{window}]))"
        )
    out = {}
    for key, version in sides.items():
        rows = [(m, v) for m, v in counts if m.get(by) == key and not math.isnan(v)]
        out[version] = Side(
            requests=sum(v for _, v in rows),
            server_errors=sum(v for m, v in rows if signals.is_error(m.get(signals.error_label, ""))),
            latency=histogram([(m.get("le", ""), v) for m, v in buckets if m.get(by) == key]),
        )
    return out


def histogram(rows: list[tuple[str, float]]) -> stats.Histogram:
    """A version's cumulative bucket counts (`le`, increase) as a stats.Histogram. increase() extrapolates
    each series on its own, so counts are made non-decreasing in the bound."""
    finite: list[tuple[float, float]] = []
    total = 0.0
    for le, value in rows:
        try:
            bound = float(le)
        except ValueError:
            continue
        if math.isnan(value):
            continue
        if math.isinf(bound):
            total = max(total, value)
        else:
            finite.append((bound, value))
    finite.sort()
    counts: list[float] = []
    for _, value in finite:
        counts.append(max(value, counts[-1] if counts else 0.0))
    total = max(total, counts[-1] if counts else 0.0)
    return stats.Histogram(tuple(b for b, _ in finite), tuple(counts), total)


async def observe_traefik(
    prom: Metrics, analysis: Analysis, namespace: str, services: dict[str, str], window_s: int
) -> dict[str, Side]:
    """Each version's Side from Traefik's per-backend metrics; `services` maps version to its Service."""
    labels = {traefik_service(namespace, svc): version for version, svc in services.items()}
    # Namespaces and Service names are DNS labels: nothing in them is special to a regular expression.
    sel = 'service=~"' + "|".join(sorted(labels)) + '"'
    return await observe(prom, analysis, TRAEFIK, sel, labels, window_s)


async def observe_knative(
    prom: Metrics, analysis: Analysis, namespace: str, revisions: dict[str, str | None], window_s: int
) -> dict[str, Side]:
    """Each version's Side from the queue-proxies of its revision; `revisions` maps version to revision (None:
    it has no ready revision yet, so nothing of it is counted)."""
    labels = {revision: version for version, revision in revisions.items() if revision}
    if not labels:
        return {}
    return await observe(prom, analysis, KNATIVE, knative_selector(namespace, list(labels)), labels, window_s)


async def observe_sides(
    prom: Metrics, analysis: Analysis, namespace: str, model: str, versions: tuple[str, str], window_s: int
) -> dict[str, Side]:
    return await observe(prom, analysis, PREDICTOR, selector(namespace, model), {v: v for v in versions}, window_s)


async def custom_value(prom: Metrics, analysis: Analysis, promql: str, version: str) -> float | None:
    rows = await prom.query(analysis.prometheus.address, promql.replace("{{version}}", version))
    values = [v for _, v in rows if math.isfinite(v)]
    return values[0] if values else None


async def observe_custom(
    prom: Metrics, analysis: Analysis, canary: str, stable: str
) -> dict[str, tuple[float | None, float | None]]:
    """Each custom metric's value for the canary, and for stable where the metric compares the two."""
    out: dict[str, tuple[float | None, float | None]] = {}
    for metric in analysis.custom_metrics:
        mine = await custom_value(prom, analysis, metric.query, canary)
        theirs = await custom_value(prom, analysis, metric.query, stable) if metric.relative_to_stable else None
        out[metric.name] = (mine, theirs)
    return out


def judge_custom(metric: CustomMetric, value: float | None, stable: float | None) -> tuple[Verdict, float | None]:
    """A custom metric's verdict and the figure held against its bounds: its value, or with relativeToStable
    the canary's value over stable's. A bound, not a statistical test: it spends none of the analysis' alpha."""
    if value is None or (metric.relative_to_stable and (stable is None or stable == 0)):
        return "Inconclusive", None
    figure = value / stable if metric.relative_to_stable and stable else value
    if (metric.min is not None and figure < metric.min) or (metric.max is not None and figure > metric.max):
        return "Regressed", figure
    return "Healthy", figure


def tests_that_roll_back(analysis: Analysis) -> int:
    """The statistical tests that share the analysis' alpha (custom metrics are bounds, not tests)."""
    return int(analysis.error_rate.enabled) + int(analysis.latency.enabled)


def error_rate_evidence(
    analysis: Analysis, canary: Side, stable: Side, alpha: float
) -> tuple[Verdict, str, dict[str, Any]]:
    r = stats.error_rate_test(
        stats.Proportion(canary.requests, canary.server_errors),
        stats.Proportion(stable.requests, stable.server_errors),
        alpha,
        analysis.min_requests,
        analysis.error_rate.margin,
    )
    return (
        r.verdict,
        f"errorRate {r.verdict}: {r.reason}",
        {
            "metric": "errorRate",
            "verdict": r.verdict,
            "canary": {"samples": round(canary.requests, 1), "value": round(r.canary.rate, 5)},
            "stable": {"samples": round(stable.requests, 1), "value": round(r.stable.rate, 5)},
            "effect": round(r.effect, 5),
            "interval": [round(max(r.interval[0], -1.0), 5), round(min(r.interval[1], 1.0), 5)],
            "pValue": round(r.p_value, 6),
            "margin": r.margin,
            "alpha": round(alpha, 6),
        },
    )


def latency_evidence(
    analysis: Analysis, canary: Side, stable: Side, alpha: float
) -> tuple[Verdict, str, dict[str, Any]]:
    lat = analysis.latency
    q = stats.latency_test(canary.latency, stable.latency, lat.quantile, lat.max_ratio, alpha, lat.min_samples)

    def side(h: stats.Histogram, value: float | None, bounds: tuple[float, float]) -> dict[str, Any]:
        # An unbounded side (no bound proven yet) has no interval: JSON has no infinity. (evaluate drops Nones.)
        out: dict[str, Any] = {"samples": round(h.total, 1), "value": None if value is None else round(value, 6)}
        if math.isfinite(bounds[1]):
            out["interval"] = [bounds[0], bounds[1]]
        return out

    name = f"latencyP{lat.quantile * 100:g}"
    return (
        q.verdict,
        f"latency p{lat.quantile * 100:g} {q.verdict}: {q.reason}",
        {
            "metric": name,
            "verdict": q.verdict,
            "canary": side(canary.latency, q.canary, q.canary_bounds),
            "stable": side(stable.latency, q.stable, q.stable_bounds),
            "effect": None if q.ratio is None or not math.isfinite(q.ratio) else round(q.ratio, 4),
            "margin": lat.max_ratio,
            "alpha": round(alpha, 6),
        },
    )


def evaluate(
    analysis: Analysis, canary: Side, stable: Side, custom: dict[str, tuple[float | None, float | None]]
) -> Outcome:
    """Pure: every enabled metric's verdict with its evidence, and the combined verdict. The tests that can roll
    back share falseRollbackRate (stats.split_alpha), so it bounds the whole analysis."""
    alpha = stats.split_alpha(analysis.false_rollback_rate, tests_that_roll_back(analysis))
    judged: list[tuple[Verdict, str, dict[str, Any]]] = []
    if analysis.error_rate.enabled:
        judged.append(error_rate_evidence(analysis, canary, stable, alpha))
    if analysis.latency.enabled:
        judged.append(latency_evidence(analysis, canary, stable, alpha))
    for metric in analysis.custom_metrics:
        value, theirs = custom.get(metric.name, (None, None))
        verdict, figure = judge_custom(metric, value, theirs)
        what = f"{value} vs stable's {theirs}" if metric.relative_to_stable else f"{value}"
        evidence: dict[str, Any] = {"metric": metric.name, "verdict": verdict, "canary": {"samples": 0, "value": value},
                                    "stable": {"samples": 0, "value": theirs}, "effect": figure}  # fmt: skip
        judged.append((verdict, f"{metric.name} {verdict}: {what}", evidence))
    evidence_list = [{k: v for k, v in e.items() if v is not None} for _, _, e in judged]
    for e in evidence_list:
        for key in ("canary", "stable"):
            e[key] = {k: v for k, v in e[key].items() if v is not None}
    return Outcome(stats.combine([v for v, _, _ in judged]), evidence_list, "; ".join(n for _, n, _ in judged))


async def analyze(
    prom: Metrics,
    analysis: Analysis,
    namespace: str,
    model: str,
    stable: str,
    canary: str,
    since: datetime,
    now: datetime,
    services: dict[str, str] | None = None,
    revisions: dict[str, str | None] | None = None,
    serverless: bool = False,
) -> Outcome:
    """`services` (version to predictor Service) is what the `traefik` source tells the versions apart by,
    `revisions` (version to Knative revision) what the `knative` source does."""
    window_s = int((now - since).total_seconds())
    source = source_of(analysis, serverless)
    try:
        if source == "traefik":
            sides = await observe_traefik(prom, analysis, namespace, services or {}, window_s)
        elif source == "knative":
            sides = await observe_knative(prom, analysis, namespace, revisions or {}, window_s)
        else:
            sides = await observe_sides(prom, analysis, namespace, model, (canary, stable), window_s)
        custom = await observe_custom(prom, analysis, canary, stable)
    except PrometheusError as e:
        return Outcome("Inconclusive", [], f"Prometheus unavailable, holding: {e}")
    return evaluate(analysis, sides.get(canary, Side()), sides.get(stable, Side()), custom)
