"""kubectl in one namespace: the one wrapper the demo, the tests and the benchmarks use.

It runs through a cluster's own `kubectl` (localcluster.Cluster.kubectl: the binary built for it, its admin
kubeconfig), or, with `runner`, the kubectl on a bin directory and a kubeconfig (the demo against a cluster
another process started).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml
from slipway.plugin import text


class Runner(Protocol):
    """kubectl with these arguments; raises (a RuntimeError) on failure when `check`."""

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...


def runner(kubeconfig: str | Path, bin_dir: str | Path | None = None, timeout: float = 120.0) -> Runner:
    """The kubectl of `bin_dir` (else PATH's) against `kubeconfig`."""
    path = os.pathsep.join(p for p in (str(bin_dir) if bin_dir else "", os.environ.get("PATH", "")) if p)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PATH": path}

    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)  # fmt: skip
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    return run


class Kubectl:
    def __init__(
        self, run: Runner | Callable[..., subprocess.CompletedProcess[str]], namespace: str, cluster: Any = None
    ) -> None:
        # `cluster`: the local cluster it runs against, when it is one (for its URLs: ingress, Prometheus).
        self.run, self.namespace, self.cluster = run, namespace, cluster

    @classmethod
    def of(cls, cluster: Any, namespace: str) -> Kubectl:
        """kubectl in `namespace` of a local cluster (localcluster.Cluster), as its admin."""
        return cls(cluster.kubectl, namespace, cluster)

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("-n", self.namespace, *args, input=input, check=check)

    def out(self, *args: str, input: str | None = None) -> str:
        """stdout of a command that must succeed."""
        return self(*args, input=input).stdout

    def json(self, *args: str) -> Any:
        """`kubectl get ARGS -o json`, parsed."""
        return json.loads(self.out("get", *args, "-o", "json"))

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """One object, or None when it does not exist."""
        proc = self("get", kind, name, "-o", "json", "--ignore-not-found")
        found: dict[str, Any] | None = json.loads(proc.stdout) if proc.stdout.strip() else None
        return found

    def apply(
        self, manifest: str | Path | Sequence[dict[str, Any]], check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """A file, YAML text, or documents."""
        if isinstance(manifest, Path):
            return self("apply", "-f", str(manifest), check=check)
        text = manifest if isinstance(manifest, str) else yaml.safe_dump_all(list(manifest))
        return self("apply", "-f", "-", input=text, check=check)

    def condition(self, kind: str, name: str, type_: str) -> dict[str, Any]:
        """A condition of an object's status ({} when it has none of that type)."""
        return condition(self.get(kind, name), type_)


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    """A condition of an object's status ({} when it has none of that type), as the plugin reads it."""
    return dict(text.condition(obj or {}, type_))
