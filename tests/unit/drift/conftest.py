"""Helpers for the drift runtime's tests: the service in-process behind a real aiohttp server, references as
parquet objects on the session's S3 server (tests/conftest.py's moto server), CloudEvents as KServe sends them."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

try:  # the runtime has its own dependencies: `pip install -e 'runtimes/drift[test]'`
    import pandas as pd
    import slipway_drift  # noqa: F401
    from aiohttp.test_utils import TestClient, TestServer
except ImportError as e:
    pytest.skip(f"drift runtime not installed: {e}", allow_module_level=True)

from slipway_drift.server import Service, make_app

NS, MON = "team-a", "fraud"
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


def columns(n: int) -> list[str]:
    return [f"f{i}" for i in range(n)]


def signature(names: list[str], dtype: str = "float64") -> dict[str, Any]:
    return {"inputs": [{"name": n, "dtype": dtype} for n in names]}


def monitor_body(versions: dict[str, dict[str, Any]], **detector: Any) -> dict[str, Any]:
    return {"detector": {"method": "ks", "windowSize": 100, **detector}, "versions": versions}


def version(uri: str, names: list[str], role: str = "stable", dtype: str = "float64") -> dict[str, Any]:
    return {"role": role, "referenceUri": uri, "signature": signature(names, dtype)}


def v2_matrix(x: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": list(x.shape), "datatype": "FP64", "data": x.ravel().tolist()}]}


def v2_columns(frame: pd.DataFrame) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": c, "shape": [len(frame)], "datatype": "FP64", "data": frame[c].tolist()} for c in frame.columns
        ]
    }


def binary_headers(ce_type: str = REQUEST_TYPE) -> dict[str, str]:
    return {
        "ce-id": uuid.uuid4().hex,
        "ce-type": ce_type,
        "ce-source": "http://localhost:9081/",
        "ce-specversion": "1.0",
        "ce-inferenceservicename": "fraud",
        "ce-namespace": NS,
        "ce-component": "predictor",
        "ce-endpoint": "fraud-predictor",
        "content-type": "application/json",
    }


def structured(data: Any, ce_type: str = REQUEST_TYPE, base64_data: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {"specversion": "1.0", "type": ce_type, "id": uuid.uuid4().hex, "source": "test"}
    if base64_data:
        doc["data_base64"] = base64.b64encode(json.dumps(data).encode()).decode()
    else:
        doc["data"] = data
    return doc


class Drift:
    """The service on a real loopback HTTP server, with the calls the operator and KServe make."""

    def __init__(self, client: TestClient[Any, Any], service: Service) -> None:
        self.client, self.service = client, service

    async def put(self, body: Any, ns: str = NS, name: str = MON) -> tuple[int, Any]:
        r = await self.client.put(f"/v1/monitors/{ns}/{name}", json=body)
        return r.status, await r.json()

    async def get(self, ns: str = NS, name: str = MON) -> Any:
        r = await self.client.get(f"/v1/monitors/{ns}/{name}")
        assert r.status == 200, await r.text()
        return await r.json()

    async def event(
        self, data: Any, version: str = "v1", ce_type: str = REQUEST_TYPE, ns: str = NS, name: str = MON
    ) -> tuple[int, Any]:
        r = await self.client.post(
            f"/v1/events/{ns}/{name}/{version}", data=json.dumps(data), headers=binary_headers(ce_type)
        )
        return r.status, await r.json()

    async def raw(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        r = await self.client.post(path, data=body, headers=headers)
        return r.status, await r.json()

    async def wait(self, what: str, check: Callable[[Any], Any], timeout: float = 60.0) -> Any:
        """Poll GET until `check(doc)` is truthy."""
        deadline = asyncio.get_running_loop().time() + timeout
        doc = None
        while asyncio.get_running_loop().time() < deadline:
            doc = await self.get()
            if check(doc):
                return doc
            await asyncio.sleep(0.05)
        pytest.fail(f"timed out waiting for {what}: {json.dumps(doc)[:2000]}")

    async def loaded(self, *versions: str) -> Any:
        return await self.wait(
            "references", lambda d: all(d["versions"][v]["referenceLoaded"] for v in versions or d["versions"])
        )

    async def results(self, n: int) -> list[dict[str, Any]]:
        doc = await self.wait(f"{n} results", lambda d: len(d["results"]) >= n)
        return list(doc["results"])

    async def metrics(self) -> str:
        r = await self.client.get("/metrics")
        return await r.text()

    async def metric(self, name: str, **labels: str) -> float | None:
        """One sample's value (the sum over series matching `labels`); None when no series matches."""
        return sample(await self.metrics(), name, **labels)


def sample(text: str, name: str, **labels: str) -> float | None:
    total, found = 0.0, False
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            total, found = total + float(line.rsplit(" ", 1)[1]), True
    return total if found else None


@pytest.fixture
def aws_env(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def upload(s3: Any, aws_env: None) -> Callable[[pd.DataFrame], str]:
    """Write a frame as parquet to the session's S3 server; returns its s3:// URI."""

    def put(frame: pd.DataFrame) -> str:
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        key = f"reference/{uuid.uuid4().hex}.parquet"
        s3.put_object(Bucket="models", Key=key, Body=buf.getvalue())
        return f"s3://models/{key}"

    return put


@pytest.fixture
async def drift(tmp_path: Path, aws_env: None) -> AsyncIterator[Drift]:
    service = Service(tmp_path / "state", max_body_bytes=4 << 20)
    async with TestClient(TestServer(make_app(service))) as client:
        yield Drift(client, service)


def normal(rows: int, n: int = 20, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    x = np.random.default_rng(seed).normal(size=(rows, n))
    x[:, 0] += shift
    return pd.DataFrame(x, columns=columns(n))
