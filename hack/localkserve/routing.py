"""The data plane's routing table: which InferenceService a request is for, and which pod
answers it. Only the Serverless InferenceServices the controller serves have a route;
Standard mode's requests go through KServe's own ingress (Traefik on the local cluster).

A request is for an InferenceService when its Host header (port aside) is one of the
service's names (the hosts of status.url, status.address.url and the predictor's URLs, or
`<isvc>.<ns>`); otherwise by the model name in a KServe path (`/v1/models/<name>...`,
`/v2/models/<name>...`), which slipway's runtime serves under the InferenceService's name,
when exactly one InferenceService has that name.

Each request picks a revision at random, weighted by its traffic percent, among the
revisions that have a ready pod, then one of that revision's ready pods: a revision that
is not ready yet (or any more) takes no requests and its share goes to the others, as a
Service's traffic only reaches ready endpoints. Seed the random source for repeatable runs.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import manifests

Obj = dict[str, Any]

_MODEL_PATH = re.compile(r"^/v[12]/models/(?P<model>[^/:?]+)")


@dataclass(frozen=True)
class Backend:
    revision: str
    weight: int
    endpoints: tuple[str, ...]  # host:port of its ready pods
    logger: tuple[str, str] | None = None  # (url, mode) of its payload logger
    predictor: str = ""  # the predictor's name (ce-endpoint of logged events)


@dataclass(frozen=True)
class Route:
    namespace: str
    name: str
    hosts: frozenset[str]
    backends: tuple[Backend, ...]

    def live(self) -> list[Backend]:
        return [b for b in self.backends if b.endpoints and b.weight > 0]

    def effective(self) -> dict[str, float]:
        """The share of requests each revision gets now (ready revisions only)."""
        live = self.live()
        total = sum(b.weight for b in live)
        out: dict[str, float] = {}
        for b in live:
            out[b.revision] = out.get(b.revision, 0.0) + b.weight / total
        return out

    def to_json(self) -> Obj:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "hosts": sorted(self.hosts),
            "backends": [
                {"revision": b.revision, "weight": b.weight, "endpoints": list(b.endpoints)} for b in self.backends
            ],
            "effective": self.effective(),
        }


def endpoint(pod: Obj) -> str | None:
    """<pod IP>:<the container's first port> of a ready, not terminating pod (the local
    executor gives each pod a loopback IP of its own), else None."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("phase") != "Running":
        return None
    if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
        return None
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    declared = containers[0].get("ports") or [{"containerPort": manifests.DEFAULT_PORT}]
    port, ip = int(declared[0].get("containerPort") or 0), status.get("podIP")
    return f"{ip}:{port}" if ip and port else None


def hosts(name: str, namespace: str, urls: Iterable[str]) -> frozenset[str]:
    names = {f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}-predictor.{namespace}"}
    names.update(urlsplit(u).hostname or "" for u in urls)
    return frozenset(n for n in names if n)


class Table:
    """Routes by (namespace, name); read by the proxy's threads, written by the controller."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str], Route] = {}
        self._rng = random.Random(seed)

    def put(self, route: Route) -> None:
        with self._lock:
            self._routes[(route.namespace, route.name)] = route

    def drop(self, namespace: str, name: str) -> None:
        with self._lock:
            self._routes.pop((namespace, name), None)

    def routes(self) -> list[Route]:
        with self._lock:
            return sorted(self._routes.values(), key=lambda r: (r.namespace, r.name))

    def find(self, host: str | None, path: str) -> tuple[Route | None, str]:
        """The route for a request, or (None, why not)."""
        bare = (host or "").rsplit(":", 1)[0].lower() if host and not host.startswith("[") else (host or "")
        routes = self.routes()
        for route in routes:
            if bare in route.hosts:
                return route, ""
        m = _MODEL_PATH.match(path)
        if not m:
            return None, f"no InferenceService for host {host!r} and path {path!r}"
        named = [r for r in routes if r.name == m.group("model")]
        if len(named) == 1:
            return named[0], ""
        if not named:
            return None, f"no InferenceService named {m.group('model')!r}"
        where = ", ".join(r.namespace for r in named)
        return (
            None,
            f"InferenceService {m.group('model')!r} exists in several namespaces ({where}): set the Host header",
        )

    def pick(self, route: Route) -> tuple[Backend, str] | None:
        """A revision by weight among those with a ready pod, then one of its pods."""
        live = route.live()
        if not live:
            return None
        with self._lock:
            backend = self._rng.choices(live, weights=[b.weight for b in live])[0]
            return backend, self._rng.choice(backend.endpoints)
