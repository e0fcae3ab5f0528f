"""Fakes of the operator's own client interfaces (slipway.clients), for unit tests of observe() and act().

Each records what it was asked, answers from what the test gave it, and fails loudly on a call the test did not
expect, so a test also shows what an observe() does not read. Integration tests use the real components.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from slipway.analysis import PrometheusError
from slipway.clients import Clients
from slipway.drift import DriftUnavailable
from slipway.storage import ObjectInfo, ObjectMissing, S3Access

Body = dict[str, Any]


class FakeKube:
    """The reads observe() makes, from a list of objects (kind plural, namespace, name → body)."""

    def __init__(self, objects: Iterable[Body] = (), secrets: dict[str, dict[str, str]] | None = None) -> None:
        self.objects = list(objects)
        self.secrets = secrets or {}
        self.reads: list[tuple[Any, ...]] = []

    def _find(self, kind: str, namespace: str, name: str) -> Body | None:
        for o in self.objects:
            meta = o["metadata"]
            if o["kind"] == kind and meta.get("namespace", namespace) == namespace and meta["name"] == name:
                return o
        return None

    @staticmethod
    def _kind(plural: str) -> str:
        kinds = {"modelversions": "ModelVersion", "rollouts": "Rollout", "driftmonitors": "DriftMonitor",
                 "trainingjobs": "TrainingJob", "inferenceservices": "InferenceService", "httproutes": "HTTPRoute",
                 "workloads": "Workload", "canaryanalyses": "CanaryAnalysis"}  # fmt: skip
        return kinds[plural]

    async def get(self, plural: str, namespace: str, name: str) -> Body | None:
        self.reads.append(("get", plural, name))
        return self._find(self._kind(plural), namespace, name)

    async def get_custom(self, group: str, version: str, plural: str, namespace: str, name: str) -> Body | None:
        self.reads.append(("get", plural, name))
        return self._find(self._kind(plural), namespace, name)

    get_managed = get_custom
    get_optional = get_custom

    async def list_custom(
        self,
        plural: str,
        namespace: str,
        selector: str = "",
        index: tuple[str, str] | None = None,
        fresh: bool = False,
    ) -> list[Body]:
        self.reads.append(("list", plural, selector, index))
        found = [o for o in self.objects if o["kind"] == self._kind(plural)]
        if selector:
            key, _, value = selector.partition("=")
            found = [o for o in found if (o["metadata"].get("labels") or {}).get(key) == value]
        return found

    async def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        self.reads.append(("secret", name))
        return self.secrets.get(name)

    async def secret_version(self, namespace: str, name: str) -> tuple[dict[str, str], str] | None:
        self.reads.append(("secret", name))
        return (self.secrets[name], "1") if name in self.secrets else None

    async def service_account_exists(self, namespace: str, name: str) -> bool:
        self.reads.append(("serviceaccount", name))
        return False

    async def service_exists(self, namespace: str, name: str) -> bool:
        self.reads.append(("service", name))
        return False

    async def pods(self, namespace: str, selector: str) -> list[Body]:
        self.reads.append(("pods", selector))
        key, _, value = selector.partition("=")
        return [o for o in self.objects if o["kind"] == "Pod" and (o["metadata"].get("labels") or {}).get(key) == value]


class FakeS3:
    """Objects by URI: (bytes' sha256, ETag, size) or a JSON document; every call recorded."""

    def __init__(self, objects: dict[str, tuple[str, str, int]] | None = None, docs: dict[str, Body] | None = None):
        self.objects, self.docs = objects or {}, docs or {}
        self.calls: list[tuple[str, str]] = []

    async def head(self, access: S3Access, uri: str) -> ObjectInfo:
        self.calls.append(("head", uri))
        if uri not in self.objects:
            raise ObjectMissing("NoSuchKey")
        _, etag, size = self.objects[uri]
        return ObjectInfo(size, etag)

    async def sha256(self, access: S3Access, uri: str) -> tuple[str, ObjectInfo]:
        self.calls.append(("sha256", uri))
        if uri not in self.objects:
            raise ObjectMissing("NoSuchKey")
        digest, etag, size = self.objects[uri]
        return digest, ObjectInfo(size, etag)

    async def read_json(self, access: S3Access, uri: str, limit: int = 4 << 20) -> Body:
        self.calls.append(("read_json", uri))
        if uri not in self.docs:
            raise ObjectMissing("NoSuchKey")
        return self.docs[uri]


class FakePrometheus:
    """Answers each PromQL query with `answer(promql)`; None: Prometheus is down."""

    def __init__(self, answer: Callable[[str], list[tuple[dict[str, str], float]]] | None = None) -> None:
        self.answer = answer
        self.queries: list[str] = []

    async def query(self, address: str, promql: str) -> list[tuple[dict[str, str], float]]:
        self.queries.append(promql)
        if self.answer is None:
            raise PrometheusError(f"{address}: ClientConnectorError: connection refused")
        return self.answer(promql)


class FakeDrift:
    """The drift runtime's monitors by (namespace, name); `down` makes every call fail as unreachable."""

    def __init__(self, monitors: dict[tuple[str, str], Body] | None = None, down: bool = False) -> None:
        self.monitors, self.down, self.listed = monitors or {}, down, False
        self.calls: list[tuple[str, str]] = []

    async def get(self, namespace: str, name: str) -> Body | None:
        self.calls.append(("get", name))
        if self.down:
            raise DriftUnavailable("drift runtime at http://drift did not answer: connection refused")
        return self.monitors.get((namespace, name))

    async def put(self, namespace: str, name: str, config: Body) -> Body:
        self.calls.append(("put", name))
        if self.down:
            raise DriftUnavailable("drift runtime at http://drift did not answer: connection refused")
        self.monitors[(namespace, name)] = {"config": config, "versions": {}, "results": []}
        return self.monitors[(namespace, name)]


def clients(kube: Any = None, s3: Any = None, prometheus: Any = None, drift: Any = None) -> Clients:
    """A Clients bundle of fakes; what a test leaves out is a fake with nothing in it."""
    return Clients(kube if kube is not None else FakeKube(), s3 if s3 is not None else FakeS3(),
                   prometheus if prometheus is not None else FakePrometheus(), drift)  # fmt: skip


class QueryFunction:
    """Prometheus answering with an async function of (address, promql), which may record the queries."""

    def __init__(self, fn: Callable[[str, str], Awaitable[list[tuple[dict[str, str], float]]]]) -> None:
        self.fn = fn

    async def query(self, address: str, promql: str) -> list[tuple[dict[str, str], float]]:
        return await self.fn(address, promql)
