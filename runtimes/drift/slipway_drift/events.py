"""KServe payload-logger CloudEvents in, window rows out. Pure: no I/O.

Error messages name where the problem is, never the offending values: they are logged and returned, and a
payload may hold personal data.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from slipway_drift.config import Column

REQUEST, RESPONSE = "request", "response"
Value = float | str
Row = list[Value]
# A float matrix when no monitored column is a string (numpy all the way to the detector), else rows.
Batch = np.ndarray[Any, Any] | list[Row]


class EventError(ValueError):
    """An event that is refused as a whole; `reason` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _no_constants(name: str) -> Any:
    raise EventError("malformed", f"body: {name} is not allowed")


def loads(body: bytes, where: str = "body") -> Any:
    """JSON without Python's NaN/Infinity extensions (a NaN would poison a whole window's statistics), in strict
    UTF-8: json.loads would decode bytes with surrogatepass and take an encoded lone surrogate (ED A0 80)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EventError("malformed", f"{where}: invalid JSON (not UTF-8 at byte {e.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constants)
    except EventError:
        raise
    except (ValueError, UnicodeDecodeError) as e:
        raise EventError("malformed", f"{where}: invalid JSON ({type(e).__name__})") from None
    except RecursionError:  # thousands of nested brackets: no inference body is shaped like that
        raise EventError("malformed", f"{where}: invalid JSON (nested too deeply)") from None


def parse_cloudevent(headers: Mapping[str, str], content_type: str, body: bytes) -> tuple[str, Any]:
    """(REQUEST or RESPONSE, the inference body) from a binary- or structured-mode CloudEvent."""
    if content_type.split(";")[0].strip().lower() == "application/cloudevents+json":
        doc = loads(body)
        if not isinstance(doc, dict):
            raise EventError("malformed", "body: a structured CloudEvent must be a JSON object")
        for key in ("specversion", "type", "id", "source"):
            if not isinstance(doc.get(key), str):
                raise EventError("malformed", f"body.{key}: missing")
        kind = _kind(doc["type"])
        if kind == RESPONSE:
            return kind, None
        if "data" in doc:
            return kind, doc["data"]
        if isinstance(doc.get("data_base64"), str):
            try:
                raw = base64.b64decode(doc["data_base64"], validate=True)
            except (binascii.Error, ValueError):
                raise EventError("malformed", "body.data_base64: not base64") from None
            return kind, loads(raw, "body.data_base64")
        raise EventError("malformed", "body.data: missing")
    ce_type = headers.get("ce-type")
    if ce_type is None:
        raise EventError("malformed", "ce-type header: missing")
    for key in ("ce-id", "ce-source", "ce-specversion"):
        if key not in headers:
            raise EventError("malformed", f"{key} header: missing")
    kind = _kind(ce_type)
    if kind == RESPONSE:
        return kind, None
    mime = content_type.split(";")[0].strip().lower()
    if mime and mime != "application/json" and not mime.endswith("+json"):
        raise EventError("unsupported_type", f"content-type {mime}: only JSON inference bodies are monitored")
    return kind, loads(body)


def _kind(ce_type: str) -> str:
    if ce_type.endswith(".inference.request"):
        return REQUEST
    if ce_type.endswith(".inference.response"):
        return RESPONSE
    raise EventError("unsupported_type", "ce-type: expected an inference request or response event")


def extract_rows(data: Any, inputs: tuple[Column, ...], columns: tuple[Column, ...]) -> Batch:
    """Rows of `columns` (the monitored features, in order) from a v1 or v2 inference request body.

    `inputs` is the version's whole signature: positional v1 rows and v2 matrices are in its order.
    """
    if not isinstance(data, dict):
        raise EventError("malformed", "data: expected a JSON object")
    if "instances" in data:
        rows = _v1(data["instances"], inputs, columns)
    elif "inputs" in data:
        rows = _v2(data["inputs"], inputs, columns)
    else:
        raise EventError("malformed", "data: expected `instances` (v1) or `inputs` (v2)")
    if not len(rows):
        raise EventError("malformed", "data: no rows")
    if isinstance(rows, list) and not any(c.dtype == "string" for c in columns):
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(columns))
    return rows


def _v1(instances: Any, inputs: tuple[Column, ...], columns: tuple[Column, ...]) -> Batch:
    if not isinstance(instances, list):
        raise EventError("malformed", "instances: expected a list")
    index = {c.name: i for i, c in enumerate(inputs)}
    if instances and isinstance(instances[0], list):
        fast = numeric(instances, (len(instances), len(inputs)), columns)
        if fast is not None:
            return _select(fast, [index[c.name] for c in columns])
    rows: list[Row] = []
    for r, inst in enumerate(instances):
        if isinstance(inst, list):
            if len(inst) != len(inputs):
                raise EventError("malformed", f"instances[{r}]: expected {len(inputs)} values")
            rows.append([convert(inst[index[c.name]], c, f"instances[{r}].{c.name}") for c in columns])
        elif isinstance(inst, dict):
            missing = [c.name for c in columns if c.name not in inst]
            if missing:
                raise EventError("malformed", f"instances[{r}]: missing {', '.join(missing[:5])}")
            rows.append([convert(inst[c.name], c, f"instances[{r}].{c.name}") for c in columns])
        else:
            raise EventError("malformed", f"instances[{r}]: expected a list or an object")
    return rows


def _v2(tensors: Any, inputs: tuple[Column, ...], columns: tuple[Column, ...]) -> Batch:
    if not isinstance(tensors, list) or not all(isinstance(t, dict) for t in tensors) or not tensors:
        raise EventError("malformed", "inputs: expected a non-empty list of tensors")
    by_name = {t.get("name"): t for t in tensors}
    if all(c.name in by_name for c in columns):
        shaped = [_tensor(by_name[c.name], f"inputs.{c.name}", None) for c in columns]
        n = shaped[0][0][0]
        if any(shape[0] != n for shape, _ in shaped):
            raise EventError("malformed", "inputs: tensors differ in length")
        blocks = [numeric(data, (n, 1), (c,)) for (_, data), c in zip(shaped, columns, strict=True)]
        if not any(b is None for b in blocks):
            return np.hstack(blocks)  # type: ignore[arg-type]
        cols = [_flat(shape, data, f"inputs.{c.name}") for (shape, data), c in zip(shaped, columns, strict=True)]
        return [
            [convert(col[i], c, f"inputs.{c.name}[{i}]") for col, c in zip(cols, columns, strict=True)]
            for i in range(n)
        ]
    if len(tensors) == 1:
        width = len(inputs)
        shape, data = _tensor(tensors[0], "inputs[0]", width)
        index = {c.name: i for i, c in enumerate(inputs)}
        fast = numeric(data, (shape[0], width), columns)
        if fast is not None:
            return _select(fast, [index[c.name] for c in columns])
        flat = _flat(shape, data, "inputs[0]")
        return [
            [convert(flat[r * width + index[c.name]], c, f"inputs[0][{r}].{c.name}") for c in columns]
            for r in range(shape[0])
        ]
    missing = [c.name for c in columns if c.name not in by_name]
    raise EventError("malformed", f"inputs: no tensor for {', '.join(missing[:5])}")


def _tensor(tensor: dict[str, Any], where: str, width: int | None) -> tuple[list[int], list[Any]]:
    """A tensor's shape, which must be [N] or [N, 1] (width None) or [N, width], and its data, flat or nested."""
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise EventError("malformed", f"{where}.shape: expected a list of integers")
    ok = (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) if width is None else shape[1:] == [width]
    if not ok or len(shape) < 1 or shape[0] < 0:
        expected = "[N] or [N, 1]" if width is None else f"[N, {width}]"
        raise EventError("malformed", f"{where}.shape: expected {expected}")
    data = tensor.get("data")
    if not isinstance(data, list):
        raise EventError("malformed", f"{where}.data: expected a list")
    return shape, data


