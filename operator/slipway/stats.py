"""Canary statistics: exact, count-based tests that stay valid however often they are looked at.

Every request is a Bernoulli outcome on its version (failed or not; slower than a histogram bound or not), and
the analysis sees cumulative counts since the canary started. Each test is an **e-process** built from those
counts alone (no normal approximation, so it holds at 3 requests as at 3 million, and no state between looks, so
an operator restart changes nothing):

    E = m(data) / sup over the null of L(data)

where m is the likelihood averaged over a Beta(1/2, 1/2) prior on each version's rate (a Bayesian mixture) and L
the likelihood. For any fixed rates in the null, m / L is a non-negative martingale with mean 1 however requests
are split between the versions (the split may change at every step), and E is at most that martingale; by
Ville's inequality the chance that E ever reaches 1/alpha is at most alpha, at any number and timing of looks
("universal inference", Wasserman, Ramdas & Balakrishnan 2020; the sequential form, Ramdas et al. 2023).
Inverting the test over the effect gives an always-valid confidence interval.

- Error rate: the difference d = canary rate - stable rate. Regressed when the interval lies above 0 (the
  canary is proven worse); Healthy when it lies below the declared margin (proven no worse than it); otherwise
  Inconclusive, which holds the step.
- Latency: confidence bounds for each version's quantile read off its histogram: at each bucket bound b, the
  rate of requests slower than b has an always-valid interval; where it is proven above 1-q the quantile is
  above b, where proven below it is at most b (one alpha shared over the bounds). Regressed when the canary's
  lower bound is above max_ratio times stable's upper bound; Healthy when the canary's upper bound is at most
  max_ratio times stable's lower bound. A histogram resolves latency to its buckets, never finer: where the
  buckets around stable's quantile are wider than max_ratio, no data can prove the canary within it, and the
  test only looks for a regression beyond it (and says so).
- One alpha for the whole analysis: it is split between the tests that can roll back (split_alpha), so the
  chance that any of them rolls back a healthy canary stays at most alpha.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["Healthy", "Regressed", "Inconclusive"]
PRIOR = (0.5, 0.5)  # Jeffreys' Beta prior of the mixture: no rate favoured, mass near 0 and 1 where errors live
BISECTIONS = 50


@dataclass(frozen=True)
class Proportion:
    n: float  # requests (Prometheus' increase() gives fractions: kept as float)
    errors: float

    @property
    def rate(self) -> float:
        return self.errors / self.n if self.n > 0 else 0.0


def xlogy(x: float, y: float) -> float:
    """x * log(y) with 0 * log(0) = 0, and -inf for x > 0 at y <= 0."""
    if x <= 0:
        return 0.0
    return x * math.log(y) if y > 0 else -math.inf


def log_lik(p: float, x: float, n: float) -> float:
    """Log-likelihood of x events in n Bernoulli trials of rate p, for the sequence (no binomial coefficient,
    which cancels in every ratio here)."""
    return xlogy(x, p) + xlogy(n - x, 1.0 - p)


def lbeta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def log_marginal(x: float, n: float) -> float:
    """Log of the likelihood averaged over the Beta prior: the mixture numerator of every e-process here."""
    a, b = PRIOR
    return lbeta(a + x, b + n - x) - LBETA_PRIOR


LBETA_PRIOR = lbeta(*PRIOR)


def rate_log_e(x: float, n: float, p0: float) -> float:
    """Log e-value against "the rate is p0" after x events in n trials."""
    return log_marginal(x, n) - log_lik(p0, x, n)


def profile(d: float, c: Proportion, s: Proportion) -> float:
    """The highest joint log-likelihood with canary rate = stable rate + d. The log-likelihood is concave in the
    stable rate along that line, so its slope is decreasing and bisection finds the top."""
    lo, hi = max(0.0, -d), min(1.0, 1.0 - d)

    def joint(ps: float) -> float:
        return log_lik(ps + d, c.errors, c.n) + log_lik(ps, s.errors, s.n)

    def slope(ps: float) -> float:
        pc = ps + d
        return c.errors / pc - (c.n - c.errors) / (1 - pc) + s.errors / ps - (s.n - s.errors) / (1 - ps)

    a, b = lo, hi
    for _ in range(BISECTIONS):
        mid = (a + b) / 2
        if mid <= lo or mid >= hi:
            break
        a, b = (mid, b) if slope(mid) > 0 else (a, mid)
    return max(joint((a + b) / 2), joint(lo), joint(hi))


def mixture(c: Proportion, s: Proportion) -> float:
    return log_marginal(c.errors, c.n) + log_marginal(s.errors, s.n)


def difference_interval(c: Proportion, s: Proportion, alpha: float) -> tuple[float, float]:
    """Always-valid (1 - alpha) confidence interval of canary rate - stable rate: every d whose e-value is
    below 1/alpha. The profile is concave in d, so the interval is one piece around the observed difference."""
    floor = mixture(c, s) + math.log(alpha)
    d_hat = c.rate - s.rate

    def edge(toward: float) -> float:
        if profile(toward, c, s) >= floor:
            return toward
        inside, outside = d_hat, toward
        for _ in range(BISECTIONS):
            mid = (inside + outside) / 2
            inside, outside = (mid, outside) if profile(mid, c, s) >= floor else (inside, mid)
        return outside

    return edge(-1.0), edge(1.0)


@dataclass(frozen=True)
class ErrorRateResult:
    verdict: Verdict
    canary: Proportion
    stable: Proportion
    effect: float  # canary rate minus stable rate
    interval: tuple[float, float]  # always-valid (1 - alpha) confidence interval of the effect
    p_value: float  # always-valid p-value of "the canary errs no more than stable" at this look
    margin: float
    alpha: float
    reason: str


def error_rate_verdict(c: Proportion, s: Proportion, alpha: float, margin: float) -> tuple[Verdict, float]:
    """The verdict and the log e-value against "the canary errs no more than stable". Only the two null
    boundaries that matter are evaluated: cheap enough to simulate thousands of canaries."""
    total = mixture(c, s)
    floor, d_hat, log_e = total + math.log(alpha), c.rate - s.rate, 0.0
    if d_hat > 0:
        at_zero = profile(0.0, c, s)
        log_e = total - at_zero
        if at_zero < floor:
            return "Regressed", log_e
    if d_hat < margin and profile(margin, c, s) < floor:
        return "Healthy", log_e
    return "Inconclusive", log_e


def error_rate_test(
    canary: Proportion, stable: Proportion, alpha: float, min_requests: float, margin: float
) -> ErrorRateResult:
    """Regressed when the canary is proven to err more than stable; Healthy when proven to err at most `margin`
    (in rate points) more; Inconclusive otherwise, or while either side has fewer than min_requests."""
    if canary.n < min_requests or stable.n < min_requests:
        reason = f"{canary.n:.0f} canary and {stable.n:.0f} stable requests; {min_requests:.0f} needed on each"
        return ErrorRateResult("Inconclusive", canary, stable, canary.rate - stable.rate, (-1.0, 1.0), 1.0,
                               margin, alpha, reason)  # fmt: skip
    verdict, log_e = error_rate_verdict(canary, stable, alpha, margin)
    lo, hi = difference_interval(canary, stable, alpha)
    p = min(1.0, math.exp(-log_e))
    summary = (f"canary {canary.rate:.2%} of {canary.n:.0f} vs stable {stable.rate:.2%} of {stable.n:.0f}: "
               f"difference in [{lo:+.2%}, {hi:+.2%}] at {1 - alpha:.4g}")  # fmt: skip
    said = {
        "Regressed": f"{summary}, proven worse (p={p:.2g})",
        "Healthy": f"{summary}, proven within the {margin:.2%} margin",
        "Inconclusive": f"{summary}: neither worse nor within the {margin:.2%} margin yet",
    }[verdict]
    return ErrorRateResult(verdict, canary, stable, canary.rate - stable.rate, (lo, hi), p, margin, alpha, said)


@dataclass(frozen=True)
class Histogram:
    """One version's request durations: cumulative counts at the finite bucket bounds (Prometheus' `le`), and
    the total (`le="+Inf"`)."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    total: float

    def estimate(self, q: float) -> float | None:
        """The quantile interpolated within its bucket, as PromQL's histogram_quantile does (for display)."""
        if self.total <= 0:
            return None
        rank, below, prev = q * self.total, 0.0, 0.0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            if count >= rank:
                inside = count - below
                return prev + (bound - prev) * ((rank - below) / inside if inside > 0 else 1.0)
            below, prev = count, bound
        return self.bounds[-1] if self.bounds else None


