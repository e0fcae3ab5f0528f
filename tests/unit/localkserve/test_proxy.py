"""The gateway's data plane (hack/localkserve/proxy.py) against in-process HTTP backends."""

from __future__ import annotations

import http.client
import json
import socket
import threading
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
