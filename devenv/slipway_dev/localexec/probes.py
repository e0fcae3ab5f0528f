"""Probes and lifecycle hooks, as the kubelet runs them, against the pod's IP.

A server process is running well before it listens (a model server loads its model first);
without a probe its pod would be Ready, and a Deployment available, before anything can
answer. So a container with a `readinessProbe` is ready only once the probe passes
`successThreshold` times in a row, and unready again after `failureThreshold` failures.
A `startupProbe` holds readiness and liveness back until it passes (the container is not
`started` before) and has the container killed after `failureThreshold` failures; a
`livenessProbe` has it killed after `failureThreshold` failures in a row (the executor
restarts it as the pod's restartPolicy says). `tcpSocket` and `httpGet` probes are run (at
the pod IP, or the probe's `host`, and the port, a named one looked up in the container's
ports); `exec` and `grpc` probes are not run and count as passing.

HTTP requests are the kubelet's (k8s.io/kubernetes@v1.34.4 pkg/probe/http/request.go:42-99):
the probe's `httpHeaders`, plus `User-Agent: kube-probe/1.34` (`kube-lifecycle/1.34` for a
hook) and `Accept: */*` unless the probe sets them (an empty Accept removes it), `Host` from
the headers; HTTPS without certificate verification. Knative's queue-proxy needs exactly
that: it answers its readiness probe (`K-Network-Probe: queue`) itself only when the
User-Agent starts with `kube-probe/` (knative.dev/pkg network/handlers/drain.go:91-113);
without it the probe would be proxied to the user container as a request.

`pre_stop` runs a container's `lifecycle.preStop` handler (`httpGet`: any HTTP response
counts, only a failed connection is an error, pkg/kubelet/lifecycle/handlers.go:147-191;
`sleep`: waits), which the executor does before sending the container SIGTERM.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

Obj = dict[str, Any]

TCP, HTTP, UNSUPPORTED = "tcp", "http", "unsupported"
READINESS, LIVENESS, STARTUP = "readiness", "liveness", "startup"
PROBE_FIELDS = {READINESS: "readinessProbe", LIVENESS: "livenessProbe", STARTUP: "startupProbe"}
KUBE_VERSION = "1.34"  # the control plane's (hack/controlplane/go.mod): the kubelet's User-Agent


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
    return probe_spec(container, READINESS, pod_ip)


def probe_spec(container: Obj, kind: str, pod_ip: str) -> ProbeSpec | None:
    """The container's `kind` probe (READINESS, LIVENESS, STARTUP) with the kubelet's
    defaults, or None without one."""
    probe = container.get(PROBE_FIELDS[kind])
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
    try:
        status = http_get(spec, "probe")
    except (OSError, http.client.HTTPException) as err:
        return False, f'Get "{spec.scheme.lower()}://{spec.host}:{spec.port}{spec.path}": {err}'
    if 200 <= status < 400:  # the kubelet's rule: any 2xx or 3xx passes
        return True, ""
    return False, f"HTTP probe failed with statuscode: {status}"


def request_headers(headers: tuple[tuple[str, str], ...], purpose: str) -> dict[str, str]:
    """The headers of the kubelet's request: the probe's (names case-insensitive, the last
    of a name wins), `User-Agent: kube-<purpose>/<version>` and `Accept: */*` unless given;
    an empty Accept is dropped."""
    out: dict[str, str] = {}
    for name, value in headers:
        for known in [k for k in out if k.lower() == name.lower()]:
            del out[known]
        out[name] = value
    names = {k.lower(): k for k in out}
    if "user-agent" not in names:
        out["User-Agent"] = f"kube-{purpose}/{KUBE_VERSION}"
    if "accept" not in names:
        out["Accept"] = "*/*"
    elif not out[names["accept"]]:
        del out[names["accept"]]
    return out


def http_get(spec: ProbeSpec, purpose: str) -> int:
    """GET the probe's URL as the kubelet does; the response's status code. http.client
    sends the Host header given in the headers instead of its own."""
    conn: http.client.HTTPConnection
    if spec.scheme.upper() == "HTTPS":  # the kubelet does not verify probe certificates
        conn = http.client.HTTPSConnection(
            spec.host, spec.port, timeout=spec.timeout, context=ssl._create_unverified_context()
        )
    else:
        conn = http.client.HTTPConnection(spec.host, spec.port, timeout=spec.timeout)
    try:
        conn.request("GET", spec.path, headers=request_headers(spec.headers, purpose))
        return conn.getresponse().status
    finally:
        conn.close()


# ---- lifecycle hooks ----------------------------------------------------------------------

HOOK_HTTP, HOOK_SLEEP = "httpGet", "sleep"


@dataclass(frozen=True)
class Hook:
    """A lifecycle handler the executor can run: an httpGet (`probe` holds its request) or a
    sleep."""

    kind: str
    probe: ProbeSpec | None = None
    seconds: float = 0.0


def unsupported_lifecycle(container: Obj) -> str | None:
    """Why the container's `lifecycle` cannot be honoured here (None when it can): postStart
    hooks are not run, nor `exec` (or any other non-httpGet, non-sleep) preStop handlers. A
    container the kubelet would treat differently is refused rather than run without them."""
    lifecycle = container.get("lifecycle") or {}
    if lifecycle.get("postStart"):
        return f"lifecycle.postStart ({container.get('name')}) is not supported by the local executor"
    pre_stop = lifecycle.get("preStop")
    if pre_stop and not (pre_stop.get(HOOK_HTTP) or pre_stop.get(HOOK_SLEEP)):
        kinds = ", ".join(sorted(pre_stop)) or "empty"
        return f"lifecycle.preStop ({container.get('name')}): {kinds} handlers are not supported by the local executor"
    return None


def pre_stop(container: Obj, pod_ip: str) -> Hook | None:
    """The container's preStop hook, or None without one the executor runs."""
    handler = (container.get("lifecycle") or {}).get("preStop") or {}
    if handler.get(HOOK_HTTP):
        get = handler[HOOK_HTTP]
        headers = tuple((h["name"], h["value"]) for h in get.get("httpHeaders") or [])
        port = probe_port(container, get.get("port", 0))
        path, scheme, host = get.get("path") or "/", get.get("scheme") or "HTTP", get.get("host") or pod_ip
        probe = ProbeSpec(HTTP, host=host, port=port, path=path, scheme=scheme, headers=headers)
        return Hook(HOOK_HTTP, probe=probe)
    if handler.get(HOOK_SLEEP):
        return Hook(HOOK_SLEEP, seconds=float(handler[HOOK_SLEEP].get("seconds") or 0))
    return None


