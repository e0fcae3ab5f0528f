"""The canary statistics, checked by simulation: the false-rollback bound holds however often we look,
and regressions of the documented sizes are caught in the documented time."""

from __future__ import annotations

import math

import numpy as np
import pytest
from slipway import stats
from slipway.stats import Proportion, error_rate_test

ALPHA = 0.05
RPS, CANARY_SHARE, INTERVAL = 50, 0.10, 2  # the benchmark's setting: 50 req/s, 10 % canary, a look every 2 s


def run(p_stable: float, p_canary: float, looks: int, rng: np.random.Generator, min_requests: int = 20) -> int | None:
    """One simulated canary analysed at every interval; the look at which it was rolled back, if any."""
    cn = ce = sn = se = 0
    for look in range(1, looks + 1):
        n_c, n_s = rng.poisson(RPS * CANARY_SHARE * INTERVAL), rng.poisson(RPS * (1 - CANARY_SHARE) * INTERVAL)
        cn, sn = cn + n_c, sn + n_s
        ce, se = ce + rng.binomial(n_c, p_canary), se + rng.binomial(n_s, p_stable)
        if error_rate_test(Proportion(cn, ce), Proportion(sn, se), ALPHA, min_requests).verdict == "Regressed":
            return look
    return None


@pytest.mark.parametrize("p", [0.0, 0.01, 0.05])
def test_healthy_canaries_are_rarely_rolled_back_however_often_we_look(p: float) -> None:
    # 1000 A/A canaries, each looked at 30 times (a minute of analysis every 2 s).
    rng = np.random.default_rng(7)
    runs = 1000
    rollbacks = sum(run(p, p, 30, rng) is not None for _ in range(runs))
    sampling_error = 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)
    assert rollbacks / runs <= ALPHA + sampling_error


@pytest.mark.parametrize(
    ("p_stable", "p_canary", "median_s", "p95_s"),
    [
        (0.0, 0.30, 10, 16),  # a version failing on 30 % of its inputs
        (0.01, 0.20, 14, 24),
        (0.05, 0.10, 100, 200),  # a 2x regression of a 5 % error rate
    ],
)
def test_regressions_are_caught_within_the_documented_time(
    p_stable: float, p_canary: float, median_s: float, p95_s: float
) -> None:
    rng = np.random.default_rng(11)
    looks = [run(p_stable, p_canary, 150, rng) for _ in range(200)]
    seconds = np.array([INTERVAL * (k if k is not None else 10**6) for k in looks])
    assert np.median(seconds) <= median_s and np.percentile(seconds, 95) <= p95_s


def test_no_verdict_without_enough_requests() -> None:
    r = error_rate_test(Proportion(10, 9), Proportion(1000, 0), ALPHA, 20)
    assert r.verdict == "Inconclusive" and "20 needed" in r.reason


def test_a_better_canary_is_never_a_regression() -> None:
    r = error_rate_test(Proportion(1000, 0), Proportion(1000, 300), ALPHA, 20)
    assert r.verdict == "Healthy" and r.effect < 0 and r.p_value < ALPHA


def test_interval_contains_the_effect_and_shrinks_with_data() -> None:
    small = error_rate_test(Proportion(100, 10), Proportion(900, 45), ALPHA, 20)
    large = error_rate_test(Proportion(10000, 1000), Proportion(90000, 4500), ALPHA, 20)
    for r in (small, large):
        assert r.interval[0] < r.effect < r.interval[1]
    assert large.interval[1] - large.interval[0] < small.interval[1] - small.interval[0]


def test_mixture_is_one_at_zero_effect_limit() -> None:
    assert stats.mixture_lambda(0.0, 1e9) == pytest.approx(1.0, rel=1e-6)
    assert stats.mixture_lambda(0.0, 1e-4) < 1.0


@pytest.mark.parametrize(
    ("canary", "stable", "n", "verdict"),
    [
        (0.2, 0.1, 200, "Regressed"),
        (0.11, 0.1, 200, "Healthy"),
        (0.2, 0.1, 5, "Inconclusive"),
        (None, 0.1, 200, "Inconclusive"),
    ],
)
def test_latency_ratio(canary: float | None, stable: float, n: int, verdict: str) -> None:
    assert stats.latency_ratio(canary, stable, n, n, 1.5, 100).verdict == verdict


@pytest.mark.parametrize(
    ("verdicts", "combined"),
    [(["Healthy", "Healthy"], "Healthy"), (["Healthy", "Inconclusive"], "Inconclusive"),
     (["Inconclusive", "Regressed"], "Regressed"), ([], "Inconclusive")],
)  # fmt: skip
def test_combine(verdicts: list[stats.Verdict], combined: str) -> None:
    assert stats.combine(verdicts) == combined
