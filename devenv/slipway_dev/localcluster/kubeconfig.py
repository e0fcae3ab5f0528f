"""kubeconfig files with the certificates embedded (base64 data, not paths), so a copy of
the file keeps working wherever it is moved, and the state dir can be relocated."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pki import PKI, ClientIdentity

CONTEXT = "slipway-local"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def render(server: str, ca_cert: Path, client_cert: Path, client_key: Path, *, user: str) -> str:
    """A one-cluster, one-user kubeconfig as YAML text.

    Every value is either a fixed name, a URL or base64, so JSON-quoting the scalars gives
    valid YAML without needing a YAML library.
    """
    q = json.dumps
    return "\n".join(
        [
            "apiVersion: v1",
            "kind: Config",
            "clusters:",
            f"- name: {q(CONTEXT)}",
            "  cluster:",
            f"    server: {q(server)}",
            f"    certificate-authority-data: {_b64(ca_cert)}",
            "users:",
            f"- name: {q(user)}",
            "  user:",
            f"    client-certificate-data: {_b64(client_cert)}",
            f"    client-key-data: {_b64(client_key)}",
            "contexts:",
            f"- name: {q(CONTEXT)}",
            "  context:",
            f"    cluster: {q(CONTEXT)}",
            f"    user: {q(user)}",
            f"current-context: {q(CONTEXT)}",
            "preferences: {}",
            "",
        ]
    )


def write(path: Path, server: str, ca_cert: Path, client_cert: Path, client_key: Path, *, user: str) -> Path:
    """Write atomically (a reader never sees half a file) and private (it holds a key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(render(server, ca_cert, client_cert, client_key, user=user))
    os.replace(tmp, path)
    return path


def for_identity(pki: PKI, server: str, who: ClientIdentity, path: Path) -> Path:
    """A kubeconfig for `who`, with a client certificate from the cluster's CA (issued once)."""
    pki.ensure_client(who)
    cert, key = pki.client_cert(who)
    return write(path, server, pki.ca_cert, cert, key, user=who.name)
