"""The open window of one version: batches of rows as they were accepted. Pure: no I/O.

A batch is a float matrix when every monitored column is numeric or boolean (the common case, kept as numpy from
extraction to the detector), and a list of rows when a string column is among them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from slipway_drift.config import Column
from slipway_drift.events import Batch, Row


def as_batch(rows: Sequence[Row], columns: tuple[Column, ...]) -> Batch:
    """Rows read back from disk, in the form extraction gives for these columns."""
    if any(c.dtype == "string" for c in columns):
        return list(rows)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(columns))


def as_rows(batch: Batch) -> list[Row]:
    """JSON-ready rows."""
    return batch.tolist() if isinstance(batch, np.ndarray) else batch


def combine(batches: Sequence[Batch]) -> Batch:
    if batches and all(isinstance(b, np.ndarray) for b in batches):
        return np.concatenate(batches)
    rows: list[Row] = []
    for b in batches:
        rows.extend(as_rows(b))
    return rows


class Window:
    def __init__(self, batches: Sequence[Batch] = ()) -> None:
        self.batches: list[Batch] = [b for b in batches if len(b)]
        self.size = sum(len(b) for b in self.batches)

    def __len__(self) -> int:
        return self.size

    def add(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.size += len(batch)

    def rows(self) -> Batch:
        return combine(self.batches)


def split(batch: Batch, n: int) -> tuple[Batch, Batch]:
    """The first `n` rows and the rest."""
    head: Any = batch[:n]
    tail: Any = batch[n:]
    return head, tail