def run_hook(hook: Hook, timeout: float, sleep: Callable[[float], None] = time.sleep) -> str:
    """Run a hook for at most about `timeout` seconds: "" when it succeeded, else why not
    (the kubelet's FailedPreStopHook). An HTTP hook succeeds on any response."""
    if hook.kind == HOOK_SLEEP:
        sleep(max(0.0, min(hook.seconds, timeout)))
        return ""
    assert hook.probe is not None
    spec = replace(hook.probe, timeout=max(timeout, 0.1))
    if spec.port is None:
        return "the hook names a port the container does not declare"
    try:
        http_get(spec, "lifecycle")
    except (OSError, http.client.HTTPException) as err:
        return f'Get "{spec.scheme.lower()}://{spec.host}:{spec.port}{spec.path}": {err}'
    return ""


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
    kind: str = READINESS


class Prober:
    """The probes of every running container. Probes run on a few worker threads so a slow
    one never holds up the executor's loop; results come back through `post` (the loop's
    queue) and are applied there with `apply`."""

    def __init__(self, post: Callable[[ProbeResult], None], workers: int = 4) -> None:
        self.post = post
        self.states: dict[tuple[str, str, str], ProbeState] = {}  # (uid, container, kind)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")

    def watch(self, uid: str, container: str, pid: int, spec: ProbeSpec, now: float, kind: str = READINESS) -> None:
        # A liveness probe starts out passing (the kubelet's initial result is Success).
        self.states[(uid, container, kind)] = ProbeState(spec, pid, now + spec.initial_delay, ready=kind == LIVENESS)

    def forget(self, uid: str, container: str | None = None, kind: str | None = None) -> None:
        for key in [k for k in self.states if k[0] == uid and container in (None, k[1]) and kind in (None, k[2])]:
            del self.states[key]

    def next_deadline(self) -> float | None:
        times = [s.next_at for s in self.states.values() if not s.in_flight]
        return min(times) if times else None

    def run_due(self, now: float) -> None:
        for (uid, container, kind), state in self.states.items():
            if not state.in_flight and state.next_at <= now:
                state.in_flight = True
                self.pool.submit(self._probe, uid, container, state.pid, state.spec, kind)

    def _probe(self, uid: str, container: str, pid: int, spec: ProbeSpec, kind: str) -> None:
        try:
            ok, message = check(spec)
        except Exception as err:  # noqa: BLE001 -- a probe that breaks is a failed probe, never a lost one
            ok, message = False, f"probe error: {err}"
        self.post(ProbeResult(uid, container, pid, ok, message, kind))

    def apply(self, result: ProbeResult, now: float) -> ProbeState | None:
        """Count a result; the container's probe state, or None for a result about a run that
        has ended since."""
        state = self.states.get((result.uid, result.container, result.kind))
        if state is None or state.pid != result.pid:
            return None
        state.record(result.ok, now)
        return state

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
