"""The dev environment's Kubernetes API client (slipway_dev/kube.py) against a real HTTP(S) server in the test:
kept-alive connections, one per thread, a dropped one reconnected; the JSON API's errors; watches; a kubeconfig's
embedded client certificate."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from slipway_dev.kube import Api, ApiError, Unavailable
from slipway_dev.localcluster import kubeconfig
from slipway_dev.localcluster.pki import ADMIN, PKI

from tests.unit.http_server import QuietHandler, serving

NOT_FOUND = {"kind": "Status", "status": "Failure", "message": 'configmaps "gone" not found', "code": 404}


class FakeApi(ThreadingHTTPServer):
    """HTTP/1.1 with keep-alive; keeps every request as (client port, method, path, headers, body)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[tuple[int, str, str, dict[str, str], bytes]] = []
        self.drop_after_answer = False  # close the connection without saying so (an idle timeout's effect)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def ports(self) -> set[int]:
        return {port for port, *_ in self.seen}


class Handler(QuietHandler):
    server: FakeApi
    protocol_version = "HTTP/1.1"

    def handle_one_request(self) -> None:
        super().handle_one_request()
        if self.server.drop_after_answer:
            self.close_connection = True

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.append((self.client_address[1], self.command, self.path, headers, body))
        url = urllib.parse.urlsplit(self.path)
        if "watch=true" in url.query:
            return self._watch()
        if url.path.endswith("/gone"):
            return self._json(404, NOT_FOUND)
        self._json(200, {"path": url.path, "query": url.query, "body": body.decode() or None})

    do_GET = do_PATCH = do_POST = do_DELETE = _answer

    def _json(self, status: int, obj: Any) -> None:
        raw = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _watch(self) -> None:
        self.send_response(200)
        self.send_header("Connection", "close")  # the body ends when the server ends the watch
        self.end_headers()
        for name in ("a", "b"):
            self.wfile.write(json.dumps({"type": "ADDED", "object": {"metadata": {"name": name}}}).encode() + b"\n")
        self.close_connection = True


@pytest.fixture
def server() -> Iterator[FakeApi]:
    with serving(FakeApi()) as srv:
        yield srv


def test_requests_reuse_one_connection_per_thread(server: FakeApi) -> None:
    api = Api(server.url)
    for _ in range(5):
        assert api.call("GET", "/api/v1/namespaces/ns/configmaps/x")["path"] == "/api/v1/namespaces/ns/configmaps/x"
    assert len(server.ports()) == 1
    other = threading.Thread(target=lambda: api.request("GET", "/healthz"))
    other.start()
    other.join()
    assert len(server.ports()) == 2 and len(server.seen) == 6


def test_a_connection_the_server_dropped_is_reconnected_once(server: FakeApi) -> None:
    api = Api(server.url)
    server.drop_after_answer = True
    assert api.ok("/readyz")
    assert api.call("POST", "/api/v1/namespaces/ns/events", {"reason": "x"})["body"] == '{"reason": "x"}'
    assert [method for _, method, *_ in server.seen] == ["GET", "POST"]  # sent once each
    assert len(server.ports()) == 2


def test_the_json_api_raises_what_the_server_said_and_read_tolerates_absence(server: FakeApi) -> None:
    api = Api(server.url)
    with pytest.raises(ApiError) as err:
        api.call("GET", "/api/v1/namespaces/ns/configmaps/gone")
    assert err.value.status == 404 and err.value.message == NOT_FOUND["message"]
    assert api.read("/api/v1/namespaces/ns/configmaps/gone") is None
    assert api.get_json("/api/v1/namespaces/ns/configmaps/gone") is None
    assert api.read("/api/v1/namespaces/ns/configmaps/here")["path"].endswith("/here")
    assert api.request("GET", "/api/v1/namespaces/ns/configmaps/gone")[0] == 404
    assert api.delete("/api/v1/namespaces/ns/configmaps/gone")  # already absent


def test_nothing_answering_is_status_zero_or_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    api = Api(f"http://127.0.0.1:{port}")
    assert api.request("GET", "/readyz") == (0, b"") and not api.ok("/readyz") and api.get_json("/x") is None
    with pytest.raises(Unavailable):
        api.read("/x")
    with pytest.raises(Unavailable):
        list(api.watch("/api/v1/pods", {}, timeout=2))


def test_apply_is_a_forced_server_side_apply_with_the_object_as_is(server: FakeApi) -> None:
    answer = Api(server.url).apply("/api/v1/nodes/n", {"metadata": {"name": "n", "labels": {"x": "é"}}}, "me",
                                   strict=True)  # fmt: skip
    _, method, _, headers, body = server.seen[0]
    assert method == "PATCH" and headers["content-type"] == "application/apply-patch+yaml"
    assert urllib.parse.parse_qs(answer["query"]) == {"fieldManager": ["me"], "force": ["true"],
                                                      "fieldValidation": ["Strict"]}  # fmt: skip
    assert json.loads(body)["metadata"]["labels"]["x"] == "é" and "é".encode() in body


def test_watch_yields_the_events_until_the_server_ends_it(server: FakeApi) -> None:
    events = list(Api(server.url).watch("/api/v1/pods", {"resourceVersion": "7"}, timeout=5))
    assert [e["object"]["metadata"]["name"] for e in events] == ["a", "b"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(server.seen[0][2]).query)
    assert query == {"resourceVersion": ["7"], "watch": ["true"]}


def test_a_kubeconfig_token_is_sent_as_a_bearer_token(server: FakeApi, tmp_path: Path) -> None:
    config = {"current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
              "clusters": [{"name": "k", "cluster": {"server": server.url}}],
              "users": [{"name": "u", "user": {"token": "s3cret"}}]}  # fmt: skip
    (tmp_path / "config").write_text(json.dumps(config))
    Api.from_kubeconfig(tmp_path / "config").call("GET", "/version")
    assert server.seen[0][3]["authorization"] == "Bearer s3cret"


def test_a_kubeconfig_with_embedded_certificates_authenticates_over_tls(tmp_path: Path) -> None:
    pki = PKI(tmp_path / "pki")
    pki.ensure()
    cert, key = pki.server_cert("fake-api", ["IP:127.0.0.1"])
    srv = FakeApi()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(cert), str(key))
    ctx.verify_mode = ssl.CERT_REQUIRED  # a client without the CA's certificate is refused
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    with serving(srv):
        server = f"https://127.0.0.1:{srv.server_address[1]}"
        path = kubeconfig.for_identity(pki, server, ADMIN, tmp_path / "kubeconfig")
        assert Api.from_kubeconfig(path).call("GET", "/version")["path"] == "/version"
        assert Api.with_client_cert(server, pki.ca_cert, *pki.client_cert(ADMIN)).ok("/readyz")
        assert Api(server).request("GET", "/readyz")[0] == 0  # the server's CA is not the system's
