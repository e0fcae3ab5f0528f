"""Certificates for the local control plane, made with the openssl command line.

openssl rather than a Python crypto library keeps the package stdlib-only; every
Debian-based machine has it. All keys are RSA 2048: fast to generate and what the
service-account token signer expects.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

OPENSSL = os.environ.get("SLIPWAY_OPENSSL", "openssl")

# Ten years: a dev cluster's certificates should never be the reason it stops working.
VALID_DAYS = 3650
# Reissue a CA that expires within a day rather than start a cluster that breaks mid-run.
RENEW_WITHIN_SECONDS = 24 * 3600

# The names the apiserver is reached by: loopback for us, the in-cluster names and the
# first address of --service-cluster-ip-range for anything that talks to it from "inside".
APISERVER_SANS = (
    "IP:127.0.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
    "IP:10.96.0.1",
)


class PKIError(RuntimeError):
    pass


@dataclass(frozen=True)
class ClientIdentity:
    """A user the apiserver knows by its client certificate: CN is the user, O the groups."""

    name: str
    groups: tuple[str, ...] = field(default_factory=tuple)

    @property
    def subject(self) -> str:
        parts = [f"/O={_escape(g)}" for g in self.groups]
        parts.append(f"/CN={_escape(self.name)}")
        return "".join(parts)


# Users the control plane itself needs; the default RBAC bootstrap policy already binds
# system:kube-controller-manager and system:kube-scheduler to their roles, and
# system:masters is the cluster-admin group.
ADMIN = ClientIdentity("slipway-admin", ("system:masters",))
CONTROLLER_MANAGER_USER = ClientIdentity("system:kube-controller-manager")
SCHEDULER_USER = ClientIdentity("system:kube-scheduler")
# The apiserver's aggregator presents this towards extension apiservers; it is the only
# name allowed to assert identities through request headers (--requestheader-allowed-names).
FRONT_PROXY_CLIENT = ClientIdentity("front-proxy-client")


def _escape(value: str) -> str:
    # openssl's -subj syntax treats '/' and '=' as separators.
    return value.replace("\\", "\\\\").replace("/", "\\/").replace("=", "\\=")


def _run(*args: str) -> None:
    proc = subprocess.run([OPENSSL, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise PKIError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")


def _still_valid(cert: Path) -> bool:
    if not cert.exists():
        return False
    proc = subprocess.run(
        [OPENSSL, "x509", "-noout", "-checkend", str(RENEW_WITHIN_SECONDS), "-in", str(cert)],
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode == 0


@dataclass(frozen=True)
class CA:
    cert: Path
    key: Path
    common_name: str


class PKI:
    """The certificate directory of one cluster. Existing material is reused, so a warm
    start costs two `openssl x509 -checkend` calls instead of key generation.

    Two CAs, as kubeadm lays them out: the cluster CA signs the apiserver's serving cert and
    every client cert; the front proxy CA only signs the aggregator's client cert, so no
    ordinary client certificate can assert identities through request headers. Having the
    front proxy CA also fills the requestheader part of the extension-apiserver-authentication
    ConfigMap, without which the controller-manager and scheduler log errors every few seconds.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = CA(directory / "ca.crt", directory / "ca.key", "slipway-local-ca")
        self.front_proxy_ca = CA(
            directory / "front-proxy-ca.crt", directory / "front-proxy-ca.key", "slipway-local-front-proxy-ca"
        )
        self.apiserver_cert = directory / "apiserver.crt"
        self.apiserver_key = directory / "apiserver.key"
        self.sa_key = directory / "sa.key"
        self.sa_pub = directory / "sa.pub"

    @property
    def ca_cert(self) -> Path:
        return self.ca.cert

    def client_cert(self, who: ClientIdentity) -> tuple[Path, Path]:
        """Paths of a client certificate and key (file names from the user name)."""
        stem = who.name.replace(":", "-").replace("/", "-")
        return self.dir / f"client-{stem}.crt", self.dir / f"client-{stem}.key"

    def ensure(self) -> bool:
        """Create whatever is missing or about to expire. Returns True if anything was made."""
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        made = self._ensure_ca(self.ca) | self._ensure_ca(self.front_proxy_ca)
        if not (self.sa_key.exists() and self.sa_pub.exists()):
            _run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(self.sa_key))
            os.chmod(self.sa_key, 0o600)
            _run("pkey", "-in", str(self.sa_key), "-pubout", "-out", str(self.sa_pub))
            made = True
        if not (self.apiserver_cert.exists() and self.apiserver_key.exists()):
            self._issue(self.ca, self.apiserver_cert, self.apiserver_key, "/CN=kube-apiserver", sans=APISERVER_SANS)
            made = True
        for who in (ADMIN, CONTROLLER_MANAGER_USER, SCHEDULER_USER):
            made |= self.ensure_client(who)
        made |= self.ensure_client(FRONT_PROXY_CLIENT, self.front_proxy_ca)
        return made

    def ensure_client(self, who: ClientIdentity, ca: CA | None = None) -> bool:
        """Issue a client certificate for `who` (by the cluster CA unless `ca` is given)
        unless one exists. Returns True if one was issued."""
        cert, key = self.client_cert(who)
        if cert.exists() and key.exists():
            return False
        self._issue(ca or self.ca, cert, key, who.subject)
        return True

    def server_cert(self, name: str, sans: Sequence[str]) -> tuple[Path, Path]:
        """A serving certificate from the cluster CA for `sans` (e.g. "IP:127.0.0.1"), such as
        a webhook's, which the apiserver verifies against the CA in the webhook's caBundle.
        Reissued when the names change."""
        cert, key = self.dir / f"server-{name}.crt", self.dir / f"server-{name}.key"
        names = self.dir / f"server-{name}.sans"
        wanted = ",".join(sans)
        if not (cert.exists() and key.exists() and names.exists() and names.read_text() == wanted):
            self._issue(self.ca, cert, key, f"/CN={_escape(name)}", sans=sans)
            names.write_text(wanted)
        return cert, key

    def _ensure_ca(self, ca: CA) -> bool:
        # Only CAs are checked for expiry: every leaf is issued after its CA with the same
        # validity, so it cannot expire first. Replacing a CA deletes the leaves it signed
        # (all *.crt other than the other CA), which are then reissued.
        if _still_valid(ca.cert) and ca.key.exists():
            return False
        keep = {self.ca.cert, self.front_proxy_ca.cert} - {ca.cert}
        for old in self.dir.glob("*.crt"):
            if old not in keep:
                old.unlink()
        args = ["req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-days", str(VALID_DAYS)]
        args += ["-keyout", str(ca.key), "-out", str(ca.cert), "-subj", f"/CN={ca.common_name}"]
        args += ["-addext", "basicConstraints=critical,CA:TRUE"]
        args += ["-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"]
        _run(*args)
        os.chmod(ca.key, 0o600)
        return True

    def _issue(self, ca: CA, cert: Path, key: Path, subject: str, *, sans: Sequence[str] = ()) -> None:
        """A client certificate, or with `sans` a serving certificate for those names."""
        usage = "serverAuth" if sans else "clientAuth"
        ext = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={usage}",
        ]
        if sans:
            ext.append("subjectAltName=" + ",".join(sans))
        with tempfile.TemporaryDirectory() as tmp:
            csr = Path(tmp) / "req.csr"
            extfile = Path(tmp) / "ext.cnf"
            extfile.write_text("\n".join(ext) + "\n")
            csr_args = ["req", "-new", "-nodes", "-newkey", "rsa:2048", "-subj", subject]
            _run(*csr_args, "-keyout", str(key), "-out", str(csr))
            os.chmod(key, 0o600)
            args = ["x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key)]
            args += ["-days", str(VALID_DAYS), "-extfile", str(extfile), "-out", str(cert)]
            # Random serials: no serial file to keep, and reissued certs never collide.
            args += ["-set_serial", "0x" + secrets.token_hex(16)]
            _run(*args)
