"""The whole loop, as `make demo` plays it (slipway_dev/demo/scenario.py), asserted: v2 rolled back with its evidence,
exactly one retraining after the drift, v3 promoted, and lineage from v3 back to its job and its data. On the real
serving stack: KServe's controller runs the predictors (Standard mode), requests go through Traefik on the Rollout's
HTTPRoute, Prometheus discovers the predictor pods through the apiserver, and the payload logger is KServe's agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from slipway_dev.demo.scenario import Env, Scenario

from tests.conftest import Kubectl

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_train_rollback_drift_retrain_promote(
    serving_kubectl: Kubectl,
    serving_cluster: Any,
    s3_server: Any,
    drift_server: Any,
    serving_operator_factory: Any,
    tmp_path: Path,
) -> None:
    kubectl, cluster = serving_kubectl, serving_cluster
    serving_operator_factory(SLIPWAY_DRIFT_URL=drift_server.url, SLIPWAY_DRIFT_POLL_SECONDS="1")
    env = Env(kubectl.namespace, str(cluster.kubeconfig), cluster.ingress_url, cluster.prometheus_url,
              s3_server.env(), tmp_path / "report")  # fmt: skip
    out = Scenario(env, say=print).run()

    # v2 was canaried and rolled back on the Prometheus evidence, recorded in status.
    decisions = out.rollout["status"]["decisions"]
    actions = [(d["action"], d["message"]) for d in decisions]
    started = next(i for i, (a, m) in enumerate(actions) if a == "CanaryStarted" and m.startswith("cancer-v2"))
    rollback = next(d for d in decisions[started:] if d["action"] == "Rollback")
    assert rollback["verdict"] == "Regressed"
    evidence = {e["metric"]: e for e in rollback["evidence"]}
    assert evidence["errorRate"]["verdict"] == "Regressed"
    assert evidence["errorRate"]["canary"]["samples"] > 0

    # Drift retrained exactly once, and the retrained version went out through the Rollout and was promoted.
    assert out.retrain_jobs == [out.monitor["status"]["lastRetrain"]["jobName"]]
    assert out.v3 is not None and out.rollout["status"]["stableVersion"] == out.v3
    assert out.rollout["status"].get("candidate") == "DriftMonitor/cancer"
    assert any(d["action"] == "Promote" and out.v3 in d["message"] for d in decisions)
    assert out.monitor["status"]["modelVersion"] == out.v3

    # Each canary's record (CanaryAnalysis, owned by the Rollout) holds every decision on it, the status only the
    # latest: v2's ends in the Rollback above with its evidence, v3's in its promotion.
    records = kubectl.json("canaryanalyses.slipway.dev", "-l", "slipway.dev/rollout=cancer")["items"]
    by_version = {r["spec"]["canaryVersion"]: r for r in records}
    v2 = by_version["cancer-v2"]
    assert v2["status"]["phase"] == "RolledBack" and v2["status"]["decisions"][-1] == rollback
    assert v2["status"]["decisions"][0]["action"] == "CanaryStarted" and v2["spec"]["stableVersion"] == "cancer-v1"
    assert v2["metadata"]["ownerReferences"][0]["uid"] == out.rollout["metadata"]["uid"]
    assert by_version[out.v3]["status"]["phase"] == "Promoted"

    # Lineage: v3 → the retraining job → the recent data it was trained on.
    v3 = kubectl.get("modelversion", out.v3) or {}
    lineage = v3["spec"]["lineage"]
    assert lineage["trainingJobRef"]["name"] == out.retrain_jobs[0]
    assert lineage["dataset"]["uri"] == "s3://models/demo/data/cancer-recent.parquet"
    assert len(lineage["dataset"]["sha256"]) == 64
    job = kubectl.get("trainingjob", out.retrain_jobs[0]) or {}
    assert job["metadata"]["annotations"]["slipway.dev/drifted-version"] == "cancer-v1"

    # The report a person reads.
    assert out.report.exists() and out.report.with_suffix(".png").stat().st_size > 10_000
    assert "Rollback" in out.report.read_text()
