"""framework: sklearn. The algorithm names an estimator class under `sklearn.`; hyperparameters are its kwargs."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np

from slipway_trainer.data import CLASSIFICATION, REGRESSION, Split, Table
from slipway_trainer.errors import InvalidInput
from slipway_trainer.metrics import classification_metrics, regression_metrics
from slipway_trainer.outputs import LocalFile, Trained, library_versions
from slipway_trainer.report import Progress

# joblib's default is pickle.HIGHEST_PROTOCOL, which moves with the Python version; the artifact should not.
PICKLE_PROTOCOL = 5
COMPRESS = ("zlib", 3)  # zlib carries no timestamp (gzip would), so the bytes depend on the model alone


def resolve_estimator(algorithm: str, hyperparameters: dict[str, Any], seed: int) -> Any:
    """Construct the estimator, or raise InvalidInput naming what is wrong with the class or its kwargs."""
    from sklearn.base import BaseEstimator, is_classifier, is_regressor  # type: ignore[import-untyped]

    parts = algorithm.split(".")
    # Only public scikit-learn classes: the config must not be able to import and call arbitrary code.
    if len(parts) < 3 or parts[0] != "sklearn" or not all(p.isidentifier() and not p.startswith("_") for p in parts):
        raise InvalidInput(
            f"algorithm {algorithm!r} must be a public scikit-learn estimator class path, "
            "e.g. sklearn.ensemble.RandomForestClassifier"
        )
    module_name, cls_name = ".".join(parts[:-1]), parts[-1]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise InvalidInput(f"algorithm {algorithm!r}: there is no module {module_name}") from None
    cls: Any = getattr(module, cls_name, None)
    if cls is None:
        raise InvalidInput(f"algorithm {algorithm!r}: {module_name} has no {cls_name}")
    if not isinstance(cls, type) or not issubclass(cls, BaseEstimator):
        raise InvalidInput(f"algorithm {algorithm!r} is not a scikit-learn estimator class")
    accepted = {
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    unknown = sorted(set(hyperparameters) - accepted)
    if unknown:
        raise InvalidInput(
            f"{cls_name} has no hyperparameter(s) {', '.join(unknown)}; it accepts {', '.join(sorted(accepted))}"
        )
    kwargs = dict(hyperparameters)
    if "random_state" in accepted and "random_state" not in kwargs:
        kwargs["random_state"] = seed  # an explicit random_state in the hyperparameters wins
    try:
        estimator = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"cannot construct {cls_name}: {e}") from e
    if not (is_classifier(estimator) or is_regressor(estimator)):
        raise InvalidInput(f"algorithm {algorithm!r} is neither a classifier nor a regressor")
    return estimator


def task_for(estimator: Any, table: Table, inferred: str) -> str:
    """The estimator says whether it classifies or regresses; the target must be able to go along with it."""
    from sklearn.base import is_classifier

    if is_classifier(estimator):
        if inferred == REGRESSION and table.y.dtype.kind == "f":
            raise InvalidInput(f"{type(estimator).__name__} is a classifier but target {table.target!r} is continuous")
        return CLASSIFICATION
    if table.y.dtype.kind not in "biuf":
        raise InvalidInput(f"{type(estimator).__name__} is a regressor but target {table.target!r} is not numeric")
    return REGRESSION


def fit(estimator: Any, split: Split) -> None:
    try:
        estimator.fit(split.x_train, split.y_train)
    except (ValueError, TypeError) as e:
        # scikit-learn validates hyperparameter values (InvalidParameterError is both) and the data (NaN, inf)
        # here; the same config and data fail the same way every time, so it is invalid input, not a crash.
        raise InvalidInput(f"{type(estimator).__name__} rejected the hyperparameters or data: {e}") from e


def evaluate(estimator: Any, task: str, split: Split) -> dict[str, float]:
    pred = estimator.predict(split.x_val)
    if task == REGRESSION:
        return regression_metrics(split.y_val, pred)
    return classification_metrics(split.y_val, pred, _scores(estimator, split, len(split.classes)), split.classes)


def _scores(estimator: Any, split: Split, n_classes: int) -> np.ndarray[Any, Any] | None:
    """Class probabilities if the estimator has them; a binary decision function is as good for roc_auc, a
    multiclass one is not (one-vs-rest AUC needs probabilities)."""
    if hasattr(estimator, "predict_proba"):
        return np.asarray(estimator.predict_proba(split.x_val))
    if n_classes == 2 and hasattr(estimator, "decision_function"):
        return np.asarray(estimator.decision_function(split.x_val))
    return None


def save(estimator: Any, workdir: Path) -> LocalFile:
    import joblib  # type: ignore[import-untyped]

    path = workdir / "model.joblib"
    joblib.dump(estimator, path, compress=COMPRESS, protocol=PICKLE_PROTOCOL)
    return LocalFile(path, "joblib")


def train(split: Split, estimator: Any, workdir: Path, progress: Progress) -> Trained:
    task = CLASSIFICATION if split.classes else REGRESSION
    progress.emit("fit", estimator=type(estimator).__name__, trainRows=len(split.x_train))
    fit(estimator, split)
    metrics = evaluate(estimator, task, split)
    progress.emit("evaluate", validationRows=len(split.x_val), metrics=metrics)
    return Trained(
        task=task,
        metrics=metrics,
        artifact=save(estimator, workdir),
        libraries=library_versions("scikit-learn", "joblib"),
    )
