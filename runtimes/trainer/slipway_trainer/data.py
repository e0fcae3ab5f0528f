"""Datasets: read, pick the columns, infer the task, hash the canonical table, split train/validation."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from slipway_trainer.config import DatasetSpec
from slipway_trainer.errors import InvalidInput
from slipway_trainer.s3 import S3

DEFAULT_TARGET = "target"
VALIDATION_FRACTION = 0.2
# An integer-valued target with at most this many distinct values is taken as class labels; more, as a quantity.
MAX_CLASSES = 20
MIN_ROWS = 10
# The signature dtypes a ModelVersion accepts; other numeric dtypes are widened into one of these.
SIGNATURE_DTYPES = ("float64", "float32", "int64", "int32", "bool")
CLASSIFICATION, REGRESSION = "classification", "regression"


@dataclass
class Table:
    """The canonical training table: feature columns in order, the target, and the hash of both."""

    x: pd.DataFrame
    y: pd.Series
    target: str
    sha256: str
    dropped_rows: int = 0

    @property
    def rows(self) -> int:
        return len(self.x)


@dataclass
class Split:
    x_train: pd.DataFrame
    x_val: pd.DataFrame
    y_train: np.ndarray[Any, Any]
    y_val: np.ndarray[Any, Any]
    stratified: bool
    classes: list[Any] = field(default_factory=list)  # sorted labels, classification only


def load_table(spec: DatasetSpec, s3: S3) -> Table:
    frame = read_bundled(spec.bundled_name) if spec.bundled_name else read_s3(spec, s3)
    return select(frame, spec)


def read_bundled(name: str) -> pd.DataFrame:
    # The five loaders ship their data inside scikit-learn: nothing is downloaded.
    from sklearn import datasets  # type: ignore[import-untyped]

    loader = getattr(datasets, f"load_{name}", None)
    if loader is None:
        raise InvalidInput(f"unknown bundled dataset sklearn://{name}")
    return loader(as_frame=True).frame


def read_s3(spec: DatasetSpec, s3: S3) -> pd.DataFrame:
    fmt = spec.format or _guess_format(spec.uri)
    data = s3.get_bytes(spec.uri)
    try:
        if fmt == "parquet":
            return pd.read_parquet(io.BytesIO(data))
        # round_trip: the C parser's default can be off by an ulp, and the data (and its hash) should be exact.
        compression = "gzip" if spec.uri.endswith(".gz") else None
        return pd.read_csv(io.BytesIO(data), compression=compression, float_precision="round_trip")
    except (ValueError, OSError) as e:  # pandas' and pyarrow's parse errors are ValueErrors (or IOErrors)
        raise InvalidInput(f"cannot parse {spec.uri} as {fmt}: {e}") from e


def _guess_format(uri: str) -> str:
    key = uri.lower().removesuffix(".gz")
    if key.endswith(".csv"):
        return "csv"
    if key.endswith((".parquet", ".pq")):
        return "parquet"
    raise InvalidInput(f"cannot tell the format of {uri} from its name: set dataset.format to csv or parquet")


def select(frame: pd.DataFrame, spec: DatasetSpec) -> Table:
    """Pick target and features, check their types, drop rows without a label, hash the result."""
    target = spec.target or DEFAULT_TARGET
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if target not in columns:
        raise InvalidInput(f"target column {target!r} is not in dataset {spec.uri}; it has {_some(columns)}")
    features = list(spec.features) if spec.features else [c for c in columns if c != target]
    missing = [f for f in features if f not in columns]
    if missing:
        raise InvalidInput(f"feature column(s) {', '.join(map(repr, missing))} not in dataset {spec.uri}")
    if not features:
        raise InvalidInput(f"dataset {spec.uri} has no feature columns besides the target {target!r}")
    labelled = frame[frame[target].notna()]
    if len(labelled) < MIN_ROWS:
        raise InvalidInput(f"dataset {spec.uri} has {len(labelled)} labelled rows; at least {MIN_ROWS} are needed")
    x = pd.DataFrame({f: _feature_column(labelled[f], f) for f in features}).reset_index(drop=True)
    y = _target_column(labelled[target].reset_index(drop=True))
    return Table(x=x, y=y, target=target, sha256=canonical_sha256(x, y), dropped_rows=len(frame) - len(labelled))


def _some(columns: list[str], n: int = 20) -> str:
    shown = ", ".join(map(repr, columns[:n]))
    return f"columns {shown}" + (f" and {len(columns) - n} more" if len(columns) > n else "")


def _feature_column(col: pd.Series, name: str) -> pd.Series:
    """Keep the signature dtypes; widen other numbers (small ints, nullable ints with gaps); refuse the rest."""
    dtype = str(col.dtype)
    if dtype in SIGNATURE_DTYPES:
        return col
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        if pd.api.types.is_integer_dtype(col.dtype) and not col.isna().any() and dtype not in ("uint64", "UInt64"):
            return col.astype("int64")
        if dtype in ("float16", "Float32"):
            return col.astype("float32")
        return pd.Series(col.to_numpy(dtype="float64", na_value=np.nan), name=col.name, index=col.index)
    raise InvalidInput(f"feature column {name!r} has dtype {dtype}: only numeric and boolean features are supported")


def _target_column(y: pd.Series) -> pd.Series:
    # Whole-number floats (a CSV's "1.0") become ints so class labels read as 0, 1, 2 in the manifest.
    if pd.api.types.is_float_dtype(y.dtype):
        values = y.to_numpy(dtype="float64")
        if np.all(np.mod(values, 1) == 0) and np.abs(values).max() < 2**53:
            return y.astype("int64")
        return y
    if pd.api.types.is_numeric_dtype(y.dtype) or pd.api.types.is_bool_dtype(y.dtype):
        return y
    return y.astype(str)


def infer_task(y: pd.Series) -> str:
    """Labels that are not numbers are classes; fractional numbers are a quantity; whole numbers are classes
    when there are few distinct values (<= MAX_CLASSES), else a quantity (diabetes progression, prices)."""
    if pd.api.types.is_bool_dtype(y.dtype) or not pd.api.types.is_numeric_dtype(y.dtype):
        return CLASSIFICATION
    if not pd.api.types.is_integer_dtype(y.dtype):
        return REGRESSION
    return CLASSIFICATION if y.nunique() <= MAX_CLASSES else REGRESSION


def canonical_sha256(x: pd.DataFrame, y: pd.Series) -> str:
    """Hash of the table's content, independent of the file it came from (CSV or Parquet, compressed or not):
    a JSON header of column names, dtypes and row count, then each column in order, numbers as little-endian
    bytes of their dtype (every NaN the same bytes), strings as 8-byte little-endian length + UTF-8."""
    h = hashlib.sha256()
    cols = [(str(c), x[c]) for c in x.columns] + [(str(y.name), y)]
    header = {"columns": [[name, str(col.dtype)] for name, col in cols], "rows": len(x)}
    h.update(json.dumps(header, separators=(",", ":")).encode())
    for _, col in cols:
        if pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
            arr = np.ascontiguousarray(col.to_numpy())
            if arr.dtype.kind == "f":
                arr = np.where(np.isnan(arr), np.nan, arr).astype(arr.dtype)
            h.update(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
        else:
            for v in col.tolist():
                b = str(v).encode()
                h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()


def split(table: Table, task: str, seed: int) -> Split:
    """80/20 by seed; stratified for classification unless a class is too rare to appear on both sides."""
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

    y = table.y.to_numpy()
    classes: list[Any] = []
    stratify = None
    if task == CLASSIFICATION:
        labels, counts = np.unique(y, return_counts=True)
        if len(labels) < 2:
            raise InvalidInput(f"target {table.target!r} has a single class ({labels[0]!r}): nothing to learn")
        classes = [v.item() if hasattr(v, "item") else v for v in labels]
        stratify = y if counts.min() >= 2 and round(VALIDATION_FRACTION * len(y)) >= len(labels) else None
    x_train, x_val, y_train, y_val = train_test_split(
        table.x, y, test_size=VALIDATION_FRACTION, random_state=seed, stratify=stratify
    )
    return Split(x_train, x_val, y_train, y_val, stratified=stratify is not None, classes=classes)


def signature(x: pd.DataFrame) -> list[dict[str, str]]:
    return [{"name": str(c), "dtype": str(x[c].dtype)} for c in x.columns]


def reference_sample(x_train: pd.DataFrame, seed: int, max_rows: int = 1000) -> pd.DataFrame:
    """The drift baseline: training inputs only, at most max_rows, the same rows for the same seed."""
    sample = x_train if len(x_train) <= max_rows else x_train.sample(n=max_rows, random_state=seed)
    return sample.reset_index(drop=True)
