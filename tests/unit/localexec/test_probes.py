"""Probes and lifecycle hooks as the kubelet runs them (slipway_dev/localexec/probes.py), against a
real HTTP server in the test: what it receives is what Knative's queue-proxy would."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from slipway_dev.localexec import probes
from slipway_dev.localexec.probes import HTTP, LIVENESS, STARTUP, ProbeSpec, ProbeState, check, probe_spec

from tests.unit.http_server import QuietHandler, serving


class Recorder(ThreadingHTTPServer):
    """Answers every GET with `status` and keeps the requests' paths and headers."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.status = 200

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class Handler(QuietHandler):
    server: Recorder

    def do_GET(self) -> None:
        self.server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def server() -> Iterator[Recorder]:
    with serving(Recorder()) as srv:
        yield srv


def queue_proxy(port: int) -> dict[str, Any]:
    """Knative's queue-proxy container as far as its readiness probe goes: an httpGet on the
    serving port with `K-Network-Probe: queue` (S/pkg/reconciler/revision/resources/
    queue.go:286-294), here by port name, as a probe may name it."""
    return {
        "name": "queue-proxy",
        "ports": [{"name": "queue-port", "containerPort": port}],
        "readinessProbe": {
            "httpGet": {
                "port": "queue-port",
                "path": "/",
                "httpHeaders": [{"name": "K-Network-Probe", "value": "queue"}],
            },
            "successThreshold": 1,
        },
    }


def test_http_probe_sends_its_headers_and_the_kubelets_user_agent(server: Recorder) -> None:
    spec = probes.readiness(queue_proxy(server.port), "127.0.0.1")
    assert spec is not None and spec.port == server.port
    assert check(spec) == (True, "")
    path, headers = server.requests[-1]
    assert path == "/"
    assert headers["k-network-probe"] == "queue"
    # The queue-proxy answers a probe itself only for a kubelet's User-Agent (knative.dev/pkg
    # network/handlers/drain.go:91-113); otherwise it proxies it to the user container.
    assert headers["user-agent"] == f"kube-probe/{probes.KUBE_VERSION}"
    assert headers["accept"] == "*/*"
    server.status = 503
    ok, message = check(spec)
    assert not ok and message == "HTTP probe failed with statuscode: 503"


def test_probe_headers_override_the_defaults(server: Recorder) -> None:
    headers = (("user-agent", "mine"), ("Accept", ""), ("Host", "svc.example"))
    assert check(ProbeSpec(HTTP, port=server.port, path="/healthz", headers=headers))[0]
    path, got = server.requests[-1]
    assert path == "/healthz"
    assert got["user-agent"] == "mine" and "accept" not in got and got["host"] == "svc.example"


def test_startup_and_liveness_probes_with_the_kubelets_defaults() -> None:
    container = {
        "name": "user-container",
        "ports": [{"name": "user-port", "containerPort": 8080}],
        "startupProbe": {"tcpSocket": {"port": 8080}, "failureThreshold": 30, "periodSeconds": 1},
        "livenessProbe": {"httpGet": {"port": "user-port", "path": "/live"}},
    }
    startup = probe_spec(container, STARTUP, "198.18.0.7")
    assert startup == ProbeSpec("tcp", host="198.18.0.7", port=8080, period=1.0, failure_threshold=30)
    live = probe_spec(container, LIVENESS, "198.18.0.7")
    assert live is not None and (live.kind, live.port, live.path, live.period, live.failure_threshold) == (
        HTTP,
        8080,
        "/live",
        10.0,
        3,
    )
    assert probe_spec(container, "readiness", "198.18.0.7") is None


def test_liveness_state_starts_passing_and_flips_after_failure_threshold() -> None:
    prober = probes.Prober(lambda r: None)
    try:
        spec = ProbeSpec(HTTP, port=1, failure_threshold=2)
        prober.watch("u", "c", 7, spec, 0.0, LIVENESS)
        prober.watch("u", "c", 7, spec, 0.0, STARTUP)
        live, startup = prober.states[("u", "c", LIVENESS)], prober.states[("u", "c", STARTUP)]
        assert live.ready and not startup.ready
        assert not live.record(False, 1.0) and live.ready  # one failure is not enough
        assert live.record(False, 2.0) and not live.ready and live.failures == 2
        assert startup.record(True, 1.0) and startup.ready
        prober.forget("u", "c", STARTUP)
        assert list(prober.states) == [("u", "c", LIVENESS)]
    finally:
        prober.shutdown()


def test_pre_stop_http_hook_reaches_the_pod_ip_with_the_lifecycle_user_agent(server: Recorder) -> None:
    # Knative's user container: preStop httpGet on the queue-proxy's admin port
    # (S/pkg/reconciler/revision/resources/deploy.go:101-112).
    container = {
        "name": "user-container",
        "lifecycle": {"preStop": {"httpGet": {"port": server.port, "path": "/wait-for-drain"}}},
    }
    hook = probes.pre_stop(container, "127.0.0.1")
    assert hook is not None and hook.probe is not None and hook.probe.host == "127.0.0.1"
    server.status = 500
    assert probes.run_hook(hook, 2.0) == ""  # any HTTP response will do (the kubelet's rule)
    path, headers = server.requests[-1]
    assert path == "/wait-for-drain" and headers["user-agent"] == f"kube-lifecycle/{probes.KUBE_VERSION}"
    server.shutdown()
    server.server_close()
    assert probes.run_hook(hook, 0.5).startswith(f'Get "http://127.0.0.1:{server.port}/wait-for-drain"')


def test_pre_stop_sleep_hook_is_capped_by_the_grace_period() -> None:
    slept: list[float] = []
    hook = probes.pre_stop({"name": "c", "lifecycle": {"preStop": {"sleep": {"seconds": 30}}}}, "127.0.0.1")
    assert hook is not None
    assert probes.run_hook(hook, 5.0, sleep=slept.append) == "" and slept == [5.0]


def test_probe_state_records_readiness() -> None:
    state = ProbeState(ProbeSpec(HTTP, success_threshold=2), pid=1, next_at=0.0)
    assert not state.record(True, 1.0)
    assert state.record(True, 2.0) and state.ready
