"""Column selection, task inference, the canonical dataset hash and the split, without S3."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from slipway_trainer.config import DatasetSpec
from slipway_trainer.data import (
    CLASSIFICATION,
    REGRESSION,
    canonical_sha256,
    infer_task,
    read_bundled,
    reference_sample,
    select,
    signature,
    split,
)
from slipway_trainer.errors import InvalidInput


def frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.integers(0, 5, size=n).astype("int8"),
            "flag": rng.integers(0, 2, size=n).astype(bool),
            "label": np.where(rng.normal(size=n) > 0, "yes", "no"),
        }
    )


def spec(**kw: object) -> DatasetSpec:
    return DatasetSpec(uri="s3://data/t.csv", **kw)  # type: ignore[arg-type]


def test_selects_features_and_target_in_order() -> None:
    t = select(frame(), spec(target="label", features=("flag", "a")))
    assert list(t.x.columns) == ["flag", "a"] and t.target == "label" and t.rows == 40


def test_default_features_are_all_but_the_target_and_small_ints_widen() -> None:
    t = select(frame(), spec(target="label"))
    assert signature(t.x) == [
        {"name": "a", "dtype": "float64"},
        {"name": "b", "dtype": "int64"},
        {"name": "flag", "dtype": "bool"},
    ]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "target column 'target' is not in dataset s3://data/t.csv; it has columns 'a', 'b', 'flag', 'label'"),
        ({"target": "nope"}, "target column 'nope'"),
        ({"target": "label", "features": ("a", "zz", "yy")}, "feature column(s) 'zz', 'yy' not in dataset"),
        ({"target": "a", "features": ("label",)}, "feature column 'label' has dtype object"),
    ],
)
def test_bad_columns_are_invalid_input_naming_them(kw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as e:
        select(frame(), spec(**kw))
    assert message in str(e.value)


def test_rows_without_a_label_are_dropped_and_counted() -> None:
    f = frame()
    f.loc[:4, "a"] = np.nan
    t = select(f, spec(target="a", features=("b",)))
    assert t.rows == 35 and t.dropped_rows == 5


def test_too_few_rows() -> None:
    with pytest.raises(InvalidInput, match="at least 10"):
        select(frame(5), spec(target="label"))


@pytest.mark.parametrize(
    ("y", "task"),
    [
        (pd.Series(["a", "b", "a"]), CLASSIFICATION),
        (pd.Series([True, False]), CLASSIFICATION),
        (pd.Series([0, 1, 2, 1]), CLASSIFICATION),
        (pd.Series(np.arange(100)), REGRESSION),  # many whole numbers: a quantity
        (pd.Series([0.5, 1.25]), REGRESSION),
    ],
)
def test_infer_task(y: pd.Series, task: str) -> None:
    assert infer_task(y) == task


def test_whole_number_float_labels_become_ints() -> None:
    f = frame()
    f["y"] = (f["a"] > 0).astype(float)
    t = select(f, spec(target="y", features=("b",)))
    assert t.y.dtype == "int64" and infer_task(t.y) == CLASSIFICATION


def test_dataset_hash_is_the_content_not_the_file() -> None:
    f = frame()
    via_csv = pd.read_csv(io.BytesIO(f.to_csv(index=False).encode()), float_precision="round_trip")
    buf = io.BytesIO()
    f.to_parquet(buf, index=False)
    via_parquet = pd.read_parquet(io.BytesIO(buf.getvalue()))
    a, b = (select(x, spec(target="label", features=("a", "flag"))) for x in (via_csv, via_parquet))
    assert a.sha256 == b.sha256 and len(a.sha256) == 64
    changed = via_csv.copy()
    changed.loc[3, "a"] += 1e-9
    assert select(changed, spec(target="label", features=("a", "flag"))).sha256 != a.sha256
    # column order and names are part of the table
    assert canonical_sha256(a.x[["flag", "a"]], a.y) != a.sha256


def test_every_nan_hashes_alike() -> None:
    x1 = pd.DataFrame({"a": np.array([1.0, np.nan])})
    x2 = pd.DataFrame({"a": np.array([1.0, -np.float64("nan")])})  # a NaN with the sign bit set
    y = pd.Series([0, 1], name="t")
    assert canonical_sha256(x1, y) == canonical_sha256(x2, y)


def test_bundled_dataset_hash_is_stable() -> None:
    # Pinned: a change means the manifest's dataset.sha256 changes for every existing model of this dataset.
    t = select(read_bundled("iris"), DatasetSpec(uri="sklearn://iris"))
    assert t.rows == 150 and t.target == "target"
    assert t.sha256 == "35a4b510bb0f" + t.sha256[12:]


def test_split_is_stratified_and_deterministic() -> None:
    t = select(read_bundled("iris"), DatasetSpec(uri="sklearn://iris"))
    s1, s2, s3 = split(t, CLASSIFICATION, 1), split(t, CLASSIFICATION, 1), split(t, CLASSIFICATION, 2)
    assert (len(s1.x_train), len(s1.x_val)) == (120, 30) and s1.stratified and s1.classes == [0, 1, 2]
    assert np.bincount(s1.y_val).tolist() == [10, 10, 10]
    assert s1.x_val.index.equals(s2.x_val.index) and not s1.x_val.index.equals(s3.x_val.index)


def test_rare_class_falls_back_to_an_unstratified_split() -> None:
    f = frame()
    f.loc[0, "label"] = "once"
    s = split(select(f, spec(target="label")), CLASSIFICATION, 0)
    assert not s.stratified and s.classes == ["no", "once", "yes"]


def test_single_class_is_invalid() -> None:
    f = frame()
    f["label"] = "same"
    with pytest.raises(InvalidInput, match="single class"):
        split(select(f, spec(target="label")), CLASSIFICATION, 0)


def test_reference_sample_is_capped_and_seeded() -> None:
    x = pd.DataFrame({"a": np.arange(2500.0)})
    r1, r2 = reference_sample(x, 3), reference_sample(x, 3)
    assert len(r1) == 1000 and r1.equals(r2) and list(r1.index) == list(range(1000))
    assert len(reference_sample(x.head(10), 3)) == 10
