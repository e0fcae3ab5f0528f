"""Prometheus file-based service discovery of the predictor pods of the Serverless
InferenceServices the gateway serves (Standard mode's pods are KServe's; the cluster's
Prometheus finds those through the apiserver).

One target per ready predictor pod: its metrics endpoint is its HTTP port (the KServe
model server serves /metrics there), at the pod's IP (the local executor gives each pod a
loopback IP of its own). Labels
say which pod it is, so queries can tell stable from canary:
`namespace`, `pod`, `inferenceservice`, `revision`. Prometheus notices a rewritten file by
itself (inotify), so the file is replaced atomically and only when its content changes.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import manifests, routing

Obj = dict[str, Any]


def targets(pods: Iterable[Obj]) -> list[Obj]:
    out = []
    for pod in pods:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        address = routing.endpoint(pod)
        if address is None or not labels.get(manifests.ISVC_LABEL):
            continue
        out.append(
            {
                "targets": [address],
                "labels": {
                    "namespace": meta.get("namespace", "default"),
                    "pod": meta["name"],
                    "inferenceservice": labels[manifests.ISVC_LABEL],
                    "revision": labels.get(manifests.REVISION_LABEL, ""),
                },
            }
        )
    return sorted(out, key=lambda t: (t["labels"]["namespace"], t["labels"]["pod"]))


def render(groups: list[Obj]) -> str:
    return json.dumps(groups, indent=2, sort_keys=True) + "\n"


def write(path: Path, content: str) -> None:
    """Replace the file atomically: Prometheus must never read half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
