"""The generated CRDs against the real kube-apiserver: established, documented, validating."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from slipway_dev.kubectl import Kubectl

from tests.conftest import REPO

pytestmark = pytest.mark.integration

SLIPWAY_CRDS = ["trainingjobs", "modelversions", "rollouts", "driftmonitors"]
KSERVE_CRDS = ["inferenceservices", "servingruntimes", "clusterservingruntimes"]


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "examples" / name).read_text())
    return doc


@pytest.mark.parametrize(
    "crd", [f"{p}.slipway.dev" for p in SLIPWAY_CRDS] + [f"{p}.serving.kserve.io" for p in KSERVE_CRDS]
)
def test_crds_are_established(cluster: Any, crd: str) -> None:
    obj = json.loads(cluster.kubectl("get", "crd", crd, "-o", "json").stdout)
    established = [c for c in obj["status"]["conditions"] if c["type"] == "Established"]
    assert established and established[0]["status"] == "True"


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("trainingjob.spec", "What to train, on what data"),
        ("trainingjob.spec.distributed", "torchrun"),
        ("rollout.spec.canary.analysis", "no evidence never promotes"),
        ("rollout.spec.canary.analysis.falseRollbackRate", "healthy canary is rolled back"),
        ("modelversion.spec.lineage", "reproduce"),
        ("driftmonitor.spec.detector.method", "multivariate"),
    ],
)
def test_kubectl_explain(cluster: Any, resource: str, expected: str) -> None:
    out = cluster.kubectl("explain", resource).stdout
    assert expected.lower() in " ".join(out.split()).lower(), out


def test_every_example_applies_and_shows_in_the_category(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(REPO / "examples"))
    out = kubectl("get", "slipway").stdout
    for kind in ("trainingjob", "modelversion", "rollout", "driftmonitor"):
        assert f"{kind}.slipway.dev/" in out, out


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        ("trainingjobs", ["MODEL", "FRAMEWORK", "PHASE", "ATTEMPTS", "VERSION", "READY", "AGE"]),
        ("modelversions", ["MODEL", "VERSION", "FRAMEWORK", "METRIC", "VERIFIED", "READY", "AGE"]),
        ("rollouts", ["STABLE", "CANARY", "WEIGHT", "PHASE", "VERDICT", "READY", "AGE"]),
        ("driftmonitors", ["STATE", "VERSION", "P-VALUE", "WINDOWS", "LAST-CHECK", "AGE"]),
    ],
)
def test_printer_columns(kubectl: Kubectl, kind: str, columns: list[str]) -> None:
    kubectl("apply", "-f", str(REPO / "examples"))
    header = kubectl("get", kind).stdout.splitlines()[0].split()
    assert header == ["NAME", *columns]


def test_short_names(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(REPO / "examples"))
    for short in ("tj", "mv", "mro", "dm"):
        assert kubectl("get", short).stdout.startswith("NAME")


def mutated(name: str, edit: Any) -> str:
    doc = copy.deepcopy(example(name))
    edit(doc["spec"])
    return yaml.safe_dump(doc)


def set_path(path: str, value: Any) -> Any:
    def edit(spec: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = spec
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value

    return edit


DELETE = object()

CEL_CASES = [
    ("rollout.yaml", set_path("canary.steps", [{"weight": 50, "holdSeconds": 1}, {"weight": 10, "holdSeconds": 1}]),
     "canary step weights must be strictly increasing"),
    ("rollout.yaml", set_path("canary.steps", [{"weight": 10, "holdSeconds": 1}, {"weight": 10, "holdSeconds": 1}]),
     "canary step weights must be strictly increasing"),
    ("rollout.yaml", set_path("canary.steps", [{"weight": 10, "holdSeconds": 1}, {"weight": 150}]),
     "canary step weights must be between 1 and 100"),
    ("rollout.yaml", set_path("canary.steps", [{"weight": 10, "holdSeconds": 5, "manualGate": True}]),
     "a step has holdSeconds or manualGate, not both"),
    ("rollout.yaml", set_path("canary.analysis.customMetrics", [{"name": "p", "query": "up"}]),
     "a custom metric needs min or max"),
    ("trainingjob-sklearn.yaml", set_path("gates", [{"metric": "accuracy"}]), "a gate needs min or max"),
    ("trainingjob-sklearn.yaml", set_path("gates", [{"metric": "accuracy", "min": 0.9, "max": 0.5}]),
     "a gate's min must not exceed its max"),
    ("trainingjob-pytorch-ddp-gpu.yaml", set_path("distributed.workers", 0), "distributed.workers must be at least 1"),
    ("trainingjob-sklearn.yaml", set_path("distributed", {"workers": 2}),
     "distributed training needs framework pytorch"),
    ("trainingjob-sklearn.yaml", set_path("resources.gpuProduct", "NVIDIA-H100-80GB-HBM3"),
     "gpuProduct needs gpus > 0"),
    ("trainingjob-sklearn.yaml", set_path("output.serviceAccountName", "trainer"),
     "set credentialsSecretRef or serviceAccountName, not both"),
    ("driftmonitor.yaml", set_path("retrain.cooldownSeconds", -1), "retrain.cooldownSeconds must be >= 0"),
    ("driftmonitor.yaml", set_path("inferenceServiceRef", {"name": "isvc"}),
     "set exactly one of rolloutRef or inferenceServiceRef"),
    ("driftmonitor.yaml", set_path("rolloutRef", DELETE), "set exactly one of rolloutRef or inferenceServiceRef"),
    ("driftmonitor.yaml", lambda s: (s.pop("rolloutRef"), s.update(inferenceServiceRef={"name": "i"})),
     "inferenceServiceRef needs modelVersionRef for the reference data"),
    ("driftmonitor.yaml", set_path("detector.backend", "pytorch"),
     "backend pytorch applies only to methods mmd and lsdd"),
]  # fmt: skip


@pytest.mark.parametrize(("file", "edit", "message"), CEL_CASES, ids=[c[2][:40] for c in CEL_CASES])
def test_cel_rules_reject_with_their_message(kubectl: Kubectl, file: str, edit: Any, message: str) -> None:
    proc = kubectl.apply(mutated(file, edit), check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_schema_rejects_enums_patterns_and_bounds_readably(kubectl: Kubectl) -> None:
    proc = kubectl.apply(mutated("trainingjob-sklearn.yaml", set_path("framework", "tensorflow")), check=False)
    # The field path and the value are ours; how the apiserver words the refusal is not.
    assert proc.returncode != 0 and "spec.framework" in proc.stderr and "tensorflow" in proc.stderr, proc.stderr
    proc = kubectl.apply(mutated("rollout.yaml", set_path("canary.analysis.falseRollbackRate", 0.9)), check=False)
    assert "spec.canary.analysis.falseRollbackRate" in proc.stderr and "0.5" in proc.stderr, proc.stderr
    # A name the apiserver would refuse on every read (it failed the operator's reconcile forever, no condition).
    proc = kubectl.apply(mutated("trainingjob-sklearn.yaml", set_path("output.credentialsSecretRef.name", "100%")),
                         check=False)  # fmt: skip
    assert proc.returncode != 0 and "spec.output.credentialsSecretRef.name" in proc.stderr, proc.stderr
    proc = kubectl.apply(mutated("rollout.yaml", set_path("modelVersionRef.name", "Model_V2")), check=False)
    assert "spec.modelVersionRef.name" in proc.stderr, proc.stderr


def test_model_version_artifact_is_immutable(kubectl: Kubectl) -> None:
    kubectl.apply(REPO / "examples" / "modelversion.yaml")
    proc = kubectl.apply(mutated("modelversion.yaml", set_path("artifact.sha256", "b" * 64)), check=False)
    assert "spec.artifact is immutable: register a new version instead" in proc.stderr, proc.stderr
    assert kubectl.apply(mutated("modelversion.yaml", set_path("metrics", {"accuracy": 0.97}))).returncode == 0


def test_defaults_are_applied_by_the_apiserver(kubectl: Kubectl) -> None:
    kubectl.apply(REPO / "examples" / "rollout.yaml")
    spec = (kubectl.get("rollout", "cancer-rf") or {})["spec"]
    assert spec["canary"]["analysis"]["onNoData"] == "hold"
    assert spec["inferenceService"]["predictor"]["runtime"] == "slipway-predictor"


def test_examples_dir_has_only_valid_yaml() -> None:
    for path in Path(REPO / "examples").rglob("*.yaml"):
        assert list(yaml.safe_load_all(path.read_text())), path
