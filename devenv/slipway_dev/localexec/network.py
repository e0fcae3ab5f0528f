"""Cluster DNS names in env values: rewritten to the pod IPs the executor gave its pods.

There is no cluster DNS here, so names that would resolve to pods run by this executor are
rewritten in env values (hosts of URLs, `host`, `host:port`, and comma-separated lists of
those) to the pod's IP (podnet.py): a pod's `<hostname>.<subdomain>` to that pod's IP, a
Service's name to the IP of one of the pods it selects (a ready one first), its port to
the Service's targetPort. Names the executor does not run (kwok's simulated pods, Services
of nothing, outside hosts) are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from slipway import contract

Obj = dict[str, Any]

JOB_LABEL, ATTEMPT_LABEL = contract.TRAINING_JOB, contract.ATTEMPT

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_URL_HOST = re.compile(
    r"(?P<pre>\b[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/\s]*@)?)(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>\d+))?"
)
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>\d+))?$")


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


@dataclass(frozen=True)
class Target:
    """Where a name points: an IP, and for a Service its port -> targetPort."""

    ip: str
    ports: Mapping[int, int] = field(default_factory=dict)

    def port(self, port: str | None) -> str | None:
        if port is None:
            return None
        return str(self.ports.get(int(port), int(port)))


def rewrite_hosts(value: str, resolve: Callable[[str], Target | None]) -> str:
    """`value` with every host that `resolve` knows replaced by its target's IP (and a
    Service's port by its targetPort)."""
    out = []
    for item in value.split(","):
        m = _HOST_PORT.match(item.strip())
        target = resolve(m.group("host")) if m else None
        if m and target is not None:
            port = target.port(m.group("port"))
            item = item.replace(m.group(0), target.ip + (f":{port}" if port else ""), 1)
        else:

            def sub(u: re.Match[str]) -> str:
                t = resolve(u.group("host"))
                if t is None:
                    return u.group(0)
                port = t.port(u.group("port"))
                return u.group("pre") + t.ip + (f":{port}" if port else "")

            item = _URL_HOST.sub(sub, item)
        out.append(item)
    return ",".join(out)


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _ns(pod: Obj) -> str:
    return str(pod["metadata"].get("namespace", "default"))


def _ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") or bool(
        pod["metadata"].get("deletionTimestamp")
    )


def target_port(service: Obj, pod: Obj) -> dict[int, int]:
    """A Service's port -> the pod's port it sends to (a named targetPort is looked up in
    the pod's containers)."""
    named = {
        p["name"]: int(p["containerPort"])
        for c in (pod.get("spec") or {}).get("containers") or []
        for p in c.get("ports") or []
        if p.get("name") and p.get("containerPort")
    }
    out: dict[int, int] = {}
    for p in (service.get("spec") or {}).get("ports") or []:
        port, target = p.get("port"), p.get("targetPort", p.get("port"))
        if not isinstance(port, int):
            continue
        if isinstance(target, str) and not target.isdigit():
            if target in named:
                out[port] = named[target]
        elif target is not None:
            out[port] = int(target)
    return out


class Resolver:
    """Resolves DNS names to the pods the executor runs.

    `pods` are the executor's pods (all it knows, scheduled or not: a gang's rank 0 may be
    bound after rank 1 starts); `service(ns, name)` gives a Service, or None when there is
    no such Service; `ip_of(pod)` the pod's IP (allocated on first use), None when it has
    none.
    """

    def __init__(
        self,
        pods: Iterable[Obj],
        service: Callable[[str, str], Obj | None],
        ip_of: Callable[[Obj], str | None],
    ) -> None:
        self.pods = list(pods)
        self.service = service
        self.ip_of = ip_of

    def resolve(self, host: str, client: Obj) -> Target | None:
        for c in dns_candidates(host, _ns(client)):
            target = self._pod_dns(c) if c.hostname is not None else self._service(c)
            if target is not None:
                return target
        return None

    def _pod_dns(self, c: Candidate) -> Target | None:
        for p in self.pods:
            spec = p.get("spec") or {}
            if (
                _ns(p) == c.namespace
                and spec.get("subdomain") == c.service
                and spec.get("hostname") == c.hostname
                and not _finished(p)
            ):
                ip = self.ip_of(p)
                return Target(ip) if ip else None
        return None

    def _service(self, c: Candidate) -> Target | None:
        if not any(_ns(p) == c.namespace for p in self.pods):
            return None  # no pod of ours there: no need to ask the API
        service = self.service(c.namespace, c.service)
        selector = ((service or {}).get("spec") or {}).get("selector")
        if not service or not selector:
            return None
        matching = [
            p
            for p in self.pods
            if _ns(p) == c.namespace
            and selector_matches(selector, p["metadata"].get("labels") or {})
            and not _finished(p)
        ]
        # A ready pod first (what an EndpointSlice would send to), then a running one.
        matching.sort(key=lambda p: (not _ready(p), not (p.get("spec") or {}).get("nodeName"), p["metadata"]["name"]))
        for p in matching:
            ip = self.ip_of(p)
            if ip:
                return Target(ip, target_port(service, p))
        return None


def gang_key(pod: Obj) -> tuple[str, str, str] | None:
    """(namespace, training job, attempt) for a pod of a training gang, else None."""
    labels = pod["metadata"].get("labels") or {}
    job = labels.get(JOB_LABEL)
    if not job:
        return None
    return (pod["metadata"].get("namespace", "default"), job, labels.get(ATTEMPT_LABEL, ""))
