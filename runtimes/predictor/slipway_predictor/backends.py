"""Loading an artifact and running it: scikit-learn (joblib) and TorchScript, behind one small interface.

Both turn a validated frame (signature columns, in order, with their dtypes) into a Prediction: the predicted
class and the class probabilities for a classifier, the value for a regressor.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from slipway_predictor.config import Column, StartupError

CLASSIFICATION, REGRESSION = "classification", "regression"


@dataclass(frozen=True)
class Prediction:
    task: str
    predictions: list[Any]  # the predicted class per row (classification) or the predicted value (regression)
    probabilities: np.ndarray[Any, Any] | None = None  # [N, C] in `classes` order; None if the model has none
    classes: list[Any] | None = None

    @property
    def scores(self) -> np.ndarray[Any, Any] | None:
        """One number per row for the prediction_score histogram and the response: the positive (greater)
        class's probability for a binary classifier, the predicted class's probability for a multiclass one,
        the value for a regressor."""
        if self.task == REGRESSION:
            return np.asarray(self.predictions, dtype=np.float64)
        if self.probabilities is None:
            return None
        if self.probabilities.shape[1] == 2:
            return self.probabilities[:, 1]
        top: np.ndarray[Any, Any] = self.probabilities.max(axis=1)
        return top


class Backend(Protocol):
    task: str
    classes: list[Any] | None
    signature: tuple[Column, ...]  # the columns requests are checked against

    def predict(self, frame: pd.DataFrame) -> Prediction: ...


def _labels(classes: list[Any], index: np.ndarray[Any, Any]) -> list[Any]:
    return [classes[i] for i in index.tolist()]


class SklearnBackend:
    def __init__(self, estimator: Any, signature: tuple[Column, ...] | None) -> None:
        self.estimator = estimator
        self.signature = signature or _signature_from(estimator)
        self.task = CLASSIFICATION if hasattr(estimator, "classes_") else REGRESSION
        # .tolist() turns numpy scalars into the JSON types a response can carry.
        self.classes = np.asarray(estimator.classes_).tolist() if self.task == CLASSIFICATION else None
        self.has_proba = self.task == CLASSIFICATION and hasattr(estimator, "predict_proba")
        # A model fitted on a DataFrame checks the column names it is given; one fitted on an array warns if
        # it gets names. Give each what it was fitted on.
        self.wants_frame = hasattr(estimator, "feature_names_in_")
        _check_features(estimator, self.signature)
        if not hasattr(estimator, "predict"):
            raise StartupError(f"the artifact holds a {type(estimator).__name__}, which has no predict()")

    def predict(self, frame: pd.DataFrame) -> Prediction:
        x = frame if self.wants_frame else frame.to_numpy()
        if self.task == REGRESSION:
            values = np.asarray(self.estimator.predict(x), dtype=np.float64)
            return Prediction(REGRESSION, _column(values).tolist())
        assert self.classes is not None
        if self.has_proba:
            # One call, and the predicted class is the most probable one, so the two never disagree.
            proba = np.asarray(self.estimator.predict_proba(x), dtype=np.float64)
            return Prediction(CLASSIFICATION, _labels(self.classes, proba.argmax(axis=1)), proba, self.classes)
        return Prediction(CLASSIFICATION, np.asarray(self.estimator.predict(x)).tolist(), None, self.classes)


def _signature_from(estimator: Any) -> tuple[Column, ...]:
    """Without SLIPWAY_SIGNATURE, a model fitted on a DataFrame still knows its columns (not their dtypes:
    float64 takes any number)."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        raise StartupError(
            "SLIPWAY_SIGNATURE is required: the model was not fitted on named columns, so requests cannot be checked"
        )
    return tuple(Column(str(n), "float64") for n in names)


def _column(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if values.ndim == 2 and values.shape[1] == 1:
        return values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"a regressor returned shape {list(values.shape)}; one value per row is supported")
    return values


