"""Host ports for declared container ports and readiness probes (hack/localexec/ports.py,
probes.py), without a cluster."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from localexec import ports, probes
from localexec.containers import Config, prepare
from localexec.network import GangPorts, Resolver


def predictor_pod(**container: Any) -> dict[str, Any]:
    c = {
        "name": "kserve-container",
        "image": "ghcr.io/slipway-dev/predictor:0.1.0",
        "args": ["--model_name=m", "--http_port=8080", "--grpc_port", "8081"],
        "ports": [{"containerPort": 8080, "name": "h2c"}, {"containerPort": 8081, "protocol": "TCP"}],
        **container,
    }
    return {
        "metadata": {"name": "m-predictor-abc", "namespace": "ml", "uid": "uid-1234-5678"},
        "spec": {"nodeName": "cpu-0", "containers": [c]},
    }


def test_declared_ports_once_each_tcp_only() -> None:
    pod = predictor_pod()
    pod["spec"]["containers"].append(
        {"name": "side", "ports": [{"containerPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]}
    )
    assert ports.declared(pod) == [8080, 8081]


def test_assign_keeps_a_free_previous_port_and_never_reuses_one() -> None:
    picks = iter([5000, 6000, 7000])
    mapping = ports.assign(
        [8080, 8081], {8080: 4000, 8081: 4100}, taken=[4100], pick=picks.__next__, is_free=lambda p: True
    )
    assert mapping == {8080: 4000, 8081: 5000}  # 4100 is another pod's
    picks = iter([5000, 5000, 6000])
    mapping = ports.assign([8080, 8081], {}, taken=[], pick=picks.__next__, is_free=lambda p: True)
    assert mapping == {8080: 5000, 8081: 6000}
    mapping = ports.assign([8080], {8080: 4000}, taken=[], pick=lambda: 5001, is_free=lambda p: False)
    assert mapping == {8080: 5001}  # something else listens there now


def test_rewrite_args_and_env() -> None:
    mapping = {8080: 41000, 8081: 42000}
    argv = ["python", "-m", "x", "--http_port=8080", "--grpc-port", "8081", "--workers", "8080", "--PORT=9999"]
    assert ports.rewrite_args(argv, mapping) == [
        "python", "-m", "x", "--http_port=41000", "--grpc-port", "42000", "--workers", "8080", "--PORT=9999",
    ]  # fmt: skip
    assert ports.rewrite_env("PORT", "8080", mapping) == "41000"
    assert ports.rewrite_env("HTTP_PORT", "8081", mapping) == "42000"
    assert ports.rewrite_env("REPORT", "8080", mapping) == "8080"  # not a PORT-style name
    assert ports.rewrite_env("HTTP_PORT", "9000", mapping) == "9000"  # not a declared port


def test_annotation_round_trip() -> None:
    pod = predictor_pod()
    pod["metadata"]["annotations"] = {ports.ANNOTATION: ports.annotation_value({8081: 2, 8080: 1})}
    assert pod["metadata"]["annotations"][ports.ANNOTATION] == '{"8080": 1, "8081": 2}'
    assert ports.published(pod) == {8080: 1, 8081: 2}
    pod["metadata"]["annotations"][ports.ANNOTATION] = "not json"
    assert ports.published(pod) == {}


class NoSources:
    def secret(self, namespace: str, name: str) -> None:
        return None

    def config_map(self, namespace: str, name: str) -> None:
        return None


def test_prepare_substitutes_host_ports(tmp_path: Path) -> None:
    cfg = Config(root=tmp_path / "executor", python="/venv/bin/python", repo_root=tmp_path)
    env = [{"name": "PORT", "value": "8080"}, {"name": "URL", "value": "http://127.0.0.1:$(PORT)/v1"}]
    pod = predictor_pod(env=env)
    launch = prepare(
        cfg, pod, pod["spec"]["containers"][0], NoSources(), Resolver([pod], lambda ns, n: None), GangPorts(), {},
        {8080: 41000, 8081: 42000},
    )  # fmt: skip
    assert launch.argv[-4:] == ["--model_name=m", "--http_port=41000", "--grpc_port", "42000"]
    assert launch.env["PORT"] == "41000"
    assert launch.env["URL"] == "http://127.0.0.1:41000/v1"


def test_readiness_spec_defaults_and_named_port() -> None:
    container = predictor_pod()["spec"]["containers"][0]
    container["readinessProbe"] = {"tcpSocket": {"port": "h2c"}, "periodSeconds": 1}
    spec = probes.readiness(container, {8080: 41000})
    assert spec == probes.ProbeSpec(probes.TCP, 41000, period=1.0)
    container["readinessProbe"] = {"httpGet": {"port": 8081, "path": "/v2/health/ready"}}
    spec = probes.readiness(container, {8080: 41000})
    assert spec is not None and (spec.kind, spec.port, spec.path, spec.period) == (
        probes.HTTP,
        8081,
        "/v2/health/ready",
        10.0,
    )
    container["readinessProbe"] = {"exec": {"command": ["true"]}}
    assert probes.check(probes.readiness(container, {}) or probes.ProbeSpec(probes.TCP)) == (True, "")
    del container["readinessProbe"]
    assert probes.readiness(container, {}) is None


def test_probe_state_thresholds() -> None:
    state = probes.ProbeState(
        probes.ProbeSpec(probes.TCP, 1, success_threshold=2, failure_threshold=2, period=1), pid=7, next_at=0
    )
    assert not state.record(True, 0.0) and not state.ready
    assert state.record(True, 1.0) and state.ready and state.next_at == 2.0
    assert not state.record(False, 2.0) and state.ready
    assert not state.record(True, 3.0)  # a success resets the failure count
    assert not state.record(False, 4.0)
    assert state.record(False, 5.0) and not state.ready


@pytest.fixture
def http_port() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ready" else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()


def test_check_tcp_and_http(http_port: int) -> None:
    assert probes.check(probes.ProbeSpec(probes.TCP, http_port)) == (True, "")
    assert probes.check(probes.ProbeSpec(probes.HTTP, http_port, path="/ready")) == (True, "")
    ok, message = probes.check(probes.ProbeSpec(probes.HTTP, http_port, path="/other"))
    assert not ok and "statuscode: 503" in message
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    ok, message = probes.check(probes.ProbeSpec(probes.TCP, closed))
    assert not ok and f"127.0.0.1:{closed}" in message


def test_prober_ignores_results_of_an_ended_run() -> None:
    results: list[probes.ProbeResult] = []
    prober = probes.Prober(results.append)
    try:
        prober.watch("uid", "c", 10, probes.ProbeSpec(probes.UNSUPPORTED, period=1), now=0.0)
        assert prober.next_deadline() == 0.0
        assert prober.apply(probes.ProbeResult("uid", "c", 9, True, ""), 0.0) is None  # an earlier pid
        state = prober.apply(probes.ProbeResult("uid", "c", 10, True, ""), 0.0)
        assert state is not None and state.ready
        prober.forget("uid")
        assert prober.next_deadline() is None
    finally:
        prober.shutdown()
