"""Checking requests against the signature and turning them into a frame: columns in signature order, each
with its dtype. Anything that does not fit raises kserve's InvalidInput (HTTP 400) naming the field, so a bad
request never reaches the model and never answers 500.

v1: {"instances": [[v, ...], ...]} (rows in signature order) or {"instances": [{"col": v, ...}, ...]}.
v2: {"inputs": [{"name": "<column>", "shape": [N] or [N, 1], "datatype": ..., "data": [...]}, ...]} (one
tensor per column), or one tensor of shape [N, <number of columns>], FP64 or FP32, named anything else.
"""

from __future__ import annotations

import math
import reprlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from kserve.errors import InvalidInput  # type: ignore[import-untyped]

from slipway_predictor.config import Column

_INTS = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
# The v2 datatypes a column of each signature dtype accepts: any number for a float column, but no fractions
# for an integer one and no numbers standing in for booleans or strings.
V2_DATATYPES: dict[str, tuple[str, ...]] = {
    "float64": ("FP64", "FP32", "FP16", *_INTS),
    "float32": ("FP64", "FP32", "FP16", *_INTS),
    "int64": _INTS,
    "int32": _INTS,
    "bool": ("BOOL",),
    "string": ("BYTES",),
}
MATRIX_DATATYPES = ("FP64", "FP32")
NUMPY_DTYPES = {"float64": np.float64, "float32": np.float32, "int64": np.int64, "int32": np.int32, "bool": np.bool_}
V2_OF_DTYPE = {"float64": "FP64", "float32": "FP32", "int64": "INT64", "int32": "INT32", "bool": "BOOL"}
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT_RANGE = {"int64": (-(2**63), 2**63 - 1), "int32": (-(2**31), 2**31 - 1)}
_EXPECTED = {
    "float64": "a number",
    "float32": "a number",
    "int64": "an integer",
    "int32": "an integer",
    "bool": "true or false",
    "string": "a string",
}


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 3, 4, 4, 40, 40


def _show(value: Any) -> str:
    """The offending value, short: a message must name the problem, not echo a large payload back (and a
    value nested a thousand lists deep must not exhaust the recursion limit on the way)."""
    text = "null" if value is None else _SHORT.repr(value) if isinstance(value, list | dict) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(where: str, column: Column, value: Any) -> Exception:
    what = _EXPECTED[column.dtype]
    err: Exception = InvalidInput(
        f"{where}: expected {what} for column {column.name!r} ({column.dtype}), got {_show(value)}"
    )
    return err


def _within(value: float, limit: float) -> bool:
    try:
        f = float(value)
    except OverflowError:  # an int with hundreds of digits
        return False
    return math.isfinite(f) and abs(f) <= limit


def _coerce(value: Any, column: Column, where: str) -> Any:
    """One value for one column, or InvalidInput. null is refused everywhere: the trainer's models are fitted
    on complete data, and a missing value should be the client's decision to fill, not the server's."""
    dtype, kind = column.dtype, type(value)
    if dtype in ("float64", "float32"):
        # A float32 column cannot hold what float64 can; an int beyond any float is refused as well.
        limit = _FLOAT32_MAX if dtype == "float32" else sys.float_info.max
        if kind not in (int, float) or not _within(value, limit):
            raise _bad(where, column, value)
        return value
    if dtype in ("int64", "int32"):
        if kind is float and value.is_integer():
            value, kind = int(value), int
        lo, hi = _INT_RANGE[dtype]
        if kind is not int or not lo <= value <= hi:
            raise _bad(where, column, value)
        return value
    if dtype == "bool":
        if kind is bool:
            return value
        if kind in (int, float) and value in (0, 1):
            return bool(value)
        raise _bad(where, column, value)
    if kind is not str:
        raise _bad(where, column, value)
    return value


