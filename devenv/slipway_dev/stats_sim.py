"""Simulated canaries judged by slipway's analysis, looked at as the operator looks: the source of the README's
table of what the analysis detects and how fast (`python -m slipway_dev.stats_sim --write` regenerates it; a unit test
fails when it is stale).

A canary walks the example Rollout's steps (examples/rollout.yaml: 10 % then 50 %, 60 s each, then all
traffic) at 50 requests/s, looked at every 10 s over the counts since it started, with error rate and latency
analysis on at their defaults (one alpha = 0.05 shared). Latency is 4 ms plus a log-normal part (median 10 ms,
sigma 0.5), counted in the predictor's E24 buckets; a latency regression scales all of it. A step ends when its
hold is over and the verdict is Healthy; Regressed rolls back; a canary neither promoted nor rolled back by
maxHoldSeconds (600 s) past a step's hold is held for a person (onNoData: hold).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from slipway import stats
from slipway.analysis import tests_that_roll_back
from slipway.api.rollout import Analysis
from slipway_predictor.metrics import DURATION_BUCKETS

from slipway_dev import REPO

ROOT = REPO

Floats = npt.NDArray[np.float64]
RPS, INTERVAL, STEPS, HOLD = 50, 10, (10, 50), 60
DEFAULTS = Analysis.model_validate({"prometheus": {"address": "http://127.0.0.1:9"}})
MAX_HOLD = DEFAULTS.max_hold_seconds
BEGIN, END = "<!-- stats_sim table: begin -->", "<!-- stats_sim table: end -->"


def bucket_probabilities(scale: float) -> Floats:
    """P(latency in each bucket, and above the last bound) for 4 ms + log-normal(10 ms, 0.5), times scale."""
    bounds = np.array(DURATION_BUCKETS)
    inner = np.clip(bounds / scale - 0.004, 1e-12, None)
    cdf = 0.5 * (1 + np.vectorize(math.erf)((np.log(inner) - math.log(0.010)) / (0.5 * math.sqrt(2))))
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


@dataclass
class Side:
    n: float = 0.0
    errors: float = 0.0
    buckets: Floats | None = None

    def add(self, rng: np.random.Generator, n: int, p_error: float, probs: Floats) -> None:
        self.n += n
        self.errors += rng.binomial(n, p_error)
        counts = rng.multinomial(n, probs).astype(np.float64)
        self.buckets = counts if self.buckets is None else self.buckets + counts

    def histogram(self) -> stats.Histogram:
        cumulative = np.cumsum(self.buckets)[:-1] if self.buckets is not None else np.zeros(len(DURATION_BUCKETS))
        return stats.Histogram(DURATION_BUCKETS, tuple(float(c) for c in cumulative), self.n)


def verdict(a: Analysis, canary: Side, stable: Side) -> stats.Verdict:
    """What analysis.evaluate decides, from the same stats functions, without the evidence it writes."""
    alpha = stats.split_alpha(a.false_rollback_rate, tests_that_roll_back(a))
    if canary.n < a.min_requests or stable.n < a.min_requests:
        return "Inconclusive"
    c, s = stats.Proportion(canary.n, canary.errors), stats.Proportion(stable.n, stable.errors)
    errors, _ = stats.error_rate_verdict(c, s, alpha, a.error_rate.margin)
    if errors == "Regressed":
        return errors
    lat = a.latency
    if canary.n < lat.min_samples or stable.n < lat.min_samples:
        return stats.combine([errors, "Inconclusive"])
    latency = stats.latency_verdict(canary.histogram(), stable.histogram(), lat.quantile, lat.max_ratio, alpha)
    return stats.combine([errors, latency])


def canary(rng: np.random.Generator, p_stable: float, p_canary: float, slower: float, a: Analysis = DEFAULTS
           ) -> tuple[str, float]:  # fmt: skip
    """One canary's fate ("promoted", "rolledBack" or "held") and when, in seconds since it started."""
    c, s = Side(), Side()
    fast, slow = bucket_probabilities(1.0), bucket_probabilities(slower)
    t, step, step_start = 0, 0, 0
    while True:
        t += INTERVAL
        share = STEPS[step] / 100
        c.add(rng, int(rng.poisson(RPS * share * INTERVAL)), p_canary, slow)
        s.add(rng, int(rng.poisson(RPS * (1 - share) * INTERVAL)), p_stable, fast)
        v = verdict(a, c, s)
        if v == "Regressed":
            return "rolledBack", t
        if t - step_start >= HOLD and v == "Healthy":
            step, step_start = step + 1, t
            if step == len(STEPS):
                return "promoted", t
        elif t - step_start >= HOLD + MAX_HOLD:
            return "held", t


@dataclass(frozen=True)
class Row:
    label: str
    runs: int
    promoted: float
    rolled_back: float
    median_rollback_s: float | None
    median_promotion_s: float | None


def row(label: str, runs: int, seed: int, p_stable: float, p_canary: float, slower: float = 1.0) -> Row:
    rng = np.random.default_rng(seed)
    fates = [canary(rng, p_stable, p_canary, slower) for _ in range(runs)]

    def median(kind: str) -> float | None:
        times = [t for f, t in fates if f == kind]
        return float(np.median(times)) if times else None

    return Row(label, runs, sum(f == "promoted" for f, _ in fates) / runs,
               sum(f == "rolledBack" for f, _ in fates) / runs, median("rolledBack"), median("promoted"))  # fmt: skip


CASES: tuple[tuple[str, int, float, float, float], ...] = (
    ("healthy, 0 % errors", 1000, 0.0, 0.0, 1.0),
    ("healthy, 1 % errors", 300, 0.01, 0.01, 1.0),
    ("errors +1 point (1 % → 2 %)", 200, 0.01, 0.02, 1.0),
    ("errors +3 points (0 % → 3 %)", 200, 0.0, 0.03, 1.0),
    ("errors +3 points (1 % → 4 %)", 200, 0.01, 0.04, 1.0),
    ("errors +10 points (1 % → 11 %)", 200, 0.01, 0.11, 1.0),
    ("errors +30 points (0 % → 30 %)", 200, 0.0, 0.30, 1.0),
    ("latency +10 %", 200, 0.0, 0.0, 1.1),
    ("latency +20 %", 200, 0.0, 0.0, 1.2),
    ("latency +50 %", 200, 0.0, 0.0, 1.5),
    ("latency +100 %", 200, 0.0, 0.0, 2.0),
)


def rows() -> list[Row]:
    return [row(label, runs, seed, ps, pc, slower) for seed, (label, runs, ps, pc, slower) in enumerate(CASES)]


def table(found: list[Row]) -> str:
    def seconds(value: float | None) -> str:
        return "—" if value is None else f"{value:.0f} s"

    lines = ["| canary | runs | promoted | rolled back | median time to rollback | median time to promotion |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in found:
        lines.append(f"| {r.label} | {r.runs} | {r.promoted:.1%} | {r.rolled_back:.1%} | "
                     f"{seconds(r.median_rollback_s)} | {seconds(r.median_promotion_s)} |")  # fmt: skip
    return "\n".join(lines)


def readme_with(text: str, generated: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{generated}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="rewrite the table in README.md")
    args = parser.parse_args()
    generated = table(rows())
    if args.write:
        readme = ROOT / "README.md"
        readme.write_text(readme_with(readme.read_text(), generated))
    print(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
