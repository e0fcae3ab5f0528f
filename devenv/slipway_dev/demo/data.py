"""The demo's data: scikit-learn's breast-cancer set as it is, and as a new scanner would measure it."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

# A recalibrated scanner reads sizes 25% larger: radius, perimeter and area drift, the labels do not.
SHIFTED = ("radius", "perimeter", "area")
SCALE = 1.25


def frame() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    out: pd.DataFrame = data.frame
    return out


def shift(x: pd.DataFrame) -> pd.DataFrame:
    out = x.copy()
    for column in out.columns:
        if any(word in column for word in SHIFTED):
            out[column] = out[column] * SCALE
    return out


def rows(shifted: bool = False) -> list[Sequence[float]]:
    """Request rows in signature order (the bundled dataset's feature order)."""
    x = frame().drop(columns=["target"])
    values: Any = (shift(x) if shifted else x).to_numpy(dtype=np.float64)
    return [list(map(float, r)) for r in values]


def recent_parquet() -> bytes:
    """The labelled recent data retraining uses: the shifted measurements with their diagnoses."""
    f = frame()
    recent = shift(f.drop(columns=["target"]))
    recent["target"] = f["target"]
    buf = io.BytesIO()
    recent.to_parquet(buf, index=False)
    return buf.getvalue()
