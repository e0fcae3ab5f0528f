"""Malformed, oversized and misaddressed events are refused whole, counted by reason, and change no window."""

from __future__ import annotations

import json
from collections.abc import Callable

import pandas as pd
import pytest

from tests.unit.drift.conftest import MON, NS, Drift, binary_headers, columns, monitor_body, normal, version

NAMES = columns(3)
ROW = [0.1, 0.2, 0.3]
GOOD = json.dumps({"instances": [ROW]}).encode()

MALFORMED: dict[str, bytes] = {
    "row too short": json.dumps({"instances": [[0.1, 0.2]]}).encode(),
    "second row bad": json.dumps({"instances": [ROW, [0.1, "x", 0.3]]}).encode(),
    "dict missing a column": json.dumps({"instances": [{"f0": 1.0, "f1": 2.0}]}).encode(),
    "neither instances nor inputs": json.dumps({"rows": [ROW]}).encode(),
    "instances not a list": json.dumps({"instances": 3}).encode(),
    "no rows": json.dumps({"instances": []}).encode(),
    "string value": json.dumps({"instances": [[0.1, "abc", 0.3]]}).encode(),
    "null value": json.dumps({"instances": [[0.1, None, 0.3]]}).encode(),
    "bool-free number column gets an object": json.dumps({"instances": [[0.1, {"a": 1}, 0.3]]}).encode(),
    "NaN literal": b'{"instances": [[0.1, NaN, 0.3]]}',
    "Infinity literal": b'{"instances": [[0.1, Infinity, 0.3]]}',
    "overflowing number": b'{"instances": [[0.1, 1e400, 0.3]]}',
    "invalid JSON": b'{"instances": [[0.1, 0.2',
    "not UTF-8": b'\xff\xfe{"instances": []}',
    "body is a list": b"[1, 2, 3]",
    # Regressions (payload fuzzing at 10,000): json.loads decodes bytes with surrogatepass, so an encoded lone
    # surrogate in a string nobody reads was taken; a row nested one level too deep has the right size, and
    # the numpy fast path took it as the row.
    "an encoded lone surrogate": b'{"instances": [[0.1, 0.2, 0.3]], "id": "\xed\xa0\x80"}',
    "a row nested one level too deep": json.dumps({"instances": [[ROW], [ROW]]}).encode(),
    "v2 matrix nested one level too deep": json.dumps(
        {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [[ROW]]}]}
    ).encode(),
    # Regression (payload fuzzing): past Python's recursion limit json.loads raised RecursionError, a 500.
    "nested 100,000 deep": b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "a cell nested 1,000 deep": b'{"instances": [[0.1, ' + b"[" * 1_000 + b"]" * 1_000 + b", 0.3]]}",
    "v2 wrong matrix width": json.dumps(
        {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}]}
    ).encode(),
    "v2 data shorter than shape": json.dumps(
        {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 4, 5]}]}
    ).encode(),
    "v2 column missing": json.dumps(
        {"inputs": [{"name": n, "shape": [1], "datatype": "FP64", "data": [1.0]} for n in NAMES[:2]]}
    ).encode(),
    "v2 columns of different lengths": json.dumps(
        {
            "inputs": [
                {"name": n, "shape": [1 + i], "datatype": "FP64", "data": [1.0] * (1 + i)} for i, n in enumerate(NAMES)
            ]
        }
    ).encode(),
    "v2 no shape": json.dumps({"inputs": [{"name": "x", "datatype": "FP64", "data": ROW}]}).encode(),
}


@pytest.fixture
async def ready(drift: Drift, upload: Callable[[pd.DataFrame], str]) -> Drift:
    uri = upload(normal(50, 3))
    assert (await drift.put(monitor_body({"v1": version(uri, NAMES)}, windowSize=10)))[0] == 200
    await drift.loaded()
    assert await drift.raw(f"/v1/events/{NS}/{MON}/v1", GOOD, binary_headers()) == (202, {"accepted": 1})
    return drift


