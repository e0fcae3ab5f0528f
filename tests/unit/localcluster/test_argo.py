"""Argo Rollouts' builders (slipway_dev/localcluster/argo.py), on Argo Rollouts v1.10.1's own manifests/ from the Go
module cache (`make unit` and `make test` download it: argo-rollouts-sources)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from slipway_dev.localcluster import argo


@pytest.fixture(scope="module")
def src() -> Path:
    return argo.source_dir()


def test_the_crds_are_the_modules_five_in_its_kustomization_order(src: Path) -> None:
    files = argo.crd_files(src)
    kinds = [yaml.safe_load(f.read_text())["spec"]["names"]["kind"] for f in files]
    assert kinds == ["Rollout", "Experiment", "AnalysisRun", "AnalysisTemplate", "ClusterAnalysisTemplate"]


def test_the_base_objects_bind_argos_own_clusterrole_to_the_identity_the_process_uses(src: Path) -> None:
    objs = argo.base_objects(src)
    by_kind = {o["kind"]: o for o in objs}
    assert set(by_kind) == {"Namespace", "ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding"}
    assert by_kind["ServiceAccount"]["metadata"] == {**by_kind["ServiceAccount"]["metadata"],
                                                     "name": argo.ACCOUNT, "namespace": argo.NAMESPACE}  # fmt: skip
    assert by_kind["ConfigMap"]["metadata"]["name"] == argo.CONFIG_MAP
    assert by_kind["ClusterRoleBinding"]["roleRef"]["name"] == by_kind["ClusterRole"]["metadata"]["name"]
    assert argo.CONTROLLER_USER.name == f"system:serviceaccount:{argo.NAMESPACE}:{argo.ACCOUNT}"
    # AnalysisRuns are what the bench needs it to reconcile.
    rules = by_kind["ClusterRole"]["rules"]
    assert any("analysisruns" in r["resources"] and "update" in r["verbs"] for r in rules)
    # Nothing that would run a second controller or expose it beyond the process.
    assert not {"Deployment", "Service", "Secret"} & set(by_kind)


def test_the_process_runs_only_the_analysis_controller_without_leader_election() -> None:
    argv = argo.argv(Path("/bin/argo-rollouts-controller"), Path("/state/kubeconfig"))
    assert "--controllers=analysis" in argv and "--leader-elect=false" in argv
    assert f"--healthzPort={argo.HEALTHZ_PORT}" in argv and f"--metricsPort={argo.METRICS_PORT}" in argv
    env = argo.env(Path("/state/argo"), Path("/state/kubeconfig"))
    assert env["POD_NAMESPACE"] == argo.NAMESPACE and env["KUBECONFIG"] == "/state/kubeconfig"
