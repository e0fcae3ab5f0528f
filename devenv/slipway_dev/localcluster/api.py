"""A minimal Kubernetes API client over the stdlib, for the start-up path.

Polling and applying through urllib costs milliseconds where a `kubectl` call costs a
process start and API discovery, which matters for a warm start that should take seconds.
kubectl is still used where its YAML handling is needed (CRD files).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


class Api:
    def __init__(self, base_url: str, ssl_context: ssl.SSLContext | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.ssl_context = ssl_context

    @classmethod
    def insecure(cls, base_url: str) -> Api:
        """For /healthz of components serving a self-signed certificate (controller-manager,
        scheduler): we only ask whether it answers, nothing secret crosses."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return cls(base_url, ctx)

    @classmethod
    def with_client_cert(cls, base_url: str, ca_cert: Path, client_cert: Path, client_key: Path) -> Api:
        ctx = ssl.create_default_context(cafile=str(ca_cert))
        ctx.load_cert_chain(str(client_cert), str(client_key))
        return cls(base_url, ctx)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float = 5.0,
    ) -> tuple[int, bytes]:
        """(HTTP status, body); status 0 when nothing answered (refused, reset, timeout)."""
        req = urllib.request.Request(self.base_url + path, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        return self.request("GET", path, timeout=timeout)

    def get_json(self, path: str, timeout: float = 5.0) -> Any | None:
        status, body = self.get(path, timeout)
        if status != 200:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None

    def delete(self, path: str) -> bool:
        """DELETE; True if deleted or already absent."""
        return self.request("DELETE", path)[0] in (200, 202, 404)

    def apply(self, path: str, obj: dict[str, Any], field_manager: str) -> None:
        """Server-side apply of one object at its resource path (force: we own these
        objects, a conflict only means someone edited them by hand)."""
        query = urllib.parse.urlencode({"fieldManager": field_manager, "force": "true"})
        # JSON is YAML, so it can go out as an apply patch as is.
        status, body = self.request(
            "PATCH", f"{path}?{query}", json.dumps(obj).encode(), "application/apply-patch+yaml", timeout=30.0
        )
        if status not in (200, 201):
            raise ApiError(f"apply {path}: HTTP {status}: {body.decode(errors='replace')[:500]}")


class ApiError(RuntimeError):
    pass
