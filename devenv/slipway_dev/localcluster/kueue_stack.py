"""Starting Kueue v0.17.0's manager on a running local control plane (issue 16).

The objects come from kueue.py's pure builders over Kueue's rendered `config/default`; this
module applies them, starts the manager in a network namespace of its own (its webhook,
health and metrics servers bind the address it is given there), and waits until Kueue can
admit: its /readyz (which waits for the webhook server, Q/cmd/kueue/main.go:541-549) and its
webhooks called by the apiserver.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from . import kubeconfig, kueue
from .layout import StateDir
from .procs import ProcessSpec, with_bind_mounts
from .serving import Obj, answers, apply_objects, load_all, service_account

MANAGER_USER = service_account(kueue.NAMESPACE, kueue.ACCOUNT)


class KueueStack:
    """Starts Kueue on a running control plane (called by Cluster.up)."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster  # a localcluster.Cluster (not imported: it imports us)
        self.state: StateDir = cluster.state
        self.home = self.state.kueue

    def binary(self) -> Path:
        path = Path(self.cluster.bin_dir) / kueue.PROCESS
        if not os.access(path, os.X_OK):
            raise kueue.KueueError(f"{path} is missing: run hack/build-kueue.sh")
        return path

    def start(self, deadline: float) -> None:
        binary = self.binary()
        self.home.mkdir(parents=True, exist_ok=True)
        rendered = self._render()
        address = self.cluster.sysnet.address(kueue.PROCESS)
        base_url = f"https://{address}:{kueue.WEBHOOK_PORT}"
        ca = self.cluster.pki.ca_cert.read_bytes()
        if self.cluster.procs.pid(kueue.PROCESS) is None:
            crds = self.home / "crds.yaml"
            crds.write_text(yaml.safe_dump_all(kueue.crds(rendered, base_url, ca), sort_keys=False))
            self.cluster.install_crds([crds])
            self._apply(kueue.base_objects(rendered), "Kueue's namespace and RBAC")
            self._start_manager(binary, rendered)
        probe = f"http://{address}:{kueue.HEALTH_PORT}/readyz"
        self.cluster._wait("Kueue's manager /readyz", answers(probe), deadline, [kueue.PROCESS])
        # After the manager is up: with failurePolicy Fail, webhooks registered earlier would
        # refuse every managed pod until it answers.
        self._apply(kueue.webhooks(rendered, base_url, ca), "Kueue's webhooks")

    def _render(self) -> list[Obj]:
        src = kueue.default_dir(kueue.source_dir())
        return load_all(self.cluster.kubectl("kustomize", str(src), timeout=300).stdout)

    def _start_manager(self, binary: Path, rendered: Sequence[Obj]) -> None:
        address = self.cluster.sysnet.prepare(kueue.PROCESS, kueue.PORTS)
        certs = self.home / "serving-certs"
        certs.mkdir(parents=True, exist_ok=True)
        cert, key = self.cluster.pki.server_cert("kueue-webhook", [f"IP:{address}"])
        (certs / "tls.crt").write_bytes(cert.read_bytes())
        (certs / "tls.key").write_bytes(key.read_bytes())
        config = self.home / "controller_manager_config.yaml"
        config.write_text(yaml.safe_dump(kueue.manager_config(rendered, address, certs), sort_keys=False))
        # The fixed metrics-certificate path gets the same serving certificate; only an empty
        # mount point is left on the host.
        kueue.METRICS_CERT_DIR.mkdir(parents=True, exist_ok=True)
        argv = with_bind_mounts([(certs, kueue.METRICS_CERT_DIR)], kueue.argv(binary, config))
        client = kubeconfig.for_identity(self.cluster.pki, self.cluster.server, MANAGER_USER,
                                         self.home / "kubeconfig")  # fmt: skip
        spec = ProcessSpec(kueue.PROCESS, self.cluster.sysnet.wrap(kueue.PROCESS, argv), kueue.env(self.home, client))
        self.cluster._start(spec)

    def _apply(self, objects: Sequence[Obj], what: str) -> None:
        apply_objects(self.cluster, objects, what)
