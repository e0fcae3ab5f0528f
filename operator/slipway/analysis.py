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

from slipway import stats
from slipway.api.rollout import Analysis
from slipway.stats import Verdict

REQUESTS = "slipway_predictor_requests_total"
LATENCY = "slipway_predictor_request_duration_seconds_bucket"
TRAEFIK_REQUESTS = "traefik_service_requests_total"
TRAEFIK_LATENCY = "traefik_service_request_duration_seconds_bucket"
KNATIVE_REQUESTS = "kn_serving_invocation_duration_seconds_count"
KNATIVE_LATENCY = "kn_serving_invocation_duration_seconds_bucket"
SERVICE_PORT = 80  # KServe's predictor Services listen on 80


class PrometheusError(Exception):
    """Prometheus could not be asked (unreachable, bad answer, failed query)."""


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    evidence: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""


async def query(address: str, promql: str, timeout: float = 5.0) -> list[tuple[dict[str, str], float]]:
    """An instant query: (labels, value) per series."""
    url = address.rstrip("/") + "/api/v1/query"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url, params={"query": promql}) as resp,
        ):
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        raise PrometheusError(f"{address}: {type(e).__name__}: {e}") from e
    if body.get("status") != "success":
        raise PrometheusError(f"query failed: {body.get('error', body)}")
    return [(r.get("metric", {}), float(r["value"][1])) for r in body["data"]["result"]]


@dataclass(frozen=True)
class Side:
    """What Prometheus says about one version over the window."""

    requests: float = 0.0
    server_errors: float = 0.0
    latency_q: float | None = None


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


PREDICTOR = Signals(REQUESTS, LATENCY, "version", "outcome", lambda outcome: outcome == "server_error")
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
    analysis: Analysis, signals: Signals, sel: str, sides: dict[str, str], window_s: int
) -> dict[str, Side]:
    """Each version's Side over the window; `sides` maps the value of `signals.side_label` to the version."""
    window, by = f"{max(window_s, 1)}s", signals.side_label
    counts = await query(
        analysis.prometheus.address,
        f"sum by ({by}, {signals.error_label}) (increase({signals.requests}{{{sel}}}[{window}]))",
    )
    quantiles: list[tuple[dict[str, str], float]] = []
    if analysis.latency.enabled:
        quantiles = await query(
            analysis.prometheus.address,
            f"histogram_quantile({analysis.latency.quantile}, "
            f"sum by (le, {by}) (increase({signals.latency}{{{sel}}}[{window}])))",
        )
    out = {}
    for key, version in sides.items():
        rows = [(m, v) for m, v in counts if m.get(by) == key and not math.isnan(v)]
        lat = [v for m, v in quantiles if m.get(by) == key and math.isfinite(v)]
        out[version] = Side(
            requests=sum(v for _, v in rows),
            server_errors=sum(v for m, v in rows if signals.is_error(m.get(signals.error_label, ""))),
            latency_q=lat[0] if lat else None,
        )
    return out


async def observe_traefik(
    analysis: Analysis, namespace: str, services: dict[str, str], window_s: int
) -> dict[str, Side]:
    """Each version's Side from Traefik's per-backend metrics; `services` maps version to its Service."""
    labels = {traefik_service(namespace, svc): version for version, svc in services.items()}
    # Namespaces and Service names are DNS labels: nothing in them is special to a regular expression.
    sel = 'service=~"' + "|".join(sorted(labels)) + '"'
    return await observe(analysis, TRAEFIK, sel, labels, window_s)


async def observe_knative(
    analysis: Analysis, namespace: str, revisions: dict[str, str | None], window_s: int
) -> dict[str, Side]:
    """Each version's Side from the queue-proxies of its revision; `revisions` maps version to revision (None:
    it has no ready revision yet, so nothing of it is counted)."""
    labels = {revision: version for version, revision in revisions.items() if revision}
    if not labels:
        return {}
    return await observe(analysis, KNATIVE, knative_selector(namespace, list(labels)), labels, window_s)


