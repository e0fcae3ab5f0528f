"""The one Kubernetes API client of the dev environment: stdlib HTTP, keep-alive connections.

The local cluster's start-up path polls and applies through it (milliseconds, where a `kubectl` call costs a
process start and API discovery), the local executor lists, watches and patches pods with it, and the fuzz
test and the benches send thousands of requests through it. `slipway_dev.kubectl` stays the one wrapper of
kubectl, for what needs kubectl's YAML handling (CRD files, manifests).

Only the stdlib (and yaml, to read a kubeconfig): the local executor runs on whatever Python the cluster is
started with. Each thread keeps one connection per client (http.client, keep-alive), so thousands of
requests cost one TLS handshake per thread rather than one each; a connection the server dropped while idle is
reconnected once.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]


class ApiError(Exception):
    """The API refused a request (`status`, its Status `message`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status, self.message = status, message


class Unavailable(ApiError):
    """Nothing answered (refused, reset, timed out): the API is away, try again later."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


class Api:
    def __init__(self, server: str, context: ssl.SSLContext | None = None, token: str | None = None) -> None:
        url = urllib.parse.urlsplit(server)
        self.server, self.context, self.token = server.rstrip("/"), context, token
        self._https = url.scheme == "https"
        self._host, self._port = url.hostname or "127.0.0.1", url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")  # a server URL may carry a path (an API behind a proxy)
        self._local = threading.local()  # .conn: this thread's keep-alive connection

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Api:
        """The kubeconfig's current context: its server, CA, client certificate or token."""
        config = yaml.safe_load(path.read_text())
        context = _named(config, "contexts", config.get("current-context"))
        cluster = _named(config, "clusters", context["cluster"])
        user = _named(config, "users", context["user"]) if context.get("user") else {}
        server = cluster["server"]
        ssl_context = _kubeconfig_tls(path.parent, cluster, user) if server.startswith("https://") else None
        return cls(server, ssl_context, user.get("token"))

    @classmethod
    def with_client_cert(cls, server: str, ca_cert: Path, client_cert: Path, client_key: Path) -> Api:
        ctx = _verifying(cafile=ca_cert)
        ctx.load_cert_chain(str(client_cert), str(client_key))
        return cls(server, ctx)

    @classmethod
    def insecure(cls, server: str) -> Api:
        """For /healthz of components serving a self-signed certificate (controller-manager, scheduler): we
        only ask whether it answers, nothing secret crosses."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return cls(server, ctx)

    # ---- plain HTTP: never raises ------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None, timeout: float = 5.0
    ) -> tuple[int, bytes]:
        """(HTTP status, body); status 0 when nothing answered (refused, reset, timeout)."""
        try:
            return self._send(method, path, body, self._headers(content_type), timeout)
        except Unavailable:
            return 0, b""

    def ok(self, path: str, timeout: float = 5.0) -> bool:
        """GET answered 200: a readiness or health probe."""
        return self.request("GET", path, timeout=timeout)[0] == 200

    def get_json(self, path: str, timeout: float = 5.0) -> Any | None:
        """The JSON of a GET, None for anything else (absent, refused, away): for polls that try again."""
        try:
            return self.read(path, timeout)
        except (ApiError, ValueError):
            return None

    def delete(self, path: str) -> bool:
        """DELETE; True if deleted or already absent."""
        return self.request("DELETE", path)[0] in (200, 202, 404)

    # ---- the JSON API: raises ApiError, Unavailable when nothing answered ---------------------------------

    def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json", timeout: float = 15.0
    ) -> Any:
        """The JSON answer (None when empty); ApiError for an HTTP error, Unavailable when nothing answered."""
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = {**self._headers(content_type if data is not None else None), "Accept": "application/json"}
        status, raw = self._send(method, path, data, headers, timeout)
        if not 200 <= status < 300:
            raise ApiError(status, status_message(raw))
        return json.loads(raw) if raw else None

    def read(self, path: str, timeout: float = 15.0) -> Any:
        """GET; None when the object does not exist."""
        try:
            return self.call("GET", path, timeout=timeout)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def apply(self, path: str, obj: Obj, field_manager: str, *, strict: bool = False, timeout: float = 30.0) -> Any:
        """Server-side apply of one object at its resource path, as `kubectl apply --server-side --force-conflicts`
        (we own these objects: a conflict only means someone edited them by hand); `strict` refuses unknown
        fields as kubectl's `--validate=strict`. The object as applied."""
        params = {"fieldManager": field_manager, "force": "true", **({"fieldValidation": "Strict"} if strict else {})}
        query = urllib.parse.urlencode(params)
        # JSON is YAML, so the object goes out as an apply patch as is.
        return self.call("PATCH", f"{path}?{query}", obj, "application/apply-patch+yaml", timeout)

    def watch(self, path: str, params: Mapping[str, str], timeout: float) -> Iterator[Obj]:
        """The events of a watch, one dict per line, until the server ends it, on a connection of its own. A read
        timeout (nothing, not even a bookmark, for `timeout` seconds) raises Unavailable."""
        conn = self._connect(timeout)
        query = urllib.parse.urlencode({**params, "watch": "true"})
        try:
            conn.request("GET", f"{self._prefix}{path}?{query}", headers=self._headers(None))
            resp = conn.getresponse()
            if resp.status != 200:
                raise ApiError(resp.status, status_message(resp.read()))
            for line in resp:
                if line.strip():
                    yield json.loads(line)
        except (OSError, http.client.HTTPException, ValueError) as err:
            raise Unavailable(f"watch {path}: {err}") from None
        finally:
            conn.close()

    # ---- connections -------------------------------------------------------------------------------------

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Content-Type": content_type} if content_type else {}
        return headers | ({"Authorization": f"Bearer {self.token}"} if self.token else {})

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self.context)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _send(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str], timeout: float
    ) -> tuple[int, bytes]:
        """(status, body) over this thread's connection; Unavailable when nothing answered. A kept-alive
        connection the server closed meanwhile fails at once: that one is tried again on a new connection."""
        for retry in (True, False):
            conn = self._thread_conn(timeout)
            reused = conn.sock is not None
            try:
                conn.request(method, self._prefix + path, body, headers)
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException) as err:
                conn.close()  # a half-done exchange leaves it unusable
                if not (retry and reused and isinstance(err, ConnectionError | http.client.BadStatusLine)):
                    raise Unavailable(f"{method} {path}: {err}") from None
        raise AssertionError("unreachable")

    def _thread_conn(self, timeout: float) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect(timeout)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn


