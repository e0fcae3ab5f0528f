"""The canary statistics, checked by simulation (seeded): the false-rollback bound holds for the whole analysis
however often it looks, regressions are caught, and the README's table is what the simulation says."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from slipway import stats
from slipway.stats import Histogram, Proportion, error_rate_test
from slipway_dev import stats_sim

ALPHA = 0.05
README = Path(__file__).resolve().parents[2] / "README.md"


def sampling_error(p: float, runs: int) -> float:
    return 3 * math.sqrt(p * (1 - p) / runs)


@pytest.fixture(scope="module")
def table() -> dict[str, stats_sim.Row]:
    return {r.label: r for r in stats_sim.rows()}


def test_the_readme_table_is_what_the_simulation_says(table: dict[str, stats_sim.Row]) -> None:
    text = README.read_text()
    assert stats_sim.readme_with(text, stats_sim.table(list(table.values()))) == text, (
        "README's analysis table is stale: run .venv/bin/python -m slipway_dev.stats_sim --write"
    )


def test_healthy_canaries_are_rolled_back_at_most_alpha_of_the_time_with_latency_on(
    table: dict[str, stats_sim.Row],
) -> None:
    for label in ("healthy, 0 % errors", "healthy, 1 % errors"):
        r = table[label]
        assert r.rolled_back <= ALPHA + sampling_error(ALPHA, r.runs)
        assert r.promoted > 0.9  # and they do end: the steps end on evidence, not only on the clock


def test_a_three_point_error_regression_is_promoted_in_at_most_one_percent_of_runs(
    table: dict[str, stats_sim.Row],
) -> None:
    for label in ("errors +3 points (0 % → 3 %)", "errors +3 points (1 % → 4 %)"):
        assert table[label].promoted <= 0.01


def test_regressions_beyond_the_margins_are_never_promoted(table: dict[str, stats_sim.Row]) -> None:
    for label in ("errors +10 points (1 % → 11 %)", "errors +30 points (0 % → 30 %)", "latency +100 %"):
        assert table[label].promoted == 0 and table[label].rolled_back > 0.95


def whole_analysis_rolls_back(rng: np.random.Generator, p: float, rps: float, share: float, looks: int) -> bool:
    """An A/A canary under the whole default analysis (error rate and latency sharing alpha, latency skewed and
    bucketed as the predictor's histogram), looked at every 10 s and never stopped early."""
    c, s = stats_sim.Side(), stats_sim.Side()
    probs = stats_sim.bucket_probabilities(1.0)
    for _ in range(looks):
        c.add(rng, int(rng.poisson(rps * share * 10)), p, probs)
        s.add(rng, int(rng.poisson(rps * (1 - share) * 10)), p, probs)
        if stats_sim.verdict(stats_sim.DEFAULTS, c, s) == "Regressed":
            return True
    return False


@pytest.mark.parametrize(("p", "rps", "share"), [(0.0, 10, 0.1), (0.01, 50, 0.1), (0.05, 200, 0.5)])
def test_the_whole_analysis_rolls_back_at_most_alpha_of_healthy_canaries_however_often_it_looks(
    p: float, rps: float, share: float
) -> None:
    # 3 x 400 A/A canaries at three traffic levels and base rates, 30 looks each whatever the verdict.
    rng = np.random.default_rng(int(p * 1000 + rps))
    runs = 400
    rolled_back = sum(whole_analysis_rolls_back(rng, p, rps, share, 30) for _ in range(runs))
    assert rolled_back / runs <= ALPHA + sampling_error(ALPHA, runs)


def look_forever(rng: np.random.Generator, p: float, rps: float, share: float, looks: int) -> bool:
    """An A/A canary looked at every 10 s and never stopped early: whether the error-rate test ever rejects."""
    c = s = Proportion(0, 0)
    for _ in range(looks):
        nc, ns = rng.poisson(rps * share * 10), rng.poisson(rps * (1 - share) * 10)
        c = Proportion(c.n + nc, c.errors + rng.binomial(nc, p))
        s = Proportion(s.n + ns, s.errors + rng.binomial(ns, p))
        if c.n and s.n and stats.error_rate_verdict(c, s, ALPHA, 0.02)[0] == "Regressed":
            return True
    return False


@pytest.mark.parametrize(("p", "rps", "share"), [(0.0, 5, 0.5), (0.01, 50, 0.1), (0.05, 50, 0.1), (0.2, 500, 0.5)])
def test_the_error_rate_bound_holds_however_often_it_looks(p: float, rps: float, share: float) -> None:
    # 400 A/A canaries at low and high traffic and base rates, 60 looks each, none stopped by a Healthy verdict.
    rng = np.random.default_rng(int(p * 1000 + rps))
    runs = 400
    rejected = sum(look_forever(rng, p, rps, share, 60) for _ in range(runs))
    assert rejected / runs <= ALPHA + sampling_error(ALPHA, runs)


def test_the_rate_confidence_sequence_covers_at_every_look_at_once() -> None:
    # A Bernoulli(0.03) stream: the interval from rate_log_e excludes the truth at some look in at most alpha of runs.
    rng = np.random.default_rng(3)
    runs, misses = 300, 0
    for _ in range(runs):
        x = n = 0
        for _ in range(50):
            n, x = n + 20, x + rng.binomial(20, 0.03)
            if stats.rate_log_e(x, n, 0.03) >= math.log(1 / ALPHA):
                misses += 1
                break
    assert misses / runs <= ALPHA + sampling_error(ALPHA, runs)


def test_no_verdict_without_enough_requests() -> None:
    r = error_rate_test(Proportion(10, 9), Proportion(1000, 0), ALPHA, 20, margin=0.02)
    assert r.verdict == "Inconclusive" and "20 needed" in r.reason


def test_counts_too_small_for_a_normal_approximation_still_decide_exactly() -> None:
    # 6 failures in 20 canary requests against none in 180: proven worse, no large-sample assumption needed.
    r = error_rate_test(Proportion(20, 6), Proportion(180, 0), ALPHA, 20, margin=0.02)
    assert r.verdict == "Regressed" and r.interval[0] > 0 and r.p_value < ALPHA


def test_a_better_canary_is_never_a_regression() -> None:
    r = error_rate_test(Proportion(1000, 0), Proportion(1000, 300), ALPHA, 20, margin=0.02)
    assert r.verdict == "Healthy" and r.effect < 0 and r.interval[1] < 0


def test_healthy_needs_the_whole_interval_below_the_margin() -> None:
    few = error_rate_test(Proportion(100, 0), Proportion(900, 0), ALPHA, 20, margin=0.02)
    many = error_rate_test(Proportion(3000, 0), Proportion(27000, 0), ALPHA, 20, margin=0.02)
    assert few.verdict == "Inconclusive" and few.interval[1] >= 0.02 and "margin" in few.reason
    assert many.verdict == "Healthy" and many.interval[1] < 0.02


@pytest.mark.parametrize("seed", range(20))
def test_the_verdict_is_what_the_interval_says(seed: int) -> None:
    rng = np.random.default_rng(seed)
    nc, ns = int(rng.integers(20, 3000)), int(rng.integers(20, 30000))
    c, s = Proportion(nc, int(rng.binomial(nc, 0.04))), Proportion(ns, int(rng.binomial(ns, 0.02)))
    r = error_rate_test(c, s, ALPHA, 20, margin=0.02)
    lo, hi = r.interval
    assert lo <= r.effect <= hi
    expected = "Regressed" if lo > 0 else "Healthy" if hi < 0.02 else "Inconclusive"
    assert r.verdict == expected


def test_interval_shrinks_with_data() -> None:
    small = error_rate_test(Proportion(100, 10), Proportion(900, 45), ALPHA, 20, margin=0.02)
    large = error_rate_test(Proportion(10000, 1000), Proportion(90000, 4500), ALPHA, 20, margin=0.02)
    assert large.interval[1] - large.interval[0] < small.interval[1] - small.interval[0]


def histogram(samples: np.ndarray, bounds: tuple[float, ...]) -> Histogram:
    counts = np.searchsorted(np.sort(samples), bounds, side="right")
    return Histogram(bounds, tuple(float(c) for c in counts), float(len(samples)))


def test_quantile_bounds_hold_the_true_quantile() -> None:
    rng = np.random.default_rng(5)
    bounds = stats_sim.DURATION_BUCKETS
    true_p95 = 0.004 + 0.010 * math.exp(1.6449 * 0.5)
    for n in (50, 500, 5000):
        lo, hi = stats.quantile_bounds(histogram(0.004 + rng.lognormal(math.log(0.010), 0.5, n), bounds), 0.95, ALPHA)
        assert lo < true_p95 <= hi or (lo < true_p95 and hi == math.inf)
    assert hi / lo < 1.4  # 5000 requests pin it to a few of the E24 buckets


def test_histogram_estimate_interpolates_as_histogram_quantile_does() -> None:
    h = Histogram((0.1, 0.2), (50.0, 100.0), 100.0)
    assert h.estimate(0.75) == pytest.approx(0.15)
    assert Histogram((), (), 0.0).estimate(0.5) is None


def test_latency_regression_and_health_need_proof_beyond_and_within_the_margin() -> None:
    rng = np.random.default_rng(9)
    bounds = stats_sim.DURATION_BUCKETS
    stable = histogram(0.004 + rng.lognormal(math.log(0.010), 0.5, 20000), bounds)
    same = histogram(0.004 + rng.lognormal(math.log(0.010), 0.5, 3000), bounds)
    double = histogram(2 * (0.004 + rng.lognormal(math.log(0.010), 0.5, 3000)), bounds)
    assert stats.latency_test(same, stable, 0.95, 1.5, ALPHA, 100).verdict == "Healthy"
    slow = stats.latency_test(double, stable, 0.95, 1.5, ALPHA, 100)
    assert slow.verdict == "Regressed" and slow.canary_bounds[0] > 1.5 * slow.stable_bounds[1]
    assert stats.latency_test(same, stable, 0.95, 1.5, ALPHA, 5000).verdict == "Inconclusive"


def test_buckets_too_wide_for_the_margin_only_look_for_a_regression() -> None:
    rng = np.random.default_rng(4)
    coarse = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # 1-2.5-5 steps
    stable = histogram(0.004 + rng.lognormal(math.log(0.010), 0.5, 20000), coarse)
    same = histogram(0.004 + rng.lognormal(math.log(0.010), 0.5, 3000), coarse)
    r = stats.latency_test(same, stable, 0.95, 1.5, ALPHA, 100)
    assert r.coarse and r.verdict == "Healthy" and "too wide" in r.reason


def test_one_alpha_is_split_between_the_tests() -> None:
    assert stats.split_alpha(0.05, 2) == 0.025 and stats.split_alpha(0.05, 0) == 0.05


@pytest.mark.parametrize(
    ("verdicts", "combined"),
    [(["Healthy", "Healthy"], "Healthy"), (["Healthy", "Inconclusive"], "Inconclusive"),
     (["Inconclusive", "Regressed"], "Regressed"), ([], "Inconclusive")],
)  # fmt: skip
def test_combine(verdicts: list[stats.Verdict], combined: str) -> None:
    assert stats.combine(verdicts) == combined
