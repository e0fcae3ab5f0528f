"""Request checking against the signature, in process: every dtype, both protocols, and the messages."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput
from slipway_predictor.config import Column
from slipway_predictor.schema import Schema

SCHEMA = Schema(
    [
        Column("f64", "float64"),
        Column("f32", "float32"),
        Column("i64", "int64"),
        Column("i32", "int32"),
        Column("flag", "bool"),
        Column("city", "string"),
    ]
)
ROW = [1.5, 2, 3, 4.0, True, "Oslo"]


def _nested(depth: int) -> list[Any]:
    value: list[Any] = [1.0]
    for _ in range(depth - 1):
        value = [value]
    return value


def tensor(name: str, data: list[Any], datatype: str, shape: list[int] | None = None) -> InferInput:
    return InferInput(name, shape or [len(data)], datatype, data)


def columns(rows: list[list[Any]]) -> list[InferInput]:
    types = ["FP64", "FP32", "INT64", "INT32", "BOOL", "BYTES"]
    return [tensor(c.name, [r[j] for r in rows], types[j]) for j, c in enumerate(SCHEMA.columns)]


def test_v1_rows_become_a_typed_frame() -> None:
    frame = SCHEMA.from_v1({"instances": [ROW, dict(zip([c.name for c in SCHEMA.columns], ROW, strict=True))]})
    assert list(frame.columns) == ["f64", "f32", "i64", "i32", "flag", "city"]
    assert [str(t) for t in frame.dtypes] == ["float64", "float32", "int64", "int32", "bool", "object"]
    assert frame.iloc[1].tolist() == [1.5, 2.0, 3, 4, True, "Oslo"]


@pytest.mark.parametrize(
    ("j", "value", "message"),
    [
        (0, "1.5", "instances[0][0]: expected a number for column 'f64' (float64), got '1.5'"),
        (0, None, "got null"),
        (0, 10**400, "expected a number"),
        (1, 1e39, "expected a number for column 'f32' (float32)"),
        (2, 2.5, "instances[0][2]: expected an integer for column 'i64' (int64), got 2.5"),
        (2, True, "expected an integer"),
        (3, 2**31, "expected an integer for column 'i32' (int32), got 2147483648"),
        (4, 2, "instances[0][4]: expected true or false for column 'flag' (bool), got 2"),
        (4, "yes", "expected true or false"),
        (5, 7, "instances[0][5]: expected a string for column 'city' (string), got 7"),
        (0, "x" * 100, "got '" + "x" * 56 + "..."),  # a long value is cut short
        # Regression (payload fuzzing): showing a value nested 1,000 lists deep raised RecursionError (a 500).
        (0, _nested(1_000), "instances[0][0]: expected a number for column 'f64' (float64), got [[[[...]]]]"),
        (0, [[1.0] * 100], "got [[1.0, 1.0, 1.0, 1.0, ...]]"),
    ],
)
def test_v1_values_that_do_not_fit(j: int, value: Any, message: str) -> None:
    row = [*ROW[:j], value, *ROW[j + 1 :]]
    with pytest.raises(InvalidInput) as err:
        SCHEMA.from_v1({"instances": [row]})
    assert message in str(err.value)


def test_v1_accepts_what_json_makes_of_numbers() -> None:
    # 3.0 for an integer column and 0/1 for a bool are what many clients send.
    frame = SCHEMA.from_v1({"instances": [[1, 2.0, 3.0, -4, 0, ""]]})
    assert frame.iloc[0].tolist() == [1.0, 2.0, 3, -4, False, ""]


def test_v2_one_tensor_per_column() -> None:
    frame = SCHEMA.from_v2(columns([ROW, ROW]))
    assert frame.shape == (2, 6) and frame["city"].tolist() == ["Oslo", "Oslo"]
    # [N, 1] columns, nested data, any integer datatype for an integer column, any numeric one for a float one.
    cols = columns([ROW])
    cols[0] = tensor("f64", [[7]], "INT32", [1, 1])
    cols[2] = tensor("i64", [9], "UINT8")
    assert SCHEMA.from_v2(list(reversed(cols))).iloc[0].tolist()[:3] == [7.0, 2.0, 9]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({2: tensor("i64", [1.0], "FP64")}, "inputs['i64']: datatype FP64 does not fit column dtype int64 (use INT8"),
        ({4: tensor("flag", [1], "INT64")}, "datatype INT64 does not fit column dtype bool (use BOOL)"),
        ({5: tensor("city", [1.0], "FP64")}, "does not fit column dtype string (use BYTES)"),
        ({0: tensor("f64", ["a"], "FP64")}, "inputs['f64'].data[0]: expected a number"),
        ({2: tensor("i64", [1.5], "INT64")}, "inputs['i64'].data[0]: expected an integer"),
        ({0: tensor("f64", [1.0], "FP64", [1, 1, 1])}, "inputs['f64']: shape [1, 1, 1] must be [N] or [N, 1]"),
        ({0: tensor("f64", [], "FP64", [0])}, "N >= 1"),
        ({0: tensor("f64", 5, "FP64", [1])}, "inputs['f64']: data must be a list, got 5"),  # type: ignore[arg-type]
        ({0: tensor("f64", [1.0], "FP64", [-1])}, "shape must be a list of non-negative integers"),
        ({1: tensor("f64", [1.0], "FP64")}, "inputs['f64']: the column is given more than once"),
    ],
)
def test_v2_tensors_that_do_not_fit(change: dict[int, InferInput], message: str) -> None:
    cols = columns([ROW])
    for j, t in change.items():
        cols[j] = t
    with pytest.raises(InvalidInput) as err:
        SCHEMA.from_v2(cols)
    assert message in str(err.value)


def test_v2_one_matrix_of_all_columns() -> None:
    numeric = Schema([Column("a", "float32"), Column("b", "int64"), Column("c", "bool")])
    frame = numeric.from_v2([tensor("input-0", [[0.5, 2.0, 1.0], [1.5, -3.0, 0.0]], "FP64", [2, 3])])
    assert frame.to_dict(orient="list") == {"a": [0.5, 1.5], "b": [2, -3], "c": [True, False]}
    for data, message in [
        ([[0.5, 2.5, 1.0]], "inputs['input-0'].data[0][1]: expected an integer for column 'b'"),
        ([[0.5, 2.0, 0.5]], "data[0][2]: expected true or false for column 'c'"),
        ([[0.5, 2.0]], "data has 2 values but shape [1, 3] needs 3"),
    ]:
        with pytest.raises(InvalidInput) as err:
            numeric.from_v2([tensor("input-0", data, "FP32", [1, 3])])
        assert message in str(err.value)
    with pytest.raises(InvalidInput, match="the model has string columns, so send one tensor per column"):
        SCHEMA.from_v2([tensor("x", [ROW], "FP64", [1, 6])])
    with pytest.raises(InvalidInput, match=r"inputs\['x'\]: the model has no column 'x'"):
        numeric.from_v2([tensor("x", [1.0, 2.0, 3.0], "FP64", [3])])
    with pytest.raises(InvalidInput, match='"inputs" must hold one tensor per column'):
        numeric.from_v2([])


def test_v2_binary_tensor_data_arrives_as_numpy() -> None:
    t = tensor("a", [], "FP32", [2])
    t.data = np.asarray([1.0, 2.0], dtype=np.float32)
    one = Schema([Column("a", "float32")])
    assert one.from_v2([t])["a"].tolist() == [1.0, 2.0]
