"""The pydantic models accept the examples and reject what the schema would."""

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from slipway.api import KINDS, DriftMonitor, ModelVersion, Rollout, TrainingJob
from slipway.api.modelversion import model_version_name

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BY_KIND = {k.kind: k for k in KINDS}


def example_docs() -> list[dict]:  # type: ignore[type-arg]
    docs = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") in BY_KIND]
    return docs


def key_paths(value: object, prefix: tuple[object, ...] = ()) -> set[tuple[object, ...]]:
    """Every mapping key in `value`, as its path from the top (list items by index)."""
    found: set[tuple[object, ...]] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            found |= {(*prefix, k)} | key_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found |= key_paths(v, (*prefix, i))
    return found


@pytest.mark.parametrize("doc", example_docs(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_examples_parse(doc: dict) -> None:  # type: ignore[type-arg]
    obj = BY_KIND[doc["kind"]].model_validate(doc)
    # The models ignore unknown keys: every key the example sets, at any depth, must survive validation
    # (a misspelt field would be dropped silently).
    dropped = key_paths(doc["spec"]) - key_paths(obj.spec.wire())
    assert not dropped, dropped


def test_every_kind_has_an_example() -> None:
    assert {d["kind"] for d in example_docs()} == set(BY_KIND)


def test_defaults_fill_in() -> None:
    tj = TrainingJob.model_validate(
        {
            "spec": {
                "modelName": "m",
                "framework": "sklearn",
                "algorithm": "sklearn.svm.SVC",
                "dataset": {"uri": "sklearn://iris"},
                "output": {"uri": "s3://bucket/m"},
            }
        }
    )
    assert tj.spec.run_policy.backoff_limit == 3 and tj.spec.seed == 0 and not tj.spec.run_policy.suspend
    assert tj.spec.wire()["runPolicy"] == {"backoffLimit": 3, "suspend": False}


@pytest.mark.parametrize(
    "bad",
    [
        {"modelName": "Upper_Case"},
        {"framework": "tensorflow"},
        {"dataset": {"uri": "sklearn://mnist"}},
        {"output": {"uri": "http://bucket/x"}},
        {"seed": -1},
        # Names the apiserver refuses on every read: refused at apply, never a reconcile failing forever.
        {"output": {"uri": "s3://bucket/m", "credentialsSecretRef": {"name": "100%"}}},
        {"output": {"uri": "s3://bucket/m", "serviceAccountName": "Trainer"}},
    ],
)
def test_trainingjob_rejects(bad: dict) -> None:  # type: ignore[type-arg]
    spec = {
        "modelName": "m",
        "framework": "sklearn",
        "algorithm": "a.B",
        "dataset": {"uri": "sklearn://iris"},
        "output": {"uri": "s3://bucket/m"},
    }
    with pytest.raises(ValidationError):
        TrainingJob.model_validate({"spec": {**spec, **bad}})


def test_status_round_trips_with_aliases() -> None:
    status = {"observedGeneration": 2, "stableVersion": "m-v1", "canaryWeight": 10, "conditions": []}
    r = Rollout.model_validate({"spec": {"modelVersionRef": {"name": "m-v1"}}, "status": status})
    assert r.status is not None and r.status.wire() == {**status, "decisions": []}


def test_model_version_name() -> None:
    assert model_version_name("cancer-rf", 3) == "cancer-rf-v3"


def test_driftmonitor_defaults() -> None:
    dm = DriftMonitor.model_validate({"spec": {"rolloutRef": {"name": "r"}}})
    assert dm.spec.detector.method == "ks" and dm.spec.detector.window_size == 1000


def test_modelversion_requires_sha256_hex() -> None:
    with pytest.raises(ValidationError) as err:
        ModelVersion.model_validate(
            {
                "spec": {
                    "modelName": "m",
                    "version": 1,
                    "framework": "sklearn",
                    "artifact": {"uri": "s3://bucket/k", "sha256": "nothex", "format": "joblib"},
                }
            }
        )
    locations = [e["loc"] for e in err.value.errors()]
    assert locations and all(loc[-1] == "sha256" for loc in locations), locations
