"""The gateway's data plane: an HTTP server on the loopback that plays KServe's ingress for
Serverless InferenceServices (Standard mode's is Traefik, hack/localcluster/serving.py).

Each request is routed by the routing table (routing.py) to one ready predictor pod and
relayed: method, path, headers (hop-by-hop ones aside; Host kept, as an ingress does) and
body go up, status, headers and body come back streamed. Answers of the gateway itself are
JSON `{"error": ...}`: 404 no such InferenceService, 400 ambiguous, 503 nothing ready, 502
the pod did not answer. Responses carry `x-localkserve-revision` (the revision that
answered), which a real ingress would not add. `/_localkserve/routes` shows the table,
`/_localkserve/healthz` says the gateway is up.

A revision whose predictor spec has a `logger` gets KServe's payload logging (payload_logger.py): each
POST it serves goes on as a CloudEvent to the logger's URL, after the answer, off the request path.
"""

from __future__ import annotations

import http.client
import json
import logging
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .payload_logger import Origin, PayloadLogger, Sink
from .routing import Table

log = logging.getLogger("localkserve.proxy")

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
CHUNK = 64 * 1024
REVISION_HEADER = "x-localkserve-revision"
CAPTURE_MAX = 4 * 1024 * 1024  # responses kept for the payload logger


class Gateway(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        table: Table,
        upstream_timeout: float = 120.0,
        logger: PayloadLogger | None = None,
    ) -> None:
        super().__init__(address, Handler)
        self.table = table
        self.upstream_timeout = upstream_timeout
        self.logger = logger or PayloadLogger()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client loop should not pay a connect per request
    # Headers and body go out in separate writes: with Nagle's algorithm the body would wait
    # for the client's delayed ACK, 40ms per request.
    disable_nagle_algorithm = True
    server: Gateway

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    # ---- requests ---------------------------------------------------------------------

    def _handle(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = urlsplit(self.path).path
        if path.startswith("/_localkserve/"):
            self._own(path)
            return
        table = self.server.table
        route, why = table.find(self.headers.get("Host"), path)
        if route is None:
            self._error(400 if "several namespaces" in why else 404, why)
            return
        picked = table.pick(route)
        if picked is None:
            waiting = ", ".join(b.revision for b in route.backends) or "none yet"
            self._error(503, f"no ready predictor pod for InferenceService {route.namespace}/{route.name} ({waiting})")
            return
        backend, address = picked
        sink = Sink(*backend.logger) if backend.logger else None
        captured = self._forward(address, backend.revision, body, capture=bool(sink and sink.wants("response")))
        if sink is not None:
            self._log(
                sink, Origin(route.namespace, route.name, backend.predictor, f"http://{address}/"), body, captured
            )

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._error(400, "bad Content-Length")
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _log(self, sink: Sink, origin: Origin, body: bytes, response: tuple[bytes, str] | None) -> None:
        """What the agent sidecar does after a call: the request (and response) as CloudEvents, queued."""
        if self.command != "POST":
            return  # only inference calls are logged, not metadata reads
        event_id = str(uuid.uuid4())
        content_type = self.headers.get("Content-Type") or "application/json"
        self.server.logger.submit(sink, "request", event_id, origin, body, content_type)
        if response is not None:
            self.server.logger.submit(sink, "response", event_id, origin, *response)

    def _forward(self, address: str, revision: str, body: bytes, capture: bool = False) -> tuple[bytes, str] | None:
        host, port = address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=self.server.upstream_timeout)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        headers["X-Forwarded-For"] = self.client_address[0]
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            self._error(502, f"predictor pod of revision {revision} at {address} did not answer: {err}")
            return None
        try:
            kept = self._relay(resp, revision, capture)
        finally:
            conn.close()
        return (kept, resp.getheader("Content-Type") or "application/json") if kept is not None else None

    def _relay(self, resp: http.client.HTTPResponse, revision: str, capture: bool = False) -> bytes | None:
        """Stream the answer back; with `capture`, also keep it (up to CAPTURE_MAX) for the payload logger."""
        self.send_response_only(resp.status, resp.reason)
        length = resp.getheader("Content-Length")
        for name, value in resp.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header(REVISION_HEADER, revision)
        chunked = length is None and self.command != "HEAD" and resp.status not in (204, 304)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif length is not None:
            self.send_header("Content-Length", length)
        self.end_headers()
        if self.command == "HEAD":
            return None
        kept: list[bytes] | None = [] if capture else None
        size = 0
        while chunk := resp.read1(CHUNK):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if kept is not None and size < CAPTURE_MAX:
                kept.append(chunk)
                size += len(chunk)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        return b"".join(kept) if kept is not None else None

    # ---- the gateway's own answers ----------------------------------------------------

    def _own(self, path: str) -> None:
        if path == "/_localkserve/healthz":
            self._json(200, {"status": "ok"})
        elif path == "/_localkserve/routes":
            self._json(200, [r.to_json() for r in self.server.table.routes()])
        else:
            self._error(404, f"unknown gateway path {path}")

    def _error(self, code: int, message: str) -> None:
        self._json(code, {"error": message})

    def _json(self, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
