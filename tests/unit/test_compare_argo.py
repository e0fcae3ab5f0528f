"""bench/compare_argo.py's pure parts: Flagger's rule replayed on recorded series, and what an Argo AnalysisRun's
phase means for the canary."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return importlib.import_module("bench.compare_argo")


def test_flagger_rolls_back_at_the_threshold_th_failed_check(bench: ModuleType) -> None:
    # 98 % success every second for ten minutes: every check (one a minute from the routing) fails.
    t0 = 1000.0
    success = {t0 + s: 98.0 for s in range(0, 601)}
    p99 = {t0 + s: 20.0 for s in range(0, 601)}
    verdict = bench.flagger_replay(success, p99, t0, t0 + 600)
    assert verdict.decision == "rollback"
    assert verdict.at == t0 + 5 * 60  # threshold 5, interval 1m
    assert [c["ok"] for c in verdict.checks] == [False] * 5


def test_flagger_promotes_after_max_weight_over_step_weight_passed_checks(bench: ModuleType) -> None:
    t0 = 0.0
    success = {float(s): 100.0 for s in range(0, 601)}
    p99 = {float(s): 20.0 for s in range(0, 601)}
    verdict = bench.flagger_replay(success, p99, t0, 600.0)
    assert (verdict.decision, verdict.at) == ("promote", 300.0)  # 50/10 = 5 passed checks


def test_flagger_counts_no_data_and_slow_answers_as_failed_checks_and_never_forgets_them(bench: ModuleType) -> None:
    # minute 1: no data; minute 2: p99 over 500 ms; then healthy: two failed checks stay counted.
    success = {float(s): 100.0 for s in range(61, 601)}
    p99 = {float(s): (600.0 if s <= 120 else 20.0) for s in range(61, 601)}
    rule = bench.FlaggerRule(threshold=2)
    verdict = bench.flagger_replay(success, p99, 0.0, 600.0, rule)
    assert (verdict.decision, verdict.at) == ("rollback", 120.0)
    # The same data with the default threshold: the failures are not enough, the passes promote later.
    later = bench.flagger_replay(success, p99, 0.0, 600.0)
    assert (later.decision, later.at) == ("promote", 420.0)


def test_flagger_is_undecided_when_the_canary_ends_before_a_verdict(bench: ModuleType) -> None:
    success = {float(s): 90.0 for s in range(0, 200)}
    p99 = {float(s): 20.0 for s in range(0, 200)}
    verdict = bench.flagger_replay(success, p99, 0.0, 150.0)
    assert verdict.decision == "undecided" and len(verdict.checks) == 2


def test_argo_outcome_follows_background_analysis(bench: ModuleType) -> None:
    assert bench.argo_outcome("Failed", 12.0, canary_promoted=False) == "rollback"
    assert bench.argo_outcome("Error", 12.0, canary_promoted=True) == "rollback"
    assert bench.argo_outcome("Running", None, canary_promoted=True) == "promote"
    assert bench.argo_outcome("Running", None, canary_promoted=False) == "undecided"
    assert bench.argo_outcome("Inconclusive", 5.0, canary_promoted=False) == "undecided"


def test_the_argo_query_is_the_documented_success_rate_on_the_predictors_counter(bench: ModuleType) -> None:
    metric = bench.argo_metric("http://127.0.0.1:9090", "5m", 3)
    assert metric["successCondition"] == "result[0] >= 0.95" and metric["failureLimit"] == 3
    query = metric["provider"]["prometheus"]["query"]
    assert query.count("irate(slipway_predictor_requests_total{") == 2 and query.count("[5m]") == 2
    assert 'outcome!="server_error"' in query and 'version="{{args.version}}"' in query


def test_slipways_end_of_a_canary_is_promote_rollback_or_hold() -> None:
    from bench.compare_argo import slipway_end

    assert slipway_end({"stableVersion": "v2"}, "v2") == "promote"
    assert slipway_end({"stableVersion": "v1", "rolledBackVersion": "v2"}, "v2") == "rollback"
    assert slipway_end({"stableVersion": "v1", "canaryVersion": "v2", "phase": "Paused"}, "v2") == "hold"
    assert slipway_end({"stableVersion": "v1", "canaryVersion": "v2", "phase": "Progressing"}, "v2") is None