async def observe_sides(
    analysis: Analysis, namespace: str, model: str, versions: tuple[str, str], window_s: int
) -> dict[str, Side]:
    return await observe(analysis, PREDICTOR, selector(namespace, model), {v: v for v in versions}, window_s)


async def observe_custom(analysis: Analysis, canary: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for metric in analysis.custom_metrics:
        rows = await query(analysis.prometheus.address, metric.query.replace("{{version}}", canary))
        values = [v for _, v in rows if math.isfinite(v)]
        out[metric.name] = values[0] if values else None
    return out


def evaluate(analysis: Analysis, canary: Side, stable: Side, custom: dict[str, float | None]) -> Outcome:
    """Pure: every enabled metric's verdict with its evidence, and the combined verdict."""
    verdicts: list[Verdict] = []
    evidence: list[dict[str, Any]] = []
    notes: list[str] = []
    if analysis.error_rate.enabled:
        r = stats.error_rate_test(
            stats.Proportion(canary.requests, canary.server_errors),
            stats.Proportion(stable.requests, stable.server_errors),
            analysis.false_rollback_rate,
            analysis.min_requests,
        )
        verdicts.append(r.verdict)
        notes.append(f"errorRate {r.verdict}: {r.reason}")
        evidence.append(
            {
                "metric": "errorRate",
                "verdict": r.verdict,
                "canary": {"samples": round(canary.requests, 1), "value": round(r.canary.rate, 5)},
                "stable": {"samples": round(stable.requests, 1), "value": round(r.stable.rate, 5)},
                "effect": round(r.effect, 5),
                "interval": [round(max(r.interval[0], -1.0), 5), round(min(r.interval[1], 1.0), 5)],
                "pValue": round(r.p_value, 6),
            }
        )
    if analysis.latency.enabled:
        lat = analysis.latency
        q = stats.latency_ratio(canary.latency_q, stable.latency_q, canary.requests, stable.requests,
                                lat.max_ratio, lat.min_samples)  # fmt: skip
        verdicts.append(q.verdict)
        notes.append(f"latency p{lat.quantile * 100:g} {q.verdict}: {q.reason}")
        evidence.append(
            {
                "metric": f"latencyP{lat.quantile * 100:g}",
                "verdict": q.verdict,
                "canary": {"samples": round(canary.requests, 1), "value": q.canary},
                "stable": {"samples": round(stable.requests, 1), "value": q.stable},
                "effect": None if q.ratio is None or not math.isfinite(q.ratio) else round(q.ratio, 4),
            }
        )
    for metric in analysis.custom_metrics:
        value = custom.get(metric.name)
        if value is None:
            verdict: Verdict = "Inconclusive"
        elif (metric.min is not None and value < metric.min) or (metric.max is not None and value > metric.max):
            verdict = "Regressed"
        else:
            verdict = "Healthy"
        verdicts.append(verdict)
        notes.append(f"{metric.name} {verdict}: {value}")
        evidence.append({"metric": metric.name, "verdict": verdict, "canary": {"samples": 0, "value": value},
                         "stable": {"samples": 0}})  # fmt: skip
    return Outcome(stats.combine(verdicts), [{k: v for k, v in e.items() if v is not None} for e in evidence],
                   "; ".join(notes))  # fmt: skip


async def analyze(
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
            sides = await observe_traefik(analysis, namespace, services or {}, window_s)
        elif source == "knative":
            sides = await observe_knative(analysis, namespace, revisions or {}, window_s)
        else:
            sides = await observe_sides(analysis, namespace, model, (canary, stable), window_s)
        custom = await observe_custom(analysis, canary)
    except PrometheusError as e:
        return Outcome("Inconclusive", [], f"Prometheus unavailable, holding: {e}")
    return evaluate(analysis, sides.get(canary, Side()), sides.get(stable, Side()), custom)
