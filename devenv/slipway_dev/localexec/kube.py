"""A small Kubernetes API client over the stdlib: kubeconfig, JSON requests, watch streams.

The executor needs a handful of calls (list/watch pods, read Secrets/ConfigMaps/Services,
patch pod status, delete pods, post events); the stdlib keeps it runnable by any Python the
cluster is started with, whatever that Python has installed.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


class Unavailable(ApiError):
    """Nothing answered (refused, reset, timed out): the API is away, try again later."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


class Api:
    def __init__(self, server: str, context: ssl.SSLContext | None, token: str | None = None) -> None:
        self.server = server.rstrip("/")
        self.context = context
        self.token = token

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Api:
        config = yaml.safe_load(path.read_text())
        current = config.get("current-context")
        context = _named(config, "contexts", current)
        cluster = _named(config, "clusters", context["cluster"])
        user = _named(config, "users", context.get("user", "")) if context.get("user") else {}
        server = cluster["server"]
        ssl_context = None
        if server.startswith("https://"):
            ssl_context = _ssl_context(config_dir=path.parent, cluster=cluster, user=user)
        return cls(server, ssl_context, user.get("token"))

    def _request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        return req

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        """The JSON answer; ApiError for an HTTP error, Unavailable when nothing answered."""
        req = self._request(method, path, body, content_type)
        try:
            with urllib.request.urlopen(req, timeout=15, context=self.context) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raise ApiError(err.code, _status_message(err.read())) from None
        except (urllib.error.URLError, OSError) as err:
            raise Unavailable(f"{method} {path}: {err}") from None
        return json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        """GET; None when the object does not exist."""
        try:
            return self.call("GET", path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def watch(self, path: str, params: Mapping[str, str], timeout: float) -> Iterator[Obj]:
        """The events of a watch, one dict per line, until the server ends it. A read
        timeout (nothing, not even a bookmark, for `timeout` seconds) raises Unavailable."""
        query = urllib.parse.urlencode({**params, "watch": "true"})
        req = self._request("GET", f"{path}?{query}")
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.context) as resp:
                for line in resp:
                    if line.strip():
                        yield json.loads(line)
        except urllib.error.HTTPError as err:
            raise ApiError(err.code, _status_message(err.read())) from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise Unavailable(f"watch {path}: {err}") from None


def _named(config: Obj, section: str, name: str) -> Obj:
    for item in config.get(section) or []:
        if item.get("name") == name:
            key = section[:-1]  # clusters -> cluster, ...
            return dict(item.get(key) or {})
    raise ValueError(f"kubeconfig has no {section[:-1]} named {name!r}")


def _ssl_context(config_dir: Path, cluster: Obj, user: Obj) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        ctx.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    elif cluster.get("certificate-authority"):
        ctx.load_verify_locations(cafile=str(config_dir / cluster["certificate-authority"]))
    cert = _pem(config_dir, user, "client-certificate")
    key = _pem(config_dir, user, "client-key")
    if cert and key:
        # ssl loads a client certificate only from files: the embedded ones go through a
        # private temporary directory that is gone once they are loaded.
        with tempfile.TemporaryDirectory(prefix="localexec-") as tmp:
            cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            for p, content in ((cert_path, cert), (key_path, key)):
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(content)
            ctx.load_cert_chain(str(cert_path), str(key_path))
    return ctx


def _pem(config_dir: Path, user: Obj, field: str) -> bytes | None:
    if user.get(f"{field}-data"):
        return base64.b64decode(str(user[f"{field}-data"]))
    if user.get(field):
        return (config_dir / str(user[field])).read_bytes()
    return None


def _status_message(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("message") or raw.decode(errors="replace"))
    except ValueError:
        return raw.decode(errors="replace")[:300]