def quantile_bounds(h: Histogram, q: float, alpha: float) -> tuple[float, float]:
    """Always-valid bounds (lo, hi] of the q-quantile, at the resolution of the bucket bounds: lo the highest
    bound the quantile is proven above (0 if none), hi the lowest it is proven at or below (inf if none). The
    rate of requests slower than each bound gets alpha / (number of bounds)."""
    if h.total <= 0:
        return 0.0, math.inf
    tail, threshold = 1.0 - q, math.log(max(len(h.bounds), 1) / alpha)
    shares = [(bound, h.total - count) for bound, count in zip(h.bounds, h.counts, strict=True)]
    # From the quantile outwards: the first bound proven on each side is the tightest bound.
    above = [(b, x) for b, x in reversed(shares) if x / h.total > tail]
    below = [(b, x) for b, x in shares if x / h.total < tail]
    lo = next((b for b, x in above if rate_log_e(x, h.total, tail) >= threshold), 0.0)
    hi = next((b for b, x in below if rate_log_e(x, h.total, tail) >= threshold), math.inf)
    return lo, hi


@dataclass(frozen=True)
class LatencyResult:
    verdict: Verdict
    canary: float | None  # interpolated quantile, for display
    stable: float | None
    canary_bounds: tuple[float, float]
    stable_bounds: tuple[float, float]
    ratio: float | None  # of the interpolated quantiles, for display
    alpha: float
    coarse: bool  # the buckets cannot prove max_ratio: only a regression beyond it is looked for
    reason: str


