"""Resolving the estimator from the config, and a byte-for-byte repeatable artifact."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from slipway_trainer.config import DatasetSpec
from slipway_trainer.data import CLASSIFICATION, REGRESSION, infer_task, read_bundled, select, split
from slipway_trainer.errors import InvalidInput
from slipway_trainer.sklearn_backend import fit, resolve_estimator, save, task_for


def test_resolves_with_kwargs_and_seed() -> None:
    est = resolve_estimator("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 7}, seed=3)
    assert type(est).__name__ == "RandomForestClassifier"
    assert est.n_estimators == 7 and est.random_state == 3


def test_explicit_random_state_wins_and_estimators_without_one_are_fine() -> None:
    est = resolve_estimator("sklearn.tree.DecisionTreeRegressor", {"random_state": 11}, seed=3)
    assert est.random_state == 11
    assert resolve_estimator("sklearn.neighbors.KNeighborsClassifier", {"n_neighbors": 3}, seed=3).n_neighbors == 3


@pytest.mark.parametrize(
    ("algorithm", "hyperparameters", "message"),
    [
        ("sklearn.ensemble.RandomForestClassifer", {}, "sklearn.ensemble has no RandomForestClassifer"),
        ("sklearn.nonexistent.Thing", {}, "there is no module sklearn.nonexistent"),
        ("os.system", {}, "public scikit-learn estimator class path"),
        ("sklearn.ensemble._forest.RandomForestClassifier", {}, "public scikit-learn estimator class path"),
        ("RandomForestClassifier", {}, "public scikit-learn estimator class path"),
        ("sklearn.model_selection.train_test_split", {}, "is not a scikit-learn estimator class"),
        ("sklearn.preprocessing.StandardScaler", {}, "neither a classifier nor a regressor"),
        ("sklearn.cluster.KMeans", {}, "neither a classifier nor a regressor"),
        ("sklearn.ensemble.RandomForestClassifier", {"n_estimator": 5}, "has no hyperparameter(s) n_estimator"),
        ("sklearn.multiclass.OneVsRestClassifier", {}, "cannot construct OneVsRestClassifier"),
    ],
)
def test_bad_algorithm_or_kwargs_is_invalid_input(
    algorithm: str, hyperparameters: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput) as e:
        resolve_estimator(algorithm, hyperparameters, seed=0)
    assert message in str(e.value)


def test_bad_hyperparameter_value_is_invalid_input_at_fit() -> None:
    t = select(read_bundled("iris"), DatasetSpec(uri="sklearn://iris"))
    est = resolve_estimator("sklearn.ensemble.RandomForestClassifier", {"n_estimators": -1}, seed=0)
    with pytest.raises(InvalidInput, match=r"^RandomForestClassifier rejected the hyperparameters or data: ") as err:
        fit(est, split(t, CLASSIFICATION, 0))
    assert isinstance(err.value.__cause__, ValueError)  # scikit-learn's own complaint, whatever its words


def test_estimator_decides_the_task_when_the_target_allows() -> None:
    diabetes = select(read_bundled("diabetes"), DatasetSpec(uri="sklearn://diabetes"))
    iris = select(read_bundled("iris"), DatasetSpec(uri="sklearn://iris"))
    reg = resolve_estimator("sklearn.linear_model.Ridge", {}, 0)
    clf = resolve_estimator("sklearn.linear_model.LogisticRegression", {}, 0)
    assert task_for(reg, iris, infer_task(iris.y)) == REGRESSION  # class numbers can be regressed on
    assert task_for(clf, iris, infer_task(iris.y)) == CLASSIFICATION
    # diabetes' target is whole numbers with many values: a classifier would make each its own class
    assert task_for(clf, diabetes, infer_task(diabetes.y)) == CLASSIFICATION
    diabetes.y = diabetes.y + 0.5
    with pytest.raises(InvalidInput, match="is a classifier but target 'target' is continuous"):
        task_for(clf, diabetes, infer_task(diabetes.y))


def test_artifact_bytes_repeat(tmp_path: Path) -> None:
    t = select(read_bundled("wine"), DatasetSpec(uri="sklearn://wine"))
    digests = []
    for i in range(2):
        est = resolve_estimator("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 5}, seed=9)
        fit(est, split(t, CLASSIFICATION, 9))
        (tmp_path / str(i)).mkdir()
        digests.append(hashlib.sha256(save(est, tmp_path / str(i)).path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