def _flat(shape: list[int], data: list[Any], where: str) -> list[Any]:
    """The elements, row-major, whether `data` came flat or nested (no deeper than the shape has dimensions)."""
    flat: list[Any] = []
    _flatten(data, flat, where, len(shape) - 1)
    if len(flat) != math.prod(shape):
        raise EventError("malformed", f"{where}.data: {len(flat)} elements for shape {shape}")
    return flat


def _flatten(data: list[Any], out: list[Any], where: str, depth_left: int) -> None:
    for item in data:
        if isinstance(item, list):
            if depth_left < 1:
                raise EventError("malformed", f"{where}.data: nested deeper than its shape")
            _flatten(item, out, where, depth_left - 1)
        else:
            out.append(item)


def _select(matrix: np.ndarray[Any, Any], index: list[int]) -> np.ndarray[Any, Any]:
    # A copy only when the monitored columns are not all of them, in order.
    return matrix if index == list(range(matrix.shape[1])) else matrix[:, index]


def numeric(values: list[Any], shape: tuple[int, int], columns: tuple[Column, ...]) -> np.ndarray[Any, Any] | None:
    """The fast path for all-numeric columns: one numpy conversion instead of a check per cell.

    None whenever anything is off (a string, a null, a ragged row, a NaN); the per-cell path then finds it
    and says where.
    """
    if any(c.categorical for c in columns):
        return None
    try:
        arr = np.array(values)
    except (ValueError, TypeError):
        return None
    # Kinds: float, signed and unsigned integers, booleans; strings ("U") and mixtures ("O") are checked per cell.
    # Nested as the shape says, or flat (v2 allows both); a row nested one level too deep has the right size too.
    if arr.dtype.kind not in "fiub" or arr.shape not in (shape, (shape[0] * shape[1],)):
        return None
    arr = arr.astype(np.float64, copy=False).reshape(shape)
    return arr if bool(np.isfinite(arr).all()) else None


def convert(value: Any, column: Column, where: str) -> Value:
    """One cell as stored in a window: a finite float, or a string for string columns."""
    if column.dtype == "string":
        if not isinstance(value, str):
            raise EventError("malformed", f"{where}: expected a string")
        return value
    if column.dtype == "bool":
        if isinstance(value, bool) or (isinstance(value, int | float) and value in (0, 1)):
            return float(value)
        raise EventError("malformed", f"{where}: expected a boolean")
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            f = float(value)
        except OverflowError:  # an integer literal too large for a double
            f = math.inf
        if math.isfinite(f):
            return f
        raise EventError("malformed", f"{where}: not a finite number")
    raise EventError("malformed", f"{where}: expected a number")