def too_coarse(h: Histogram, q: float, max_ratio: float) -> bool:
    """Whether the buckets around the quantile are too wide for any amount of data to prove the canary within
    max_ratio: at best its upper bound is the bound above the quantile and stable's lower bound the one below."""
    estimate = h.estimate(q)
    if estimate is None:
        return False
    above = next((b for b in h.bounds if b >= estimate), math.inf)
    below = max((b for b in h.bounds if b < estimate), default=0.0)
    return above > max_ratio * below


def latency_verdict(c: Histogram, s: Histogram, q: float, max_ratio: float, alpha: float) -> Verdict:
    c_b, s_b = quantile_bounds(c, q, alpha / 2), quantile_bounds(s, q, alpha / 2)
    return judge_latency(c_b, s_b, max_ratio, too_coarse(s, q, max_ratio))


def judge_latency(canary: tuple[float, float], stable: tuple[float, float], max_ratio: float, coarse: bool) -> Verdict:
    """The verdict from the two quantiles' bounds; `coarse`: stable's buckets cannot prove max_ratio."""
    (c_lo, c_hi), (s_lo, s_hi) = canary, stable
    if c_lo > max_ratio * s_hi:
        return "Regressed"
    if c_hi <= max_ratio * s_lo or coarse:
        return "Healthy"
    return "Inconclusive"


def latency_test(
    canary: Histogram, stable: Histogram, q: float, max_ratio: float, alpha: float, min_samples: float
) -> LatencyResult:
    """Regressed when the canary's q-quantile is proven above max_ratio times stable's; Healthy when proven at
    most that; Inconclusive otherwise. Where stable's buckets are too wide to ever prove the margin, Healthy
    unless regressed, and the reason says so."""
    c_est, s_est = canary.estimate(q), stable.estimate(q)
    ratio = c_est / s_est if c_est is not None and s_est else None
    c_b, s_b = quantile_bounds(canary, q, alpha / 2), quantile_bounds(stable, q, alpha / 2)
    coarse = too_coarse(stable, q, max_ratio)
    if canary.total < min_samples or stable.total < min_samples:
        reason = f"{canary.total:.0f} canary and {stable.total:.0f} stable samples; {min_samples:.0f} needed on each"
        return LatencyResult("Inconclusive", c_est, s_est, c_b, s_b, ratio, alpha, coarse, reason)
    verdict = judge_latency(c_b, s_b, max_ratio, coarse)

    def ms(bounds: tuple[float, float]) -> str:
        return f"({bounds[0] * 1000:g}, {bounds[1] * 1000:g}] ms"

    summary = f"canary p{q * 100:g} in {ms(c_b)}, stable's in {ms(s_b)}"
    healthy = (f"{summary}: not proven above {max_ratio:g}x stable's; the buckets around stable's are too wide "
               f"to prove it within" if coarse else f"{summary}: proven within {max_ratio:g}x stable's")  # fmt: skip
    said = {
        "Regressed": f"{summary}: proven above {max_ratio:g}x stable's",
        "Healthy": healthy,
        "Inconclusive": f"{summary}: neither above nor within {max_ratio:g}x stable's yet",
    }[verdict]
    return LatencyResult(verdict, c_est, s_est, c_b, s_b, ratio, alpha, coarse, said)


def split_alpha(alpha: float, tests: int) -> float:
    """Each of `tests` tests that can roll back gets an equal share, so that together they roll back a healthy
    canary with a chance of at most alpha (Bonferroni: no assumption about how the tests depend on each other)."""
    return alpha / max(tests, 1)


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """Any regression decides; otherwise every metric must be healthy for the canary to be."""
    if "Regressed" in verdicts:
        return "Regressed"
    if not verdicts or "Inconclusive" in verdicts:
        return "Inconclusive"
    return "Healthy"
