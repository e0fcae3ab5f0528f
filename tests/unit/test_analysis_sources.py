"""Where canary analysis reads its per-version counts: the predictor's metrics or the data plane's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slipway import analysis
from slipway.api.rollout import Analysis


def settings(**extra: Any) -> Analysis:
    return Analysis.model_validate({"prometheus": {"address": "http://127.0.0.1:9"}, **extra})


def test_traefik_names_a_backend_service_as_its_gateway_provider_does() -> None:
    assert analysis.traefik_service("ns", "iris-v2-predictor") == "ns-iris-v2-predictor-http-80@kubernetesgateway"


@pytest.mark.asyncio
async def test_traefik_source_counts_each_versions_service_and_its_5xx(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    stable, canary = analysis.traefik_service("ns", "m-v1-predictor"), analysis.traefik_service("ns", "m-v2-predictor")

    async def fake(address: str, promql: str, timeout: float = 5.0) -> list[tuple[dict[str, str], float]]:
        asked.append(promql)
        if promql.startswith("histogram_quantile"):
            return [({"service": stable}, 0.02), ({"service": canary}, 0.05)]
        return [
            ({"service": stable, "code": "200"}, 900.0),
            ({"service": stable, "code": "404"}, 10.0),  # the client's mistake, not the version's
            ({"service": canary, "code": "200"}, 70.0),
            ({"service": canary, "code": "500"}, 25.0),
            ({"service": canary, "code": "503"}, 5.0),  # the gateway found no ready backend
            ({"service": "ns-other-http-80@kubernetesgateway", "code": "500"}, 1000.0),
        ]

    monkeypatch.setattr(analysis, "query", fake)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    services = {"v1": "m-v1-predictor", "v2": "m-v2-predictor"}
    out = await analysis.analyze(settings(source="traefik"), "ns", "m", "v1", "v2", now - timedelta(seconds=30),
                                 now, services)  # fmt: skip
    assert f'{{service=~"{stable}|{canary}"}}' in asked[0]
    assert "traefik_service_requests_total" in asked[0] and "[30s]" in asked[0]
    error = next(e for e in out.evidence if e["metric"] == "errorRate")
    assert error["canary"] == {"samples": 100.0, "value": 0.3}
    assert error["stable"] == {"samples": 910.0, "value": 0.0}
    assert out.verdict == "Regressed"
    latency = next(e for e in out.evidence if e["metric"].startswith("latency"))
    assert latency["canary"]["value"] == 0.05 and latency["stable"]["value"] == 0.02


@pytest.mark.asyncio
async def test_predictor_source_stays_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    async def fake(address: str, promql: str, timeout: float = 5.0) -> list[tuple[dict[str, str], float]]:
        asked.append(promql)
        return []

    monkeypatch.setattr(analysis, "query", fake)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    out = await analysis.analyze(settings(), "ns", "m", "v1", "v2", now - timedelta(seconds=5), now)
    assert out.verdict == "Inconclusive"
    assert asked and all("slipway_predictor_" in q for q in asked)