class Schema:
    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = tuple(columns)
        self.index = {c.name: i for i, c in enumerate(self.columns)}

    def _names(self, limit: int = 8) -> str:
        names = [c.name for c in self.columns]
        more = f", ... ({len(names)} in all)" if len(names) > limit else ""
        return ", ".join(names[:limit]) + more

    def frame(self, values: list[list[Any]]) -> pd.DataFrame:
        data = {
            c.name: np.asarray(v, dtype=NUMPY_DTYPES.get(c.dtype, object))
            for c, v in zip(self.columns, values, strict=True)
        }
        return pd.DataFrame(data, columns=[c.name for c in self.columns])

    def _check_missing(self, where: str, given: dict[str, Any]) -> None:
        missing = [c.name for c in self.columns if c.name not in given]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise InvalidInput(f"{where}: missing column {missing[0]!r}{more}")

    # ---- v1 ----

    def from_v1(self, body: Any) -> pd.DataFrame:
        if not isinstance(body, dict):
            raise InvalidInput('the request body must be a JSON object with "instances"')
        instances = body.get("instances")
        if instances is None:
            raise InvalidInput(f'"instances" is required: a list of rows, each a list in the order {self._names()}')
        if not isinstance(instances, list) or not instances:
            raise InvalidInput('"instances" must be a non-empty list of rows')
        values: list[list[Any]] = [[] for _ in self.columns]
        for i, row in enumerate(instances):
            if isinstance(row, list):
                self._list_row(row, f"instances[{i}]", values)
            elif isinstance(row, dict):
                self._dict_row(row, f"instances[{i}]", values)
            else:
                raise InvalidInput(
                    f"instances[{i}]: a row must be a list of {len(self.columns)} values in signature order or an "
                    f"object keyed by column name, got {_show(row)}"
                )
        return self.frame(values)

    def _list_row(self, row: list[Any], where: str, values: list[list[Any]]) -> None:
        if len(row) != len(self.columns):
            raise InvalidInput(
                f"{where}: expected {len(self.columns)} values in the order {self._names()}; got {len(row)}"
            )
        for j, (column, value) in enumerate(zip(self.columns, row, strict=True)):
            values[j].append(_coerce(value, column, f"{where}[{j}]"))

    def _dict_row(self, row: dict[str, Any], where: str, values: list[list[Any]]) -> None:
        unknown = [k for k in row if k not in self.index]
        if unknown:
            raise InvalidInput(f"{where}: unknown column {unknown[0]!r}; the model takes {self._names()}")
        self._check_missing(where, row)
        for j, column in enumerate(self.columns):
            values[j].append(_coerce(row[column.name], column, f"{where}[{column.name!r}]"))

    # ---- v2 ----

    def from_v2(self, inputs: Sequence[Any]) -> pd.DataFrame:
        """`inputs`: kserve InferInput objects (name, shape, datatype, data)."""
        if not inputs:
            raise InvalidInput('"inputs" must hold one tensor per column, or one 2-D tensor of all columns')
        if len(inputs) == 1 and inputs[0].name not in self.index and len(_shape(inputs[0])) == 2:
            return self._matrix(inputs[0])
        by_name: dict[str, Any] = {}
        for tensor in inputs:
            if tensor.name not in self.index:
                raise InvalidInput(
                    f"inputs[{tensor.name!r}]: the model has no column {tensor.name!r}; it takes {self._names()}"
                )
            if tensor.name in by_name:
                raise InvalidInput(f"inputs[{tensor.name!r}]: the column is given more than once")
            by_name[tensor.name] = tensor
        self._check_missing("inputs", by_name)
        values = [self._column(by_name[c.name], c) for c in self.columns]
        first = self.columns[0].name
        for column, vals in zip(self.columns, values, strict=True):
            if len(vals) != len(values[0]):
                raise InvalidInput(
                    f"inputs[{column.name!r}]: {len(vals)} rows, but inputs[{first!r}] has {len(values[0])}"
                )
        return self.frame(values)

    def _column(self, tensor: Any, column: Column) -> list[Any]:
        where = f"inputs[{tensor.name!r}]"
        allowed = V2_DATATYPES[column.dtype]
        if tensor.datatype not in allowed:
            raise InvalidInput(
                f"{where}: datatype {tensor.datatype} does not fit column dtype {column.dtype} "
                f"(use {', '.join(allowed[:3])})"
            )
        shape = _shape(tensor)
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1) or shape[0] < 1:
            raise InvalidInput(f"{where}: shape {shape} must be [N] or [N, 1] with N >= 1 (one value per row)")
        data = _flat_data(tensor, where, shape[0])
        return [_coerce(v, column, f"{where}.data[{k}]") for k, v in enumerate(data)]

    def _matrix(self, tensor: Any) -> pd.DataFrame:
        where, width = f"inputs[{tensor.name!r}]", len(self.columns)
        if not all(c.numeric for c in self.columns):
            raise InvalidInput(
                f"{where}: the model has string columns, so send one tensor per column ({self._names()})"
            )
        if tensor.datatype not in MATRIX_DATATYPES:
            raise InvalidInput(f"{where}: a tensor of all columns must be FP64 or FP32, got {tensor.datatype}")
        shape = _shape(tensor)
        if len(shape) != 2 or shape[1] != width or shape[0] < 1:
            raise InvalidInput(
                f"{where}: shape {shape} must be [N, {width}] (one column per signature input, in the order "
                f"{self._names()}), or send one tensor per column named after it"
            )
        data = _flat_data(tensor, where, shape[0] * width)
        values: list[list[Any]] = [[] for _ in self.columns]
        for k, v in enumerate(data):
            row, j = divmod(k, width)
            values[j].append(_coerce(v, self.columns[j], f"{where}.data[{row}][{j}]"))
        return self.frame(values)


def _shape(tensor: Any) -> list[int]:
    shape = tensor.shape
    if not isinstance(shape, list | tuple) or not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidInput(
            f"inputs[{tensor.name!r}]: shape must be a list of non-negative integers, got {_show(shape)}"
        )
    return list(shape)


def _flat_data(tensor: Any, where: str, expected: int) -> list[Any]:
    """The tensor's values in row-major order; v2 allows `data` to be flat or nested like the shape."""
    data = tensor.data
    if isinstance(data, np.ndarray):  # binary-encoded inputs arrive decoded by kserve
        data = data.tolist()
    if not isinstance(data, list):
        raise InvalidInput(f"{where}: data must be a list, got {_show(data)}")
    flat = _flatten(data, [])
    if len(flat) != expected:
        raise InvalidInput(f"{where}: data has {len(flat)} values but shape {tensor.shape} needs {expected}")
    return flat


def _flatten(data: list[Any], out: list[Any], depth: int = 0) -> list[Any]:
    if depth > 4:
        raise InvalidInput("inputs: data is nested deeper than a tensor of these shapes can be")
    for v in data:
        if isinstance(v, list):
            _flatten(v, out, depth + 1)
        else:
            out.append(v)
    return out
