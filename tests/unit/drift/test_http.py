"""The HTTP contract through a real server: configuration, ingestion in every payload shape, windows, metrics."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from slipway_drift.detect import Detector

from tests.unit.drift.conftest import (
    MON,
    NS,
    RESPONSE_TYPE,
    Drift,
    columns,
    monitor_body,
    normal,
    structured,
    v2_columns,
    v2_matrix,
    version,
)

NAMES = columns(3)


async def setup(drift: Drift, upload: Callable[[pd.DataFrame], str], window: int = 10, **detector: Any) -> str:
    uri = upload(normal(200, 3))
    status, doc = await drift.put(
        monitor_body({"v1": version(uri, NAMES), "v2": version(uri, NAMES, "canary")}, windowSize=window, **detector)
    )
    assert status == 200, doc
    await drift.loaded()
    return uri


async def test_put_get_list_delete(drift: Drift, upload: Callable[[pd.DataFrame], str]) -> None:
    uri = await setup(drift, upload)
    doc = await drift.get()
    assert doc["config"]["detector"] == {
        "method": "ks",
        "pValue": 0.05,
        "correction": "bonferroni",
        "windowSize": 10,
        "features": [],
        "backend": "numpy",
    }
    assert doc["config"]["versions"]["v1"] == {**version(uri, NAMES), "endpoint": None, "region": None}
    assert doc["versions"]["v1"] == {
        "role": "stable",
        "referenceLoaded": True,
        "referenceRows": 200,
        "referenceError": None,
        "samples": 0,
        "windowsEvaluated": 0,
        "pendingWindows": 0,
        "detectionError": None,
    }
    assert doc["results"] == [] and doc["rejected"] == {}
    r = await drift.client.get("/v1/monitors")
    assert await r.json() == [{"namespace": NS, "name": MON, "summary": {"seq": 0, "versions": doc["versions"]}}]
    r = await drift.client.delete(f"/v1/monitors/{NS}/{MON}")
    assert r.status == 204
    assert (await drift.client.get(f"/v1/monitors/{NS}/{MON}")).status == 404
    assert (await drift.client.delete(f"/v1/monitors/{NS}/{MON}")).status == 404
    assert not (drift.service.state_dir / "monitors" / NS / MON).exists()


async def test_payload_shapes(drift: Drift, upload: Callable[[pd.DataFrame], str]) -> None:
    await setup(drift, upload, window=100)
    frame = normal(2, 3, seed=1)
    rows = frame.to_numpy()
    bodies = [
        {"instances": rows.tolist()},
        {"instances": frame.to_dict(orient="records")},
        v2_columns(frame),
        v2_matrix(rows),
        {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": rows.tolist()}]},  # nested
        {"inputs": [{"name": c, "shape": [2, 1], "datatype": "FP64", "data": [[v] for v in frame[c]]} for c in NAMES]},
    ]
    for body in bodies:
        assert await drift.event(body) == (202, {"accepted": 2}), body
    headers = {"content-type": "application/cloudevents+json"}
    for doc in (structured(bodies[0]), structured(bodies[3], base64_data=True)):
        assert await drift.raw(f"/v1/events/{NS}/{MON}/v1", _dump(doc), headers) == (202, {"accepted": 2})
    assert (await drift.get())["versions"]["v1"]["samples"] == 16
    # Every shape gave the same rows, in feature order.
    window = drift.service.monitors[(NS, MON)].versions["v1"].window.rows()
    assert all(window[i : i + 2].tolist() == rows.tolist() for i in range(0, 16, 2))


async def test_response_events_ignored(drift: Drift, upload: Callable[[pd.DataFrame], str]) -> None:
    await setup(drift, upload)
    assert await drift.event({"predictions": [1]}, ce_type=RESPONSE_TYPE) == (202, {"accepted": 0, "ignored": True})
    assert await drift.metric("slipway_drift_events_ignored_total") == 1
    assert (await drift.get())["versions"]["v1"]["samples"] == 0


async def test_windows_carry_over_and_stay_apart(drift: Drift, upload: Callable[[pd.DataFrame], str]) -> None:
    await setup(drift, upload, window=10)
    assert (await drift.event(v2_matrix(normal(7, 3, seed=2).to_numpy()), version="v2"))[0] == 202
    # 25 stable rows: two full windows and 5 carried into the third; canary's 7 untouched.
    assert await drift.event(v2_matrix(normal(25, 3, seed=3).to_numpy())) == (202, {"accepted": 25})
    results = await drift.results(2)
    assert [(r["seq"], r["version"], r["role"], r["samples"], r["window"]) for r in results] == [
        (1, "v1", "stable", 10, 0),
        (2, "v1", "stable", 10, 1),
    ]
    doc = await drift.get()
    assert doc["versions"]["v1"]["samples"] == 5 and doc["versions"]["v1"]["windowsEvaluated"] == 2
    assert doc["versions"]["v2"]["samples"] == 7 and doc["versions"]["v2"]["windowsEvaluated"] == 0
    assert (await drift.event(v2_matrix(normal(3, 3, seed=4).to_numpy()), version="v2"))[0] == 202
    results = await drift.results(3)
    assert (results[2]["seq"], results[2]["version"], results[2]["role"]) == (3, "v2", "canary")
    r = results[0]
    assert set(r) >= {"seq", "time", "version", "role", "samples", "drift", "pValue", "threshold", "distance"}
    assert set(r["featurePValues"]) == set(NAMES) and r["time"].endswith("Z") and r["durationSeconds"] > 0
    m = {"namespace": NS, "monitor": MON}
    assert await drift.metric("slipway_drift_rows_total", **m, version="v1") == 25
    assert await drift.metric("slipway_drift_events_total", **m, version="v1") == 1
    assert await drift.metric("slipway_drift_window_samples", **m, version="v1") == 5
    assert await drift.metric("slipway_drift_window_samples", **m, version="v2") == 0
    assert await drift.metric("slipway_drift_windows_total", **m, version="v1") == 2
    assert await drift.metric("slipway_drift_p_value", **m, version="v2") == results[2]["pValue"]
    assert await drift.metric("slipway_drift_distance", **m, version="v2") == results[2]["distance"]
    assert await drift.metric("slipway_drift_detected", **m, version="v2") == int(results[2]["drift"])
    feature_p = await drift.metric("slipway_drift_feature_p_value", **m, version="v2", feature="f1")
    assert feature_p == results[2]["featurePValues"]["f1"]
    assert await drift.metric("slipway_drift_detection_seconds_count", method="ks") == 3
    await drift.client.delete(f"/v1/monitors/{NS}/{MON}")
    assert f'monitor="{MON}"' not in await drift.metrics()


async def test_reconfiguration(drift: Drift, upload: Callable[[pd.DataFrame], str]) -> None:
    uri = await setup(drift, upload, window=10)
    body = (await drift.get())["config"]
    for v in ("v1", "v2"):
        assert (await drift.event(v2_matrix(normal(4, 3).to_numpy()), version=v))[0] == 202
    # Identical body: nothing changes.
    assert (await drift.put(body))[1]["versions"]["v1"]["samples"] == 4
    # Role only: the window stays.
    body["versions"]["v2"]["role"] = "stable"
    assert (await drift.put(body))[1]["versions"]["v2"]["samples"] == 4
    # A new reference for v2 resets v2 only.
    body["versions"]["v2"]["referenceUri"] = upload(normal(50, 3, seed=9))
    doc = (await drift.put(body))[1]
    assert doc["versions"]["v1"]["samples"] == 4 and doc["versions"]["v2"]["samples"] == 0
    assert (await drift.loaded("v2"))["versions"]["v2"]["referenceRows"] == 50
    # The detector changes: every window resets. v2 dropped.
    body["detector"]["pValue"] = 0.01
    del body["versions"]["v2"]
    doc = (await drift.put(body))[1]
    assert doc["versions"] == {"v1": {**doc["versions"]["v1"], "samples": 0}} and uri


async def test_invalid_config(drift: Drift, upload: Callable[[pd.DataFrame], str]) -> None:
    uri = "s3://models/x.parquet"
    cases = {
        "detector.method": monitor_body({}, method="wasserstein"),
        "detector.pValue": monitor_body({}, pValue=1.5),
        "detector.windowSize": monitor_body({}, windowSize=0),
        "detector.correction": monitor_body({}, correction="holm"),
        "detector.features": monitor_body({"v1": version(uri, NAMES)}, features=["nope"]),
        "versions.v1.role": monitor_body({"v1": {**version(uri, NAMES), "role": "shadow"}}),
        "versions.v1.referenceUri": monitor_body({"v1": {**version(uri, NAMES), "referenceUri": "/tmp/x"}}),
        "versions.v1.signature.inputs[0].dtype": monitor_body({"v1": version(uri, NAMES, dtype="complex")}),
        "versions.V1": monitor_body({"V1": version(uri, NAMES)}),
    }
    for field, body in cases.items():
        status, doc = await drift.put(body)
        assert status == 400 and doc["error"].startswith(field), (field, doc)
    r = await drift.client.put(f"/v1/monitors/{NS}/{MON}", data=b"{not json")
    assert r.status == 400 and "error" in await r.json()
    assert (await drift.client.get(f"/v1/monitors/{NS}/{MON}")).status == 404


async def test_reference_errors_reported_and_retried(drift: Drift, upload: Callable[[pd.DataFrame], str]) -> None:
    lacking = upload(normal(20, 2))
    body = monitor_body({"v1": version(lacking, NAMES)}, windowSize=10)
    assert (await drift.put(body))[0] == 200
    doc = await drift.wait("the error", lambda d: d["versions"]["v1"]["referenceError"])
    assert "lacks column(s) f2" in doc["versions"]["v1"]["referenceError"]
    body["versions"]["v1"]["referenceUri"] = missing = "s3://models/later.parquet"
    await drift.put(body)
    doc = await drift.wait("the error", lambda d: "later.parquet" in (d["versions"]["v1"]["referenceError"] or ""))
    # Windows still fill while the reference is missing, and are evaluated once it loads (here: the next PUT).
    assert (await drift.event(v2_matrix(normal(10, 3).to_numpy())))[0] == 202
    assert (await drift.get())["versions"]["v1"]["pendingWindows"] == 1
    uploaded = upload(normal(20, 3))
    s3_copy(uploaded, missing)
    await drift.put(body)
    (result,) = await drift.results(1)
    assert result["samples"] == 10
    doc = await drift.get()
    assert doc["versions"]["v1"]["referenceError"] is None and doc["versions"]["v1"]["pendingWindows"] == 0


def s3_copy(src: str, dst: str) -> None:
    import boto3

    client = boto3.client("s3")
    client.copy_object(Bucket="models", Key=dst.split("/", 3)[3], CopySource=src.removeprefix("s3://"))


async def test_features_subset_and_categorical(drift: Drift, upload: Callable[[pd.DataFrame], str]) -> None:
    ref = pd.DataFrame({"a": [1.0, 2.0] * 50, "colour": ["red", "blue"] * 50, "ok": [True, False] * 50})
    sig = {"inputs": [{"name": "a", "dtype": "float64"}, {"name": "colour", "dtype": "string"}]}
    sig["inputs"].append({"name": "ok", "dtype": "bool"})
    v = {"role": "stable", "referenceUri": upload(ref), "signature": sig}
    body = monitor_body({"v1": v}, method="tabular", windowSize=5, features=["ok", "colour"])
    assert (await drift.put(body))[0] == 200
    await drift.loaded()
    rows = [[1.0, "red", True], [2.0, "green", False], [1.0, "green", True]]
    assert await drift.event({"instances": rows}) == (202, {"accepted": 3})
    # v2 per-column with a BYTES tensor; the unmonitored column `a` may be absent.
    v2 = {"inputs": [{"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["red"]},
                     {"name": "ok", "shape": [1, 1], "datatype": "BOOL", "data": [[False]]}]}  # fmt: skip
    assert await drift.event(v2) == (202, {"accepted": 1})
    window = drift.service.monitors[(NS, MON)].versions["v1"].window.rows()
    assert window == [[1.0, "red"], [0.0, "green"], [1.0, "green"], [0.0, "red"]]
    bad = {"inputs": [{"name": "colour", "shape": [1], "datatype": "BYTES", "data": [3]}, v2["inputs"][1]]}
    assert (await drift.event(bad))[0] == 400
    assert await drift.event({"instances": [[1.0, "red", True]]}) == (202, {"accepted": 1})
    (result,) = await drift.results(1)
    assert list(result["featurePValues"]) == ["ok", "colour"] and result["samples"] == 5


def _dump(doc: Any) -> bytes:
    return json.dumps(doc).encode()


async def test_detection_failure_drops_the_window_only(
    drift: Drift, upload: Callable[[pd.DataFrame], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await setup(drift, upload, window=10)
    real = Detector.run

    def failing(self: Detector, rows: Any) -> dict[str, Any]:
        raise FloatingPointError("boom")

    monkeypatch.setattr(Detector, "run", failing)
    assert (await drift.event(v2_matrix(normal(10, 3).to_numpy())))[0] == 202
    doc = await drift.wait("the error", lambda d: d["versions"]["v1"]["detectionError"])
    assert doc["versions"]["v1"]["detectionError"] == "window 0: FloatingPointError: boom"
    assert doc["results"] == [] and doc["versions"]["v1"]["pendingWindows"] == 0
    monkeypatch.setattr(Detector, "run", real)
    assert (await drift.event(v2_matrix(normal(10, 3).to_numpy())))[0] == 202
    (result,) = await drift.results(1)
    assert (result["seq"], result["window"]) == (1, 1)
    assert (await drift.get())["versions"]["v1"]["detectionError"] is None
