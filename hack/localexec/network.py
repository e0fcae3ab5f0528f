"""Loopback networking: every pod the executor runs is 127.0.0.1.

There is no cluster DNS and no pod network here, so names that would resolve to pods run by
this executor are rewritten to 127.0.0.1 in env values (hosts of URLs, `host`, `host:port`,
and comma-separated lists of those). Names the executor does not run (kwok's simulated pods,
Services of nothing) are left alone: rewriting them would point a client at whatever else
listens on the loopback. And since many gangs share one loopback, each torchrun gang gets
its own free MASTER_PORT instead of the fixed 29500.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

LOOPBACK = "127.0.0.1"
JOB_LABEL = "slipway.dev/training-job"
ATTEMPT_LABEL = "slipway.dev/attempt"

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_URL_HOST = re.compile(r"(?P<pre>\b[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/\s]*@)?)(?P<host>[A-Za-z0-9.-]+)")
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.-]+)(?P<port>:\d+)?$")


@dataclass(frozen=True)
class Candidate:
    """One way to read a cluster DNS name: a pod `<hostname>.<subdomain>` or a Service."""

    namespace: str
    service: str
    hostname: str | None = None


def dns_candidates(host: str, namespace: str) -> list[Candidate]:
    """The readings of `host` as a cluster DNS name, for a client in `namespace`.

    `svc`, `svc.ns`, `svc.ns.svc[.cluster.local]`, `h.sub` (pod in the client's namespace),
    `h.sub.ns`, `h.sub.ns.svc[.cluster.local]`. Two labels are ambiguous (`svc.ns` or
    `h.sub`), so both readings are returned. IPs and names that are not DNS labels give none.
    """
    name = host.lower().rstrip(".")
    name = name.removesuffix(".cluster.local")
    labels = name.split(".")
    if not labels or not all(_LABEL.match(x) for x in labels) or all(x.isdigit() for x in labels):
        return []
    if labels[-1] == "svc" and len(labels) >= 3:
        labels = labels[:-1]
        if len(labels) == 2:
            return [Candidate(labels[1], labels[0])]
        if len(labels) == 3:
            return [Candidate(labels[2], labels[1], labels[0])]
        return []
    if len(labels) == 1:
        return [Candidate(namespace, labels[0])]
    if len(labels) == 2:
        return [Candidate(namespace, labels[1], labels[0]), Candidate(labels[1], labels[0])]
    if len(labels) == 3:
        return [Candidate(labels[2], labels[1], labels[0])]
    return []


def rewrite_hosts(value: str, is_local: Callable[[str], bool]) -> str:
    """`value` with every host for which `is_local(host)` holds replaced by 127.0.0.1."""
    items = value.split(",")
    out = []
    for item in items:
        m = _HOST_PORT.match(item.strip())
        if m and is_local(m.group("host")):
            item = item.replace(m.group("host"), LOOPBACK, 1)
        else:
            item = _URL_HOST.sub(
                lambda u: u.group("pre") + (LOOPBACK if is_local(u.group("host")) else u.group("host")), item
            )
        out.append(item)
    return ",".join(out)


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class Resolver:
    """Decides whether a DNS name points at a pod the executor runs.

    `pods` are the executor's pods (all it knows, scheduled or not: a gang's rank 0 may be
    bound after rank 1 starts); `service_selector(ns, name)` gives a Service's selector, or
    None when there is no such Service.
    """

    def __init__(self, pods: Iterable[Obj], service_selector: Callable[[str, str], Mapping[str, str] | None]) -> None:
        self.pods = list(pods)
        self.service_selector = service_selector

    def is_local(self, host: str, client: Obj) -> bool:
        namespace = client["metadata"].get("namespace", "default")
        for c in dns_candidates(host, namespace):
            if c.hostname is not None:
                if self._pod_dns(c, client):
                    return True
            elif self._service(c, client):
                return True
        return False

    def _pod_dns(self, c: Candidate, client: Obj) -> bool:
        # The client's own subdomain is its gang's headless Service: every name in it is a
        # sibling, even one that is not created yet.
        spec = client.get("spec") or {}
        if client["metadata"].get("namespace", "default") == c.namespace and spec.get("subdomain") == c.service:
            return True
        return any(
            p["metadata"].get("namespace", "default") == c.namespace
            and (p.get("spec") or {}).get("subdomain") == c.service
            and (p.get("spec") or {}).get("hostname") == c.hostname
            for p in self.pods
        )

    def _service(self, c: Candidate, client: Obj) -> bool:
        if (
            client["metadata"].get("namespace", "default") == c.namespace
            and (client.get("spec") or {}).get("subdomain") == c.service
        ):
            return True
        if not any(p["metadata"].get("namespace", "default") == c.namespace for p in self.pods):
            return False  # no pod of ours there: no need to ask the API
        selector = self.service_selector(c.namespace, c.service)
        if not selector:
            return False
        return any(
            p["metadata"].get("namespace", "default") == c.namespace
            and selector_matches(selector, p["metadata"].get("labels") or {})
            for p in self.pods
        )


def gang_key(pod: Obj) -> tuple[str, str, str] | None:
    """(namespace, training job, attempt) for a pod of a training gang, else None."""
    labels = pod["metadata"].get("labels") or {}
    job = labels.get(JOB_LABEL)
    if not job:
        return None
    return (pod["metadata"].get("namespace", "default"), job, labels.get(ATTEMPT_LABEL, ""))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class GangPorts:
    """One MASTER_PORT per gang, the same for all its pods, picked free when the gang's
    first pod starts. Released by `retain` once no pod of the gang is left."""

    pick: Callable[[], int] = free_port
    ports: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def port(self, key: tuple[str, str, str]) -> int:
        if key not in self.ports:
            taken = set(self.ports.values())
            port = self.pick()
            for _ in range(20):  # the kernel may hand back a port we gave another gang
                if port not in taken:
                    break
                port = self.pick()
            self.ports[key] = port
        return self.ports[key]

    def retain(self, live: Iterable[tuple[str, str, str]]) -> None:
        keep = set(live)
        for key in [k for k in self.ports if k not in keep]:
            del self.ports[key]
