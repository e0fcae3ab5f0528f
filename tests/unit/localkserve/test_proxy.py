"""The gateway's data plane (hack/localkserve/proxy.py) against in-process HTTP backends."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from localkserve.proxy import Gateway
from localkserve.routing import Backend, Route, Table


class Backend1(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith(":predict"):
            data = json.dumps({"echo": body.decode(), "host": self.headers["Host"], "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:  # a streamed answer without Content-Length, ended by closing
            self.send_response(400)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"bad field x")
            self.close_connection = True


def serve(server: ThreadingHTTPServer) -> int:
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return int(server.server_address[1])


@pytest.fixture
def gateway() -> Iterator[tuple[Table, int, int]]:
    backend = ThreadingHTTPServer(("127.0.0.1", 0), Backend1)
    table = Table(seed=1)
    gw = Gateway(("127.0.0.1", 0), table)
    yield table, serve(backend), serve(gw)
    gw.shutdown()
    backend.shutdown()


def request(
    port: int, method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    out = (resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    conn.close()
    return out


def test_relays_to_a_ready_pod(gateway: tuple[Table, int, int]) -> None:
    table, backend, port = gateway
    table.put(
        Route("ml", "iris", frozenset({"iris.ml.example.com"}), (Backend("rev-1", 100, (f"127.0.0.1:{backend}",)),))
    )
    code, headers, body = request(
        port, "POST", "/v1/models/iris:predict", b'{"instances": [[1]]}', Host="iris.ml.example.com"
    )
    assert code == 200 and headers["x-localkserve-revision"] == "rev-1"
    assert json.loads(body) == {
        "echo": '{"instances": [[1]]}',
        "host": "iris.ml.example.com",
        "path": "/v1/models/iris:predict",
    }
    code, headers, body = request(port, "POST", "/v2/models/iris/infer", b"{}")
    assert (code, body) == (400, b"bad field x") and headers["transfer-encoding"] == "chunked"


def test_chunked_request_body(gateway: tuple[Table, int, int]) -> None:
    table, backend, port = gateway
    table.put(Route("ml", "iris", frozenset(), (Backend("rev-1", 100, (f"127.0.0.1:{backend}",)),)))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/models/iris:predict", body=iter([b'{"a"', b": 1}"]), encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200 and json.loads(resp.read())["echo"] == '{"a": 1}'
    conn.close()


def test_gateway_errors(gateway: tuple[Table, int, int]) -> None:
    table, _, port = gateway
    code, _, body = request(port, "POST", "/v1/models/iris:predict", b"{}")
    assert code == 404 and "no InferenceService named 'iris'" in json.loads(body)["error"]
    table.put(Route("ml", "iris", frozenset(), (Backend("rev-1", 100, ()),)))
    code, _, body = request(port, "POST", "/v1/models/iris:predict", b"{}")
    assert code == 503 and "no ready predictor pod for InferenceService ml/iris" in json.loads(body)["error"]
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    table.put(Route("ml", "iris", frozenset(), (Backend("rev-1", 100, (closed,)),)))
    code, _, body = request(port, "POST", "/v1/models/iris:predict", b"{}")
    assert code == 502 and "did not answer" in json.loads(body)["error"]
    code, _, body = request(port, "GET", "/_localkserve/routes")
    assert code == 200 and json.loads(body)[0]["backends"][0]["endpoints"] == [closed]


class Sink(BaseHTTPRequestHandler):
    """A CloudEvents receiver that keeps what it got."""

    got: list[tuple[dict[str, str], bytes]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Sink.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.mark.parametrize(("mode", "types"), [("request", ["request"]), ("all", ["request", "response"])])
def test_payload_logger_sends_cloudevents(gateway: tuple[Table, int, int], mode: str, types: list[str]) -> None:
    table, backend, port = gateway
    Sink.got = []
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    sink_port = serve(sink)
    url = f"http://127.0.0.1:{sink_port}/v1/events/ml/dm/iris-v1"
    table.put(Route("ml", "iris", frozenset(), (Backend("rev-1", 100, (f"127.0.0.1:{backend}",), (url, mode), "p"),)))
    body = b'{"instances": [[1.0, 2.0]]}'
    status, _, _ = request(port, "POST", "/v1/models/iris:predict", body, Host="iris.ml.example.com")
    assert status == 200
    deadline = time.monotonic() + 5
    while len(Sink.got) < len(types) and time.monotonic() < deadline:
        time.sleep(0.02)
    sink.shutdown()
    got = sorted(Sink.got, key=lambda e: e[0]["ce-type"])
    assert [h["ce-type"].rsplit(".", 1)[1] for h, _ in got] == types
    headers, data = got[0]
    assert data == body
    assert headers["ce-inferenceservicename"] == "iris" and headers["ce-namespace"] == "ml"
    assert headers["ce-component"] == "predictor" and headers["ce-endpoint"] == "p"
    assert headers["ce-specversion"] == "1.0" and len({h["ce-id"] for h, _ in got}) == 1
    if mode == "all":
        assert json.loads(got[1][1])["echo"] == body.decode()
