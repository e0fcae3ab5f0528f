"""The drift runtime's HTTP API, as the operator uses it (contract: runtimes/drift/README.md).

The runtime is shared: one Deployment serves every DriftMonitor. The operator keeps each monitor's
configuration there (PUT, idempotent) and reads its window results back (GET); KServe's payload logger
posts the inputs to it directly.
"""

from __future__ import annotations

from typing import Any

import aiohttp

TIMEOUT_SECONDS = 10.0


class DriftUnavailable(Exception):
    """The runtime did not answer, or answered with a server error."""


class DriftRejected(Exception):
    """The runtime refused a configuration (HTTP 4xx); the message says why."""


class DriftRuntime:
    def __init__(self, base_url: str, timeout: float = TIMEOUT_SECONDS) -> None:
        self.base_url, self.timeout = base_url.rstrip("/"), aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        # Whether the last listing gave every monitor's summary: then one listing per poll finds the monitors
        # with news (handlers.py wakes them) and a monitor need not be read on its own at every poll.
        self.listed = False

    def _url(self, namespace: str, name: str) -> str:
        return f"{self.base_url}/v1/monitors/{namespace}/{name}"

    async def _call(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.request(method, url, json=body) as resp:
                data = await resp.json(content_type=None) if resp.status != 204 else None
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, ValueError) as err:
            raise DriftUnavailable(
                f"drift runtime at {self.base_url} did not answer: {err or type(err).__name__}"
            ) from err
        if status >= 500:
            raise DriftUnavailable(f"drift runtime at {self.base_url} answered {status}: {_error(data)}")
        return status, data

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        status, data = await self._call("GET", self._url(namespace, name))
        if status == 404:
            return None
        if status >= 400 or not isinstance(data, dict):
            raise DriftUnavailable(f"drift runtime answered {status} to GET: {_error(data)}")
        return data

    async def put(self, namespace: str, name: str, config: dict[str, Any]) -> dict[str, Any]:
        status, data = await self._call("PUT", self._url(namespace, name), config)
        if status >= 400 or not isinstance(data, dict):
            raise DriftRejected(_error(data))
        return data

    async def summaries(self) -> dict[tuple[str, str], Any] | None:
        """Every monitor's summary (what changes when reading it would tell something new), by (namespace,
        name); None from a runtime that lists no summaries."""
        status, data = await self._call("GET", f"{self.base_url}/v1/monitors")
        if status >= 400 or not isinstance(data, list):
            raise DriftUnavailable(f"drift runtime answered {status} to GET /v1/monitors: {_error(data)}")
        if not all(isinstance(m, dict) and "summary" in m for m in data):
            return None
        return {(m["namespace"], m["name"]): m["summary"] for m in data}

    async def delete(self, namespace: str, name: str) -> None:
        await self._call("DELETE", self._url(namespace, name))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _error(data: Any) -> str:
    if isinstance(data, dict) and "error" in data:
        return str(data["error"])[:512]
    return str(data)[:512]