def status_message(raw: bytes) -> str:
    """The `message` of a Kubernetes Status body, else the body's text."""
    try:
        return str(json.loads(raw).get("message") or raw.decode(errors="replace"))
    except (ValueError, AttributeError):
        return raw.decode(errors="replace")[:1000]


def _named(config: Obj, section: str, name: str) -> Obj:
    for item in config.get(section) or []:
        if item.get("name") == name:
            key = section[:-1]  # clusters -> cluster, ...
            return dict(item.get(key) or {})
    raise ValueError(f"kubeconfig has no {section[:-1]} named {name!r}")


def _verifying(cafile: Path | None = None, cadata: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None, cadata=cadata)
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the CA given may be an intermediate
    return ctx


def _kubeconfig_tls(config_dir: Path, cluster: Obj, user: Obj) -> ssl.SSLContext:
    if cluster.get("insecure-skip-tls-verify"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        ctx = _verifying(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    elif cluster.get("certificate-authority"):
        ctx = _verifying(cafile=config_dir / cluster["certificate-authority"])
    else:
        ctx = _verifying()
    cert, key = _pem(config_dir, user, "client-certificate"), _pem(config_dir, user, "client-key")
    if cert and key:
        _load_client_cert(ctx, cert, key)
    return ctx


def _load_client_cert(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """ssl loads a client certificate only from files: embedded ones go through a private temporary directory
    that is gone once they are loaded."""
    with tempfile.TemporaryDirectory(prefix="slipway-kube-") as tmp:
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        for p, content in ((cert_path, cert), (key_path, key)):
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
        ctx.load_cert_chain(str(cert_path), str(key_path))


def _pem(config_dir: Path, user: Obj, field: str) -> bytes | None:
    if user.get(f"{field}-data"):
        return base64.b64decode(str(user[f"{field}-data"]))
    if user.get(field):
        return (config_dir / str(user[field])).read_bytes()
    return None
