"""Windows against a reference with alibi-detect. CPU-bound: callers run these in a worker thread.

alibi-detect (and torch) take seconds to import, so they are imported on first use, never at module load:
the server answers health checks and ingests events while the import runs in the background.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from slipway_drift.config import MULTIVARIATE, Column, DetectorConfig
from slipway_drift.events import Batch, Row

SEED = 0
N_PERMUTATIONS = 100
Matrix = npt.NDArray[np.float64]
# Seeding is process-global: permutation tests of two monitors must not interleave, or neither is reproducible.
_seed_lock = threading.Lock()


def warm_up() -> None:
    """Import alibi-detect's detectors (seconds); called once in the background at start."""
    import alibi_detect.cd  # type: ignore[import-untyped]  # noqa: F401


@dataclass
class Reference:
    """A version's reference sample, column by column, with the category codes learnt from it."""

    columns: tuple[Column, ...]
    matrix: Matrix
    codes: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def from_columns(cls, columns: tuple[Column, ...], data: dict[str, Sequence[Any]]) -> Reference:
        codes = {c.name: {v: i for i, v in enumerate(sorted({str(x) for x in data[c.name]}))}
                 for c in columns if c.dtype == "string"}  # fmt: skip
        n = len(data[columns[0].name]) if columns else 0
        matrix = np.empty((n, len(columns)), dtype=np.float64)
        for j, c in enumerate(columns):
            if c.dtype == "string":
                matrix[:, j] = [codes[c.name][str(x)] for x in data[c.name]]
            else:
                matrix[:, j] = np.asarray(data[c.name], dtype=np.float64)
        return cls(columns, matrix, codes)


def encode(rows: Batch | Sequence[Row], columns: tuple[Column, ...], codes: dict[str, dict[str, int]]) -> Matrix:
    """Window rows as a float matrix; a category the reference never had gets a fresh code of its own."""
    if isinstance(rows, np.ndarray):
        return rows.astype(np.float64, copy=False)
    strings = [j for j, c in enumerate(columns) if c.dtype == "string"]
    if not strings:
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(columns))
    out = np.empty((len(rows), len(columns)), dtype=np.float64)
    for j, c in enumerate(columns):
        col = [r[j] for r in rows]
        if j in strings:
            known = dict(codes.get(c.name, {}))
            for v in col:
                known.setdefault(str(v), len(known))
            out[:, j] = [known[str(v)] for v in col]
        else:
            out[:, j] = np.asarray(col, dtype=np.float64)
    return out


def corrected_p(p_values: npt.NDArray[Any], correction: str) -> float:
    """The smallest p-value after correction: Bonferroni, or the smallest Benjamini-Hochberg adjusted p."""
    p = np.asarray(p_values, dtype=np.float64)
    n = len(p)
    if correction == "bonferroni":
        return float(min(1.0, p.min() * n))
    ranked = np.sort(p) * n / np.arange(1, n + 1)
    # BH adjusted p_(i) = min over j >= i of p_(j) n / j; the smallest of them is the overall minimum.
    return float(min(1.0, ranked.min()))


class Detector:
    """One alibi-detect detector for one (monitor, version, config), built once and reused per window."""

    def __init__(self, config: DetectorConfig, reference: Reference) -> None:
        from alibi_detect.cd import ChiSquareDrift, KSDrift, LSDDDrift, MMDDrift, TabularDrift

        self.config, self.reference = config, reference
        self.multivariate = config.method in MULTIVARIATE
        x_ref, p, corr = reference.matrix, config.p_value, config.correction
        if config.method == "ks":
            self.cd: Any = KSDrift(x_ref, p_val=p, correction=corr)
        elif config.method == "chisquare":
            self.cd = ChiSquareDrift(x_ref, p_val=p, correction=corr)
        elif config.method == "tabular":
            cats = {j: None for j, c in enumerate(reference.columns) if c.categorical}
            self.cd = TabularDrift(x_ref, p_val=p, categories_per_feature=cats, correction=corr)
        else:
            # The PyTorch backends fail on float64: both sides are float32.
            cls = MMDDrift if config.method == "mmd" else LSDDDrift
            with _seed_lock:
                seed()  # LSDD draws its kernel centres at construction
                self.cd = cls(x_ref.astype(np.float32), backend="pytorch", p_val=p, n_permutations=N_PERMUTATIONS)

    def matrix(self, rows: Batch | Sequence[Row]) -> npt.NDArray[Any]:
        x = encode(rows, self.reference.columns, self.reference.codes)
        return x.astype(np.float32) if self.multivariate else x

    def predict(self, x: npt.NDArray[Any]) -> dict[str, Any]:
        if not self.multivariate:
            return dict(self.cd.predict(x, drift_type="batch", return_p_val=True, return_distance=True)["data"])
        with _seed_lock:
            seed()
            return dict(self.cd.predict(x, return_p_val=True, return_distance=True)["data"])

    def run(self, rows: Batch | Sequence[Row]) -> dict[str, Any]:
        """The result fields of one window (without seq, time, version and role)."""
        start = time.perf_counter()
        data = self.predict(self.matrix(rows))
        return summarise(data, self.config, [c.name for c in self.reference.columns], len(rows), start)


def summarise(data: dict[str, Any], config: DetectorConfig, names: list[str], n: int, start: float) -> dict[str, Any]:
    threshold = data["threshold"]
    # alibi's FDR threshold is the array of BH thresholds when nothing is significant; its largest is pValue.
    threshold = float(np.max(threshold))
    if config.method in MULTIVARIATE:
        p_value, distance, features = float(data["p_val"]), float(data["distance"]), {}
    else:
        p_vals = np.asarray(data["p_val"], dtype=np.float64)
        p_value = corrected_p(p_vals, config.correction)
        distance = float(np.asarray(data["distance"])[int(np.argmin(p_vals))])
        features = {name: float(p) for name, p in zip(names, p_vals, strict=True)}
    return {
        "samples": n,
        "drift": bool(data["is_drift"]),
        "pValue": p_value,
        "threshold": threshold,
        "distance": distance,
        "featurePValues": features,
        "durationSeconds": time.perf_counter() - start,
        "method": config.method,
    }


def seed() -> None:
    import torch

    torch.manual_seed(SEED)
    np.random.seed(SEED)
