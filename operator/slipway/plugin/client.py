"""The plugin's only way to the cluster: the user's own `kubectl`, as a subprocess.

Why kubectl and not kubernetes_asyncio: a kubectl plugin runs where kubectl already works, and going
through it means every way of authenticating kubectl supports (exec credential plugins such as
`gke-gcloud-auth-plugin` or `aws eks get-token`, OIDC, client certificates, proxies, `KUBECONFIG` with
several files, `--context`) works here identically, with nothing to re-implement and no client library to
keep in step with it. It also keeps the plugin's start-up cheap: no kopf, no aiohttp, no event loop. The cost
is a process per call, which at one call a second (`--watch`) is nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from slipway import contract

# Fully qualified, because Argo Rollouts also has a kind called Rollout (`rollouts.argoproj.io`).
RESOURCES = {
    "rollout": "rollouts.slipway.dev",
    "trainingjob": "trainingjobs.slipway.dev",
    "driftmonitor": "driftmonitors.slipway.dev",
}
RECORDS = "canaryanalyses.slipway.dev"
TIMEOUT = 30.0


class ClientError(Exception):
    """A failure to show in one line: the object is missing, the cluster is unreachable, kubectl is absent."""


class NotFound(ClientError):
    pass


@dataclass(frozen=True)
class Client:
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None  # None: the context's namespace, as kubectl decides

    def argv(self, *args: str) -> list[str]:
        kubectl = os.environ.get("SLIPWAY_KUBECTL") or shutil.which("kubectl")
        if not kubectl:
            raise ClientError("kubectl is not on PATH (set SLIPWAY_KUBECTL to its path)")
        flags = [f"--kubeconfig={self.kubeconfig}"] if self.kubeconfig else []
        flags += [f"--context={self.context}"] if self.context else []
        flags += [f"--namespace={self.namespace}"] if self.namespace else []
        return [kubectl, *flags, *args]

    def run(self, *args: str) -> str:
        try:
            proc = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired as e:
            raise ClientError(f"kubectl {args[0]} timed out after {TIMEOUT:.0f}s: is the cluster reachable?") from e
        except OSError as e:
            raise ClientError(f"cannot run kubectl: {e}") from e
        if proc.returncode != 0:
            raise error_from(proc.stderr)
        return proc.stdout

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return json_of(self.run("get", RESOURCES[kind], name, "-o", "json"))

    def pods(self, selector: str) -> list[dict[str, Any]]:
        items = json_of(self.run("get", "pods", "-l", selector, "-o", "json")).get("items") or []
        return [i for i in items if isinstance(i, dict)]

    def records(self, rollout: str) -> list[dict[str, Any]]:
        """A Rollout's canary records (CanaryAnalysis), or none where the cluster has no such resource yet (an
        operator older than them: its status still holds the latest decisions)."""
        selector = f"{contract.ROLLOUT}={rollout}"
        try:
            text = self.run("get", RECORDS, "-l", selector, "-o", "json")
        except ClientError as e:
            if "the server doesn't have a resource type" in str(e):
                return []
            raise
        return [i for i in json_of(text).get("items") or [] if isinstance(i, dict)]

    def annotate(self, kind: str, name: str, key: str, value: str) -> None:
        self.run("annotate", RESOURCES[kind], name, f"{key}={value}", "--overwrite")


def json_of(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ClientError(f"kubectl returned something that is not JSON: {text[:80]!r}") from e
    if not isinstance(doc, dict):
        raise ClientError("kubectl returned JSON that is not an object")
    return doc


def error_from(stderr: str) -> ClientError:
    """kubectl's last meaningful line, without its 'error:' or 'Error from server (X):' prefix."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else "kubectl failed without a message"
    for prefix in ("error: ", "Error: "):
        last = last.removeprefix(prefix)
    if "(NotFound)" in last:
        return NotFound(last.split("): ", 1)[-1])
    if last.startswith("Error from server"):
        last = last.split("): ", 1)[-1]
    return ClientError(last)
