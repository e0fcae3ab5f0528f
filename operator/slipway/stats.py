"""Canary statistics: a sequential test for error rates that stays valid however often it is looked at.

Error rate: mixture sequential probability ratio test (mSPRT, Johari, Pekelis & Walsh 2017, "Always valid
inference") on the difference of two proportions, canary minus stable, with the normal approximation.
For an observed difference d with variance V, the likelihood ratio of "difference ~ N(0, tau^2)" against
"no difference" is

    Lambda_tau = sqrt(V / (V + tau^2)) * exp(d^2 / (2 V) * tau^2 / (V + tau^2))

Lambda is a non-negative martingale under "no difference", so by Ville's inequality the chance that it ever
reaches 1/alpha is at most alpha, at any number and timing of looks. We average Lambda over a grid of tau
(itself a valid mixture) so that both small and large regressions are found quickly, and roll back only when
the test rejects and the canary is the worse side: a one-sided use of a two-sided test keeps the bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["Healthy", "Regressed", "Inconclusive"]
# Effects (in error-rate points) the mixture is tuned for: from 0.5 % to 50 %.
TAUS: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


@dataclass(frozen=True)
class Proportion:
    n: float  # requests (Prometheus' increase() gives fractions: kept as float)
    errors: float

    @property
    def rate(self) -> float:
        return self.errors / self.n if self.n > 0 else 0.0

    def variance(self) -> float:
        """Of the rate estimate, with an add-half correction so that 0 or n errors never give zero variance."""
        if self.n <= 0:
            return math.inf
        p = (self.errors + 0.5) / (self.n + 1.0)
        return p * (1.0 - p) / self.n


@dataclass(frozen=True)
class ErrorRateResult:
    verdict: Verdict
    canary: Proportion
    stable: Proportion
    effect: float  # canary rate minus stable rate
    interval: tuple[float, float]  # always-valid (1 - alpha) confidence interval of the effect
    p_value: float  # always-valid p-value bound at this look: min(1, 1/Lambda)
    reason: str


def mixture_lambda(d: float, v: float, taus: Sequence[float] = TAUS) -> float:
    total = 0.0
    for tau in taus:
        t2 = tau * tau
        total += math.sqrt(v / (v + t2)) * math.exp(min(700.0, d * d / (2 * v) * t2 / (v + t2)))
    return total / len(taus)


def half_width(v: float, alpha: float, taus: Sequence[float] = TAUS) -> float:
    """The |d| at which the mixture reaches 1/alpha: the always-valid interval is effect +/- this."""
    lo, hi = 0.0, 1.0
    while mixture_lambda(hi, v, taus) < 1 / alpha and hi < 1e6:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mixture_lambda(mid, v, taus) < 1 / alpha else (lo, mid)
    return hi


def error_rate_test(canary: Proportion, stable: Proportion, alpha: float, min_requests: float) -> ErrorRateResult:
    """Regressed when the sequential test rejects "no difference" and the canary errs more; Healthy when
    both sides have enough requests and it does not; Inconclusive otherwise. No evidence never promotes."""
    if canary.n < min_requests or stable.n < min_requests:
        reason = f"{canary.n:.0f} canary and {stable.n:.0f} stable requests; {min_requests:.0f} needed on each"
        return ErrorRateResult("Inconclusive", canary, stable, canary.rate - stable.rate, (-1.0, 1.0), 1.0, reason)
    d, v = canary.rate - stable.rate, canary.variance() + stable.variance()
    lam = mixture_lambda(d, v)
    w = half_width(v, alpha)
    p = min(1.0, 1.0 / lam)
    summary = f"canary {canary.rate:.2%} of {canary.n:.0f} vs stable {stable.rate:.2%} of {stable.n:.0f}"
    if p <= alpha and d > 0:
        return ErrorRateResult("Regressed", canary, stable, d, (d - w, d + w), p, f"{summary}: p={p:.2g} <= {alpha}")
    return ErrorRateResult("Healthy", canary, stable, d, (d - w, d + w), p, f"{summary}: no regression at {alpha}")


@dataclass(frozen=True)
class RatioResult:
    verdict: Verdict
    canary: float | None
    stable: float | None
    ratio: float | None
    reason: str


def latency_ratio(
    canary_q: float | None,
    stable_q: float | None,
    canary_n: float,
    stable_n: float,
    max_ratio: float,
    min_samples: float,
) -> RatioResult:
    """A quantile-ratio bound, not a sequential test: it needs min_samples on both sides before it speaks."""
    if canary_q is None or stable_q is None or canary_n < min_samples or stable_n < min_samples:
        reason = f"{canary_n:.0f} canary and {stable_n:.0f} stable samples; {min_samples:.0f} needed on each"
        return RatioResult("Inconclusive", canary_q, stable_q, None, reason)
    ratio = canary_q / stable_q if stable_q > 0 else (math.inf if canary_q > 0 else 1.0)
    verdict: Verdict = "Regressed" if ratio > max_ratio else "Healthy"
    reason = f"canary {canary_q * 1000:.1f} ms vs stable {stable_q * 1000:.1f} ms: ratio {ratio:.2f} (max {max_ratio})"
    return RatioResult(verdict, canary_q, stable_q, ratio, reason)


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """Any regression decides; otherwise every metric must be healthy for the canary to be."""
    if "Regressed" in verdicts:
        return "Regressed"
    if not verdicts or "Inconclusive" in verdicts:
        return "Inconclusive"
    return "Healthy"
