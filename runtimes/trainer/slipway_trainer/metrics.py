"""Validation metrics: which ones a task reports, and computing them as plain floats for the manifest."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from slipway_trainer.data import CLASSIFICATION, REGRESSION
from slipway_trainer.errors import InvalidInput

METRICS = {
    CLASSIFICATION: ("accuracy", "f1", "roc_auc"),
    REGRESSION: ("rmse", "mae", "r2"),
}
# The one shown per epoch and checked first in tests: higher is better for accuracy, lower for rmse.
HEADLINE = {CLASSIFICATION: "accuracy", REGRESSION: "rmse"}


def metric_names(task: str) -> tuple[str, ...]:
    try:
        return METRICS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}") from None


def classification_metrics(
    y_true: np.ndarray[Any, Any],
    y_pred: np.ndarray[Any, Any],
    scores: np.ndarray[Any, Any] | None,
    classes: list[Any],
) -> dict[str, float]:
    """accuracy; f1 of the positive (greater) label for two classes, macro-averaged for more; roc_auc from
    the class scores, one-vs-rest for more than two. roc_auc is left out when there are no scores or when the
    validation split lacks a class (the score is undefined then), rather than reporting a made-up number."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score  # type: ignore[import-untyped]

    if scores is not None:
        _require_finite(scores, "class scores")
    out = {"accuracy": float(accuracy_score(y_true, y_pred))}
    if len(classes) == 2:
        out["f1"] = float(f1_score(y_true, y_pred, pos_label=classes[1], average="binary", zero_division=0))
    else:
        out["f1"] = float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0))
    if scores is not None and set(np.unique(y_true).tolist()) == set(classes):
        if len(classes) == 2:
            positive = scores[:, 1] if scores.ndim == 2 else scores
            out["roc_auc"] = float(roc_auc_score(y_true == classes[1], positive))
        else:
            out["roc_auc"] = float(roc_auc_score(y_true, scores, multi_class="ovr", labels=classes))
    return _finite(out)


def regression_metrics(y_true: np.ndarray[Any, Any], y_pred: np.ndarray[Any, Any]) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    _require_finite(y_pred, "predictions")
    return _finite(
        {
            "rmse": math.sqrt(float(mean_squared_error(y_true, y_pred))),
            "mae": float(mean_absolute_error(y_true, y_pred)),
            "r2": float(r2_score(y_true, y_pred)),
        }
    )


def _require_finite(values: np.ndarray[Any, Any], what: str) -> None:
    # A diverged model predicts inf/NaN; the same config diverges again, so this is the config's fault.
    if not np.all(np.isfinite(values)):
        raise InvalidInput(f"the trained model's {what} on the validation set are not all finite: it diverged")


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    # JSON cannot carry NaN, and a gate must not be judged on one: an undefined metric is left out.
    return {k: v for k, v in metrics.items() if math.isfinite(v)}
