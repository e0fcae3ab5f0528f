"""Where canary analysis reads its per-version counts: the predictor's metrics or the data plane's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slipway import analysis
from slipway.api.rollout import Analysis

from tests.unit.fakes import QueryFunction


def settings(**extra: Any) -> Analysis:
    return Analysis.model_validate({"prometheus": {"address": "http://127.0.0.1:9"}, **extra})


def test_traefik_names_a_backend_service_as_its_gateway_provider_does() -> None:
    assert analysis.traefik_service("ns", "iris-v2-predictor") == "ns-iris-v2-predictor-http-80@kubernetesgateway"


@pytest.mark.asyncio
async def test_traefik_source_counts_each_versions_service_and_its_5xx() -> None:
    asked: list[str] = []
    stable, canary = analysis.traefik_service("ns", "m-v1-predictor"), analysis.traefik_service("ns", "m-v2-predictor")

    async def fake(address: str, promql: str) -> list[tuple[dict[str, str], float]]:
        asked.append(promql)
        if "_bucket" in promql:  # stable's requests all within 20 ms, canary's all in (20, 50] ms
            return [({"service": stable, "le": "0.02"}, 910.0), ({"service": stable, "le": "0.05"}, 910.0),
                    ({"service": stable, "le": "+Inf"}, 910.0), ({"service": canary, "le": "0.02"}, 0.0),
                    ({"service": canary, "le": "0.05"}, 100.0), ({"service": canary, "le": "+Inf"}, 100.0)]  # fmt: skip
        return [
            ({"service": stable, "code": "200"}, 900.0),
            ({"service": stable, "code": "404"}, 10.0),  # the client's mistake, not the version's
            ({"service": canary, "code": "200"}, 70.0),
            ({"service": canary, "code": "500"}, 25.0),
            ({"service": canary, "code": "503"}, 5.0),  # the gateway found no ready backend
            ({"service": "ns-other-http-80@kubernetesgateway", "code": "500"}, 1000.0),
        ]

    prom = QueryFunction(fake)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    services = {"v1": "m-v1-predictor", "v2": "m-v2-predictor"}
    out = await analysis.analyze(prom, settings(source="traefik"), "ns", "m", "v1", "v2", now - timedelta(seconds=30),
                                 now, services)  # fmt: skip
    assert f'{{service=~"{stable}|{canary}"}}' in asked[0]
    assert "traefik_service_requests_total" in asked[0] and "[30s]" in asked[0]
    error = next(e for e in out.evidence if e["metric"] == "errorRate")
    assert error["canary"] == {"samples": 100.0, "value": 0.3}
    assert error["stable"] == {"samples": 910.0, "value": 0.0}
    assert out.verdict == "Regressed"
    latency = next(e for e in out.evidence if e["metric"].startswith("latency"))
    assert latency["canary"]["samples"] == 100.0 and latency["stable"]["samples"] == 910.0
    # 910 requests prove stable's p95 at most 20 ms; 100 are too few to bound the canary's from above.
    assert latency["stable"]["interval"] == [0.0, 0.02] and "interval" not in latency["canary"]
    assert latency["canary"]["value"] > latency["stable"]["value"]


@pytest.mark.asyncio
async def test_predictor_source_stays_the_default() -> None:
    asked: list[str] = []

    async def fake(address: str, promql: str) -> list[tuple[dict[str, str], float]]:
        asked.append(promql)
        return []

    prom = QueryFunction(fake)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    out = await analysis.analyze(prom, settings(), "ns", "m", "v1", "v2", now - timedelta(seconds=5), now)
    assert out.verdict == "Inconclusive"
    assert asked and all("slipway_predictor_" in q for q in asked)


def test_histogram_rows_become_cumulative_counts_in_bound_order() -> None:
    # increase() extrapolates each bucket series on its own: a higher bound can come out a little lower.
    h = analysis.histogram([("+Inf", 10.0), ("0.5", 9.9), ("0.1", 4.0), ("0.25", 3.9), ("nonsense", 1.0)])
    assert h.bounds == (0.1, 0.25, 0.5) and h.counts == (4.0, 4.0, 9.9) and h.total == 10.0


def test_one_alpha_is_shared_by_the_tests_that_roll_back() -> None:
    both = analysis.evaluate(settings(), analysis.Side(1000, 0), analysis.Side(9000, 0), {})
    alone = analysis.evaluate(settings(latency={"enabled": False}), analysis.Side(1000, 0), analysis.Side(9000, 0), {})
    assert [e["alpha"] for e in both.evidence] == [0.025, 0.025]
    assert [e["alpha"] for e in alone.evidence] == [0.05]


@pytest.mark.parametrize(
    ("canary", "stable", "verdict", "figure"),
    [(1.05, 1.0, "Healthy", 1.05), (1.3, 1.0, "Regressed", 1.3), (1.0, None, "Inconclusive", None),
     (1.0, 0.0, "Inconclusive", None)],
)  # fmt: skip
def test_a_custom_metric_can_be_held_against_stables_value(
    canary: float, stable: float | None, verdict: str, figure: float | None
) -> None:
    metric = settings(customMetrics=[{"name": "p", "query": "q", "max": 1.1, "relativeToStable": True}])
    assert analysis.judge_custom(metric.custom_metrics[0], canary, stable) == (verdict, figure)


@pytest.mark.asyncio
async def test_a_relative_custom_metric_asks_for_both_versions() -> None:
    asked: list[str] = []

    async def fake(address: str, promql: str) -> list[tuple[dict[str, str], float]]:
        asked.append(promql)
        return [({}, 2.0 if "v2" in promql else 1.0)]

    prom = QueryFunction(fake)
    metric = settings(customMetrics=[{"name": "p", "query": 'x{version="{{version}}"}', "max": 1.5,
                                      "relativeToStable": True}])  # fmt: skip
    assert await analysis.observe_custom(prom, metric, "v2", "v1") == {"p": (2.0, 1.0)}
    assert asked == ['x{version="v2"}', 'x{version="v1"}']
