"""Which metrics a task reports, and their values on hand-checked inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from slipway_trainer.errors import InvalidInput
from slipway_trainer.metrics import HEADLINE, classification_metrics, metric_names, regression_metrics


def test_metric_selection() -> None:
    assert metric_names("classification") == ("accuracy", "f1", "roc_auc")
    assert metric_names("regression") == ("rmse", "mae", "r2")
    assert HEADLINE == {"classification": "accuracy", "regression": "rmse"}
    with pytest.raises(ValueError, match="clustering"):
        metric_names("clustering")


def test_binary_uses_the_greater_label_as_positive() -> None:
    y = np.array(["no", "yes", "yes", "no"], dtype=object)
    pred = np.array(["no", "yes", "no", "no"], dtype=object)
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    m = classification_metrics(y, pred, scores, ["no", "yes"])
    assert m["accuracy"] == 0.75
    assert m["f1"] == pytest.approx(2 / 3)  # precision 1, recall 1/2 for "yes"
    assert m["roc_auc"] == 1.0  # "yes" rows score 0.8 and 0.4, above every "no" row


def test_binary_decision_function_scores() -> None:
    m = classification_metrics(np.array([0, 1]), np.array([0, 1]), np.array([-2.0, 3.0]), [0, 1])
    assert m == {"accuracy": 1.0, "f1": 1.0, "roc_auc": 1.0}


def test_multiclass_is_macro_and_one_vs_rest() -> None:
    y = np.array([0, 1, 2, 2])
    pred = np.array([0, 1, 1, 2])
    scores = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.5, 0.4], [0.1, 0.1, 0.8]])
    m = classification_metrics(y, pred, scores, [0, 1, 2])
    assert set(m) == {"accuracy", "f1", "roc_auc"}
    assert m["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_roc_auc_left_out_without_scores_or_with_a_class_missing() -> None:
    assert set(classification_metrics(np.array([0, 1]), np.array([0, 1]), None, [0, 1])) == {"accuracy", "f1"}
    scores = np.full((2, 3), 1 / 3)
    assert "roc_auc" not in classification_metrics(np.array([0, 1]), np.array([0, 1]), scores, [0, 1, 2])


def test_regression() -> None:
    m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert m["rmse"] == pytest.approx(math.sqrt(4 / 3))
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["r2"] == pytest.approx(1 - 4 / 2)


def test_diverged_predictions_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="diverged"):
        regression_metrics(np.array([1.0, 2.0]), np.array([np.inf, 1.0]))
    with pytest.raises(InvalidInput, match="diverged"):
        classification_metrics(np.array([0, 1]), np.array([0, 1]), np.array([np.nan, 1.0]), [0, 1])