async def window(drift: Drift) -> tuple[int, bytes]:
    samples = (await drift.get())["versions"]["v1"]["samples"]
    path = drift.service.state_dir / "monitors" / NS / MON / "window-v1.ndjson"
    return samples, path.read_bytes()


async def test_malformed_events(ready: Drift, caplog: pytest.LogCaptureFixture) -> None:
    before = await window(ready)
    for what, body in MALFORMED.items():
        status, doc = await ready.raw(f"/v1/events/{NS}/{MON}/v1", body, binary_headers())
        assert status == 400 and doc["reason"] == "malformed", (what, doc)
        assert await window(ready) == before, what
    assert (await ready.get())["rejected"] == {"malformed": len(MALFORMED)}
    assert await ready.metric("slipway_drift_events_rejected_total", reason="malformed") == len(MALFORMED)
    # Logged in one line each, naming the place, never the values.
    rejected = [r.getMessage() for r in caplog.records if "event rejected" in r.getMessage()]
    assert len(rejected) == len(MALFORMED) and not any("abc" in line or "0.1" in line for line in rejected)


async def test_cloudevent_envelopes_refused(ready: Drift) -> None:
    before = await window(ready)
    headers = binary_headers()
    no_type = {k: v for k, v in headers.items() if k != "ce-type"}
    no_id = {k: v for k, v in headers.items() if k != "ce-id"}
    structured = {"content-type": "application/cloudevents+json"}
    cases = [
        (no_type, GOOD, 400, "malformed"),
        (no_id, GOOD, 400, "malformed"),
        ({**headers, "ce-type": "org.kubeflow.serving.inference.explain"}, GOOD, 400, "unsupported_type"),
        ({**headers, "content-type": "application/octet-stream"}, GOOD, 400, "unsupported_type"),
        (
            structured,
            json.dumps({"specversion": "1.0", "type": "x.inference.request", "id": "1"}).encode(),
            400,
            "malformed",
        ),
        (
            structured,
            json.dumps({"specversion": "1.0", "type": "x.inference.request", "id": "1", "source": "s"}).encode(),
            400,
            "malformed",
        ),
        (
            structured,
            json.dumps(
                {"specversion": "1.0", "type": "x.inference.request", "id": "1", "source": "s", "data_base64": "%%%"}
            ).encode(),
            400,
            "malformed",
        ),
    ]
    for h, body, code, reason in cases:
        status, doc = await ready.raw(f"/v1/events/{NS}/{MON}/v1", body, h)
        assert (status, doc["reason"]) == (code, reason), (h, body, doc)
        assert await window(ready) == before


async def test_misaddressed_and_oversized(ready: Drift) -> None:
    before = await window(ready)
    assert (await ready.raw(f"/v1/events/{NS}/nope/v1", GOOD, binary_headers()))[0] == 404
    assert (await ready.raw(f"/v1/events/{NS}/{MON}/v9", GOOD, binary_headers()))[0] == 404
    huge = json.dumps({"instances": [ROW] * 300_000}).encode()
    assert len(huge) > ready.service.max_body_bytes
    status, doc = await ready.raw(f"/v1/events/{NS}/{MON}/v1", huge, binary_headers())
    assert status == 413 and doc["reason"] == "too_large"
    # Chunked, without a Content-Length: cut off at the limit all the same.

    async def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, len(huge), 1 << 16):
            yield huge[i : i + (1 << 16)]

    r = await ready.client.post(f"/v1/events/{NS}/{MON}/v1", data=chunks(), headers=binary_headers())
    assert r.status == 413
    assert await window(ready) == before
    assert (await ready.get())["rejected"] == {"unknown_version": 1, "too_large": 2}
    for reason, n in {"unknown_monitor": 1, "unknown_version": 1, "too_large": 2}.items():
        assert await ready.metric("slipway_drift_events_rejected_total", reason=reason) == n
