"""The real server over HTTP: v1 and v2 predictions, 400s that name the field, health and metadata, metrics."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest

from .conftest import Predictor, Serve, Trained, frame_rows


@pytest.fixture(scope="module")
def bc(serve_module: Serve, cancer: Trained) -> Predictor:
    """A binary classifier served from a model directory (as after KServe's storage initializer)."""
    return serve_module("cancer", ["--model_dir", str(cancer.path.parent)], cancer.env("cancer-v3"))


@pytest.fixture(scope="module")
def reg(serve_module: Serve, diabetes: Trained) -> Predictor:
    return serve_module("diabetes", ["--model_dir", str(diabetes.path.parent)], diabetes.env("diabetes-v1"))


def test_v1_rows_as_lists_and_as_objects(bc: Predictor, cancer: Trained) -> None:
    rows = frame_rows(cancer.x, 5)
    expected = cancer.model.predict_proba(cancer.x.iloc[:5])
    r = bc.v1({"instances": rows})
    assert r.status == 200, r.body
    assert r.body["model_name"] == "cancer" and r.body["model_version"] == "cancer-v3"
    assert r.body["classes"] == [0, 1]
    assert r.body["predictions"] == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose(r.body["probabilities"], expected, rtol=1e-12)
    np.testing.assert_allclose(r.body["scores"], expected[:, 1], rtol=1e-12)  # P(class 1)
    as_objects = [dict(zip(cancer.x.columns, row, strict=True)) for row in rows]
    assert bc.v1({"instances": as_objects}).body["probabilities"] == r.body["probabilities"]


def test_v2_one_tensor_per_column_and_one_matrix(bc: Predictor, cancer: Trained) -> None:
    rows = frame_rows(cancer.x, 3, start=100)
    expected = cancer.model.predict_proba(cancer.x.iloc[100:103])
    columns = [
        {"name": c, "shape": [3], "datatype": "FP64", "data": [row[j] for row in rows]}
        for j, c in enumerate(cancer.x.columns)
    ]
    r = bc.v2({"id": "req-1", "inputs": columns})
    assert r.status == 200, r.body
    assert (r.body["id"], r.body["model_name"], r.body["model_version"]) == ("req-1", "cancer", "cancer-v3")
    out = {o["name"]: o for o in r.body["outputs"]}
    assert out["predictions"]["data"] == expected.argmax(axis=1).tolist()
    assert out["predictions"]["datatype"] == "INT64" and out["predictions"]["shape"] == [3]
    assert out["probabilities"]["shape"] == [3, 2] and json.loads(out["probabilities"]["parameters"]["classes"]) == [
        0,
        1,
    ]
    np.testing.assert_allclose(np.reshape(out["probabilities"]["data"], (3, 2)), expected, rtol=1e-12)
    np.testing.assert_allclose(out["scores"]["data"], expected[:, 1], rtol=1e-12)
    # The same rows as one [N, F] tensor, FP32 or FP64, nested or flat.
    flat = [v for row in rows for v in row]
    for datatype, data in (("FP64", rows), ("FP32", flat)):
        m = bc.v2({"inputs": [{"name": "features", "shape": [3, 30], "datatype": datatype, "data": data}]})
        assert m.status == 200, m.body
        assert {o["name"]: o for o in m.body["outputs"]}["predictions"]["data"] == out["predictions"]["data"]


def test_regression_v1_and_v2(reg: Predictor, diabetes: Trained) -> None:
    rows = frame_rows(diabetes.x, 4)
    expected = diabetes.model.predict(diabetes.x.iloc[:4])
    r = reg.v1({"instances": rows})
    assert r.status == 200, r.body
    assert set(r.body) == {"predictions", "model_name", "model_version"}
    np.testing.assert_allclose(r.body["predictions"], expected, rtol=1e-12)
    m = reg.v2({"inputs": [{"name": "x", "shape": [4, 10], "datatype": "FP64", "data": rows}]})
    assert [o["name"] for o in m.body["outputs"]] == ["predictions"]
    np.testing.assert_allclose(m.body["outputs"][0]["data"], expected, rtol=1e-12)
    assert reg.metric("slipway_predictor_prediction_score_sum", version="diabetes-v1") == pytest.approx(
        2 * expected.sum()
    )


def _v2_column(name: str, data: list[Any], datatype: str = "FP64", shape: list[Any] | None = None) -> dict[str, Any]:
    return {"name": name, "shape": shape or [len(data)], "datatype": datatype, "data": data}


def _bad_requests(cancer: Trained) -> list[tuple[str, str, Any, str | None]]:
    """(protocol, what, body, text the 400's message must contain): every one names the field at fault. Where
    pydantic's words follow the field, only our part (the field's path) is checked; None where the whole message
    is kserve's own: then only that there is one."""
    row = frame_rows(cancer.x, 1)[0]
    cols = list(cancer.x.columns)
    v2 = [_v2_column(c, [row[j]]) for j, c in enumerate(cols)]
    return [
        ("v1", "no instances", {"rows": [row]}, '"instances" is required'),
        ("v1", "instances not a list", {"instances": 5}, "instances"),
        ("v1", "empty instances", {"instances": []}, "non-empty"),
        ("v1", "short row", {"instances": [row, row[:29]]}, "instances[1]: expected 30 values"),
        (
            "v1",
            "text value",
            {"instances": [[*row[:3], "big", *row[4:]]]},
            "instances[0][3]: expected a number for column 'mean area'",
        ),
        (
            "v1",
            "null value",
            {"instances": [[None, *row[1:]]]},
            "instances[0][0]: expected a number for column 'mean radius' (float64), got null",
        ),
        ("v1", "bool for a number", {"instances": [[True, *row[1:]]]}, "got True"),
        (
            "v1",
            "missing column",
            {"instances": [dict(zip(cols[1:], row[1:], strict=True))]},
            "instances[0]: missing column 'mean radius'",
        ),
        (
            "v1",
            "unknown column",
            {"instances": [{**dict(zip(cols, row, strict=True)), "colour": 1}]},
            "unknown column 'colour'",
        ),
        ("v1", "row is a number", {"instances": [1.5]}, "instances[0]: a row must be a list"),
        ("v1", "body is a list", [row], "JSON object"),
        ("v1", "not JSON", b"{nope", "the body is not valid JSON: "),
        # Regressions (payload fuzzing): a cell nested 1,000 deep was a 500; v2 bodies Python's json cannot read
        # were a 400 "There was an error parsing the body" that did not say why; an empty or non-object v2
        # body was answered in pydantic's words only.
        (
            "v1",
            "cell nested 1,000 deep",
            json.dumps({"instances": [["@", *row[1:]]]}).encode().replace(b'"@"', b"[" * 1000 + b"]" * 1000),
            "instances[0][0]: expected a number for column 'mean radius' (float64), got [[[[...]]]]",
        ),
        ("v2", "nested 5,000 deep", b"[" * 5000 + b"]" * 5000, "the body is not valid JSON: depth limit exceeded"),
        ("v2", "not UTF-8", b'{"inputs": [\xff]}', "the body is not valid JSON: str is not valid UTF-8"),
        ("v2", "5,000-digit integer", b'{"inputs": [' + b"9" * 5000 + b"]}", "the body is not valid JSON: "),
        ("v2", "empty body", b"", "the body is empty"),
        ("v2", "body not an object", b"[1, 2]", 'the body must be a JSON object with "inputs"'),
        ("v2", "missing column", {"inputs": v2[1:]}, "inputs: missing column 'mean radius'"),
        (
            "v2",
            "unknown column",
            {"inputs": [*v2, _v2_column("colour", [1])]},
            "inputs['colour']: the model has no column",
        ),
        (
            "v2",
            "wrong datatype",
            {"inputs": [_v2_column(cols[0], ["1"], "BYTES"), *v2[1:]]},
            "inputs['mean radius']: datatype BYTES",
        ),
        (
            "v2",
            "text in FP64",
            {"inputs": [_v2_column(cols[0], ["x"]), *v2[1:]]},
            "inputs['mean radius'].data[0]: expected a number",
        ),
        (
            "v2",
            "column shape",
            {"inputs": [_v2_column(cols[0], [1.0, 2.0], shape=[1, 2]), *v2[1:]]},
            "must be [N] or [N, 1]",
        ),
        (
            "v2",
            "rows differ",
            {"inputs": [_v2_column(cols[0], [1.0, 2.0]), *v2[1:]]},
            "inputs['mean texture']: 1 rows, but inputs['mean radius'] has 2",
        ),
        (
            "v2",
            "data vs shape",
            {"inputs": [_v2_column(cols[0], [1.0], shape=[2]), *v2[1:]]},
            "data has 1 values but shape [2] needs 2",
        ),
        (
            "v2",
            "matrix width",
            {"inputs": [_v2_column("x", row[:29], shape=[1, 29])]},
            "inputs['x']: shape [1, 29] must be [N, 30]",
        ),
        (
            "v2",
            "matrix datatype",
            {"inputs": [_v2_column("x", row, "INT64", [1, 30])]},
            "must be FP64 or FP32, got INT64",
        ),
        (
            "v2",
            "shape missing",
            {"inputs": [{"name": "x", "datatype": "FP64", "data": row}]},
            "inputs[0].shape: ",
        ),
        ("v2", "inputs not a list", {"inputs": 3}, "inputs: "),
        ("v2", "not JSON", b"{nope", "not valid JSON"),
        # Regressions (payload fuzzing at 10,000): FastAPI's json.loads takes NaN, and pydantic's lax mode
        # reads a shape [true, 30] as [1, 30].
        (
            "v2",
            "NaN literal",
            json.dumps({"inputs": v2}).replace('"data": [', '"data": [NaN, ', 1).encode(),
            "not valid JSON",
        ),
        ("v2", "a shape of booleans", {"inputs": [_v2_column("x", row, shape=[True, 30])]}, "inputs[0].shape must"),
        ("v2", "a shape of strings", {"inputs": [_v2_column("x", row, shape=["1", 30])]}, "inputs[0].shape must"),
    ]


def test_bad_requests_answer_400_naming_the_field(bc: Predictor, cancer: Trained) -> None:
    before = bc.metric("slipway_predictor_requests_total", outcome="client_error")
    cases = _bad_requests(cancer)
    for protocol, what, body, message in cases:
        r = bc.v1(body) if protocol == "v1" else bc.v2(body)
        assert r.status == 400, f"{protocol} {what}: {r.status} {r.body}"
        assert r.error, f"{protocol} {what}: no error in {r.body!r}"
        assert message is None or message in r.error, f"{protocol} {what}: {r.error!r} lacks {message!r}"
    after = bc.metric("slipway_predictor_requests_total", outcome="client_error", version="cancer-v3")
    assert after - before == len(cases)


def test_v1_body_without_json_content_type_is_read_as_json(bc: Predictor, cancer: Trained) -> None:
    body = json.dumps({"instances": frame_rows(cancer.x, 1)}).encode()
    r = bc.post("/v1/models/cancer:predict", body, content_type="application/x-www-form-urlencoded")  # curl -d
    assert r.status == 200, r.body


def test_health_and_metadata(bc: Predictor, cancer: Trained) -> None:
    assert bc.get("/v1/models/cancer").body == {"name": "cancer", "ready": True}
    assert bc.get("/v2/health/ready").status == 200 and bc.get("/v2/health/live").status == 200
    meta = bc.get("/v2/models/cancer").body
    assert [i["name"] for i in meta["inputs"]] == list(cancer.x.columns)
    assert {i["datatype"] for i in meta["inputs"]} == {"FP64"}
    assert [o["name"] for o in meta["outputs"]] == ["predictions", "probabilities", "scores"]
    assert bc.v1({"instances": [[1.0] * 30]}).status == 200
    assert bc.post("/v1/models/nope:predict", {"instances": []}).status == 404


def test_metrics_by_outcome_and_version(bc: Predictor, cancer: Trained) -> None:
    labels = {"model": "cancer", "version": "cancer-v3"}

    def snapshot() -> dict[str, float]:
        counts = {o: bc.metric("slipway_predictor_requests_total", outcome=o, **labels) for o in ("ok", "client_error")}
        counts["duration"] = bc.metric("slipway_predictor_request_duration_seconds_count", **labels)
        counts["scores"] = bc.metric("slipway_predictor_prediction_score_count", **labels)
        return counts

    before = snapshot()
    assert bc.v1({"instances": frame_rows(cancer.x, 3)}).status == 200
    assert bc.v2({"inputs": [_v2_column("x", frame_rows(cancer.x, 2), shape=[2, 30])]}).status == 200
    assert bc.v1({"instances": [[1.0]]}).status == 400
    after = snapshot()
    assert after["ok"] - before["ok"] == 2
    assert after["client_error"] - before["client_error"] == 1
    assert after["duration"] - before["duration"] == 3
    assert after["scores"] - before["scores"] == 5  # one per row predicted
    text = bc.metrics()
    # Every outcome's series exists, at zero if need be; the latency buckets reach from 1 ms to 10 s.
    assert 'slipway_predictor_requests_total{model="cancer",outcome="server_error",version="cancer-v3"} 0.0' in text
    assert 'slipway_predictor_request_duration_seconds_bucket{le="0.001",model="cancer",version="cancer-v3"}' in text
    assert 'slipway_predictor_request_duration_seconds_bucket{le="10.0",model="cancer",version="cancer-v3"}' in text
    assert 'slipway_predictor_prediction_score_bucket{le="0.5",model="cancer",version="cancer-v3"}' in text
    assert "request_predict_seconds_bucket" in text  # kserve's own metrics share the endpoint
    # Requests that are not inference (health, metadata, metrics) are not counted.
    bc.get("/v2/models/cancer")
    assert snapshot()["duration"] == after["duration"]


def test_v2_binary_extension_is_read_past_its_json_header(bc: Predictor, cancer: Trained) -> None:
    """The strict JSON read of a v2 body (limits.body_problem) takes only the part that
    inference-header-content-length says is JSON: binary tensor data after it is no JSON error."""
    row = [float(v) for v in cancer.x.iloc[0]]
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, len(row)],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 8 * len(row)},
                }
            ]
        }
    ).encode()
    binary = {"inference-header-content-length": str(len(header))}
    r = bc.post(
        f"/v2/models/{bc.name}/infer", header + struct.pack(f"<{len(row)}d", *row), "application/octet-stream", binary
    )
    assert r.status == 200, r.body
    wrong = header.replace(b'"shape": [1,', b'"shape": [true,')
    r = bc.post(f"/v2/models/{bc.name}/infer", wrong + b"\0" * 8 * len(row), "application/octet-stream",
                {"inference-header-content-length": str(len(wrong))})  # fmt: skip
    assert (r.status, r.error) == (400, f"inputs[0].shape must be a list of integers, got [true,{len(row)}]")
