"""The kserve Model and the backends in process: response shapes, labels of every kind, models without
probabilities or feature names, TorchScript checks, and which errors are the client's and which the model's."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
from kserve.errors import InferenceError, InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest
from prometheus_client import CollectorRegistry
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.svm import LinearSVC
from slipway_predictor.backends import Prediction, SklearnBackend, TorchBackend
from slipway_predictor.config import Column, StartupError
from slipway_predictor.metrics import PROBABILITY_BUCKETS, PredictorMetrics, describe_validation_errors
from slipway_predictor.model import SlipwayModel
from slipway_predictor.schema import Schema

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
IRIS = load_iris(as_frame=True)
COLUMNS = tuple(Column(str(c), "float64") for c in IRIS.data.columns)
SPECIES = IRIS.target_names[IRIS.target]  # string labels: "setosa", ...


def make_model(estimator: Any, columns: tuple[Column, ...] = COLUMNS) -> tuple[SlipwayModel, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = PredictorMetrics("iris", "iris-v9", PROBABILITY_BUCKETS, registry=registry)
    model = SlipwayModel("iris", "iris-v9", SklearnBackend(estimator, columns), Schema(columns), metrics)
    model.load()
    return model, registry


def v2_request(rows: np.ndarray[Any, Any]) -> InferRequest:
    return InferRequest("iris", [InferInput("x", list(rows.shape), "FP64", rows.tolist())], request_id="r1")


def test_multiclass_with_string_labels() -> None:
    rf = RandomForestClassifier(n_estimators=5, random_state=0).fit(IRIS.data, SPECIES)
    model, registry = make_model(rf)
    rows = IRIS.data.iloc[[0, 60, 120]]
    expected = rf.predict_proba(rows)
    body = asyncio.run(model.predict({"instances": rows.to_numpy().tolist()}))
    assert body["classes"] == ["setosa", "versicolor", "virginica"]
    assert body["predictions"] == rf.predict(rows).tolist() and "scores" not in body
    np.testing.assert_allclose(body["probabilities"], expected)
    rest, _ = asyncio.run(model.predict(v2_request(rows.to_numpy()))).to_rest()
    out = {o["name"]: o for o in rest["outputs"]}
    assert out["predictions"] == {"name": "predictions", "shape": [3], "datatype": "BYTES", "data": body["predictions"]}
    assert json.loads(out["probabilities"]["parameters"]["classes"]) == body["classes"] and "scores" not in out
    assert (rest["id"], rest["model_version"]) == ("r1", "iris-v9")
    # The multiclass score is the predicted class's probability: 6 rows observed, their sum is known.
    labels = {"model": "iris", "version": "iris-v9"}
    assert registry.get_sample_value("slipway_predictor_prediction_score_count", labels) == 6
    assert registry.get_sample_value("slipway_predictor_prediction_score_sum", labels) == pytest.approx(
        2 * expected.max(axis=1).sum()
    )
    assert [o["datatype"] for o in model.get_output_types()] == ["BYTES", "FP64", "FP64"]


def test_classifier_without_probabilities_gives_classes_only() -> None:
    svc = LinearSVC(random_state=0).fit(IRIS.data.to_numpy(), IRIS.target)  # fitted on an array: no names
    model, registry = make_model(svc)
    assert not model.backend.wants_frame  # type: ignore[attr-defined]
    body = asyncio.run(model.predict({"instances": IRIS.data.iloc[:2].to_numpy().tolist()}))
    assert set(body) == {"predictions", "classes", "model_name", "model_version"} and body["classes"] == [0, 1, 2]
    assert (
        registry.get_sample_value("slipway_predictor_prediction_score_count", {"model": "iris", "version": "iris-v9"})
        == 0
    )
    with pytest.raises(StartupError, match="SLIPWAY_SIGNATURE has 3 columns but the model takes 4 features"):
        SklearnBackend(svc, COLUMNS[:3])


def test_bad_input_is_the_clients_and_a_failing_model_the_servers() -> None:
    class Broken:
        classes_ = np.asarray([False, True])

        def predict_proba(self, x: Any) -> Any:
            raise ValueError("boom")

        def predict(self, x: Any) -> Any:
            raise AssertionError("unused")

    model, _ = make_model(Broken())
    with pytest.raises(InvalidInput):
        asyncio.run(model.predict({"instances": [[1.0]]}))
    with pytest.raises(InferenceError, match="the model failed: ValueError: boom"):
        asyncio.run(model.predict({"instances": [[1.0, 2.0, 3.0, 4.0]]}))
    with pytest.raises(InvalidInput, match="not valid JSON"):
        asyncio.run(model.predict(b"{"))


def test_prediction_scores() -> None:
    binary = Prediction("classification", [1, 0], np.asarray([[0.2, 0.8], [0.9, 0.1]]), [0, 1])
    assert binary.scores is not None and binary.scores.tolist() == [0.8, 0.1]
    multi = Prediction("classification", ["b"], np.asarray([[0.2, 0.5, 0.3]]), ["a", "b", "c"])
    assert multi.scores is not None and multi.scores.tolist() == [0.5]
    assert Prediction("classification", [1], None, [0, 1]).scores is None
    regression = Prediction("regression", [1.5, -2.0])
    assert regression.scores is not None and regression.scores.tolist() == [1.5, -2.0]


def test_torchscript_backend_checks() -> None:
    import torch

    class Probs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.eye(4)[:, :3])  # 4 features -> 3 classes: the first three

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(x @ self.w, dim=1)

    class Values(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sum(dim=1, keepdim=True)

    probs, values = torch.jit.script(Probs()), torch.jit.script(Values())
    frame = Schema(COLUMNS).from_v1({"instances": [[1.0, 2.0, 3.0, 4.0]]})
    clf = TorchBackend(probs, COLUMNS, ("a", "b", "c"))
    p = clf.predict(frame)
    assert (clf.task, p.predictions, p.classes) == ("classification", ["c"], ["a", "b", "c"])
    assert TorchBackend(probs, COLUMNS, None).classes == [0, 1, 2]  # no SLIPWAY_CLASSES: column indices
    reg = TorchBackend(values, COLUMNS, None)
    assert (reg.task, reg.predict(frame).predictions) == ("regression", [10.0])
    with pytest.raises(StartupError, match="SLIPWAY_CLASSES has 2 labels, the model 3"):
        TorchBackend(probs, COLUMNS, ("a", "b"))
    with pytest.raises(StartupError, match="fails on 2 signature columns"):
        TorchBackend(probs, COLUMNS[:2], None)
    with pytest.raises(StartupError, match="string columns"):
        TorchBackend(values, (*COLUMNS, Column("s", "string")), None)
    with pytest.raises(StartupError, match="SLIPWAY_SIGNATURE is required: a TorchScript model"):
        TorchBackend(values, None, None)


def test_v2_schema_errors_are_described_by_field() -> None:
    errors = [
        {"loc": ("body", "InferenceRequest", "inputs", 0, "shape"), "msg": "Field required", "type": "missing"},
        {"loc": ("body", "bytes"), "msg": "Input should be a valid bytes", "type": "bytes_type"},
    ]
    assert describe_validation_errors(errors) == "inputs[0].shape: Field required"
    invalid = [
        {"loc": ("body", 1), "msg": "JSON decode error", "type": "json_invalid", "ctx": {"error": "Expecting value"}}
    ]
    assert describe_validation_errors(invalid) == "the body is not valid JSON (Expecting value)"
