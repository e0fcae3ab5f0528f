"""Readiness probes, as the kubelet runs them, against the pod's IP.

A server process is running well before it listens (a model server loads its model first);
without a probe its pod would be Ready, and a Deployment available, before anything can
answer. So a container with a `readinessProbe` is ready only once the probe passes
`successThreshold` times in a row, and unready again after `failureThreshold` failures.
`tcpSocket` and `httpGet` probes are run (at the pod IP, or the probe's `host`, and the
port, a named one looked up in the container's ports); `exec` and `grpc` probes are not run
and count as passing. Liveness and startup probes are not run.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

Obj = dict[str, Any]

TCP, HTTP, UNSUPPORTED = "tcp", "http", "unsupported"


@dataclass(frozen=True)
class ProbeSpec:
    kind: str
    host: str = "127.0.0.1"
    port: int | None = None
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


def probe_port(container: Obj, port: int | str) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    named = {p["name"]: int(p["containerPort"]) for p in container.get("ports") or [] if p.get("name")}
    return named.get(str(port))


def readiness(container: Obj, pod_ip: str) -> ProbeSpec | None:
    """The container's readiness probe with the kubelet's defaults, or None without one."""
    probe = container.get("readinessProbe")
    if not probe:
        return None
    spec = ProbeSpec(
        UNSUPPORTED,
        initial_delay=float(probe.get("initialDelaySeconds") or 0),
        period=float(probe.get("periodSeconds") or 10),
        timeout=float(probe.get("timeoutSeconds") or 1),
        success_threshold=int(probe.get("successThreshold") or 1),
        failure_threshold=int(probe.get("failureThreshold") or 3),
    )
    if "tcpSocket" in probe:
        tcp = probe["tcpSocket"]
        port = probe_port(container, tcp.get("port", 0))
        return replace(spec, kind=TCP, host=tcp.get("host") or pod_ip, port=port)
    if "httpGet" in probe:
        get = probe["httpGet"]
        headers = tuple((h["name"], h["value"]) for h in get.get("httpHeaders") or [])
        port = probe_port(container, get.get("port", 0))
        path, scheme, host = get.get("path") or "/", get.get("scheme") or "HTTP", get.get("host") or pod_ip
        return replace(spec, kind=HTTP, host=host, port=port, path=path, scheme=scheme, headers=headers)
    return spec


def check(spec: ProbeSpec) -> tuple[bool, str]:
    """Run the probe once: (passed, why not). Blocks for at most about `spec.timeout`."""
    if spec.kind == UNSUPPORTED:
        return True, ""
    if spec.port is None:
        return False, "the probe names a port the container does not declare"
    if spec.kind == TCP:
        try:
            with socket.create_connection((spec.host, spec.port), timeout=spec.timeout):
                return True, ""
        except OSError as err:
            return False, f"dial tcp {spec.host}:{spec.port}: {err}"
    conn_class = http.client.HTTPSConnection if spec.scheme.upper() == "HTTPS" else http.client.HTTPConnection
    conn = conn_class(spec.host, spec.port, timeout=spec.timeout)
    try:
        conn.request("GET", spec.path, headers=dict(spec.headers))
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as err:
        return False, f'Get "{spec.scheme.lower()}://{spec.host}:{spec.port}{spec.path}": {err}'
    finally:
        conn.close()
    if 200 <= status < 400:  # the kubelet's rule: any 2xx or 3xx passes
        return True, ""
    return False, f"HTTP probe failed with statuscode: {status}"


@dataclass
class ProbeState:
    """One container run's readiness: the results so far and when to probe next."""

    spec: ProbeSpec
    pid: int  # the process probed: a result for an earlier run is stale
    next_at: float
    ready: bool = False
    successes: int = 0
    failures: int = 0
    in_flight: bool = False

    def record(self, ok: bool, now: float) -> bool:
        """Count a result; True when readiness flipped."""
        self.in_flight = False
        self.next_at = now + self.spec.period
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if not self.ready and self.successes >= self.spec.success_threshold:
                self.ready = True
                return True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.ready and self.failures >= self.spec.failure_threshold:
                self.ready = False
                return True
        return False


@dataclass(frozen=True)
class ProbeResult:
    uid: str
    container: str
    pid: int
    ok: bool
    message: str


class Prober:
    """The probes of every running container. Probes run on a few worker threads so a slow
    one never holds up the executor's loop; results come back through `post` (the loop's
    queue) and are applied there with `apply`."""

    def __init__(self, post: Callable[[ProbeResult], None], workers: int = 4) -> None:
        self.post = post
        self.states: dict[tuple[str, str], ProbeState] = {}
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")

    def watch(self, uid: str, container: str, pid: int, spec: ProbeSpec, now: float) -> None:
        self.states[(uid, container)] = ProbeState(spec, pid, now + spec.initial_delay)

    def forget(self, uid: str, container: str | None = None) -> None:
        for key in [k for k in self.states if k[0] == uid and container in (None, k[1])]:
            del self.states[key]

    def next_deadline(self) -> float | None:
        times = [s.next_at for s in self.states.values() if not s.in_flight]
        return min(times) if times else None

    def run_due(self, now: float) -> None:
        for (uid, container), state in self.states.items():
            if not state.in_flight and state.next_at <= now:
                state.in_flight = True
                self.pool.submit(self._probe, uid, container, state.pid, state.spec)

    def _probe(self, uid: str, container: str, pid: int, spec: ProbeSpec) -> None:
        try:
            ok, message = check(spec)
        except Exception as err:  # noqa: BLE001 -- a probe that breaks is a failed probe, never a lost one
            ok, message = False, f"probe error: {err}"
        self.post(ProbeResult(uid, container, pid, ok, message))

    def apply(self, result: ProbeResult, now: float) -> ProbeState | None:
        """Count a result; the container's probe state, or None for a result about a run that
        has ended since."""
        state = self.states.get((result.uid, result.container))
        if state is None or state.pid != result.pid:
            return None
        state.record(result.ok, now)
        return state

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