def _check_features(estimator: Any, signature: tuple[Column, ...]) -> None:
    """A signature that disagrees with the artifact would make every request fail (or worse, silently feed
    columns in the wrong order): refuse to start instead."""
    names = [c.name for c in signature]
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is not None and [str(n) for n in fitted] != names:
        model = [str(n) for n in fitted]
        i = next((i for i, (a, b) in enumerate(zip(names, model, strict=False)) if a != b), min(len(names), len(model)))
        ours, theirs = (repr(x[i]) if i < len(x) else "nothing" for x in (names, model))
        raise StartupError(
            f"SLIPWAY_SIGNATURE does not match the columns the model was fitted on: column {i} is {ours} in the "
            f"signature but {theirs} in the model ({len(names)} columns in the signature, {len(model)} in the model)"
        )
    n = getattr(estimator, "n_features_in_", None)
    if n is not None and n != len(names):
        raise StartupError(f"SLIPWAY_SIGNATURE has {len(names)} columns but the model takes {n} features")


class TorchBackend:
    """A TorchScript module taking raw features [N, F] and returning class probabilities [N, C] or values [N]
    (the trainer's contract). Which one it is, and whether F fits, is found out by a trial call at startup."""

    def __init__(self, module: Any, signature: tuple[Column, ...] | None, classes: tuple[Any, ...] | None) -> None:
        import torch

        if not signature:
            raise StartupError("SLIPWAY_SIGNATURE is required: a TorchScript model does not carry its column names")
        self.signature = signature
        if not all(c.numeric for c in signature):
            raise StartupError("a TorchScript model takes numbers only, but SLIPWAY_SIGNATURE has string columns")
        self.module, self.width = module, len(signature)
        try:
            with torch.inference_mode():
                out = module(torch.zeros(2, self.width, dtype=torch.float32))
        except Exception as e:
            raise StartupError(f"the TorchScript model fails on {self.width} signature columns: {e}") from e
        if out.dim() == 2 and out.shape[1] > 1:
            self.task = CLASSIFICATION
            self.classes: list[Any] | None = list(classes) if classes else list(range(int(out.shape[1])))
            if len(self.classes) != out.shape[1]:
                raise StartupError(f"SLIPWAY_CLASSES has {len(self.classes)} labels, the model {out.shape[1]}")
        elif out.dim() == 1 or (out.dim() == 2 and out.shape[1] == 1):
            self.task, self.classes = REGRESSION, None
        else:
            raise StartupError(f"the TorchScript model returns shape {list(out.shape)} for 2 rows: not [N, C] or [N]")

    def predict(self, frame: pd.DataFrame) -> Prediction:
        import torch

        # float32, as the trainer fed it (the module casts to float32 inside anyway).
        x = torch.from_numpy(frame.to_numpy(dtype=np.float32))
        with torch.inference_mode():
            out = self.module(x).double().cpu().numpy()
        if self.task == REGRESSION:
            return Prediction(REGRESSION, _column(out).tolist())
        assert self.classes is not None
        return Prediction(CLASSIFICATION, _labels(self.classes, out.argmax(axis=1)), out, self.classes)


def load(path: Path, framework: str, signature: tuple[Column, ...] | None, classes: tuple[Any, ...] | None) -> Backend:
    """Load a verified artifact. Call artifact.verify first: unpickling runs code."""
    if framework == "pytorch":
        import torch

        try:
            with warnings.catch_warnings():
                # TorchScript is the trainer's format; torch's notice that it is in maintenance mode is noise here.
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        except Exception as e:
            raise StartupError(f"{path.name} is not a TorchScript model: {e}") from e
        module.eval()
        return TorchBackend(module, signature, classes)
    import joblib  # type: ignore[import-untyped]

    try:
        estimator = joblib.load(path)
    except Exception as e:
        raise StartupError(f"cannot load {path.name} with joblib: {type(e).__name__}: {e}") from e
    return SklearnBackend(estimator, signature)
