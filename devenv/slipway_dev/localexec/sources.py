"""What the executor reads from the API besides pods, and the Events it writes."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from slipway_dev.kube import Api, ApiError

from . import envres, status

Obj = dict[str, Any]


class ApiSources:
    """Secrets, ConfigMaps and Services read from the API for env resolution and DNS."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._selectors: dict[tuple[str, str], Mapping[str, str] | None] = {}

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        obj = self._get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        if obj is None:
            return None
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()}

    def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        obj = self._get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        if obj is None:
            return None
        binary = {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("binaryData") or {}).items()}
        return {**binary, **(obj.get("data") or {})}

    def service_selector(self, namespace: str, name: str) -> Mapping[str, str] | None:
        key = (namespace, name)
        if key not in self._selectors:  # asked once per container start (see _start)
            svc = self._get(f"/api/v1/namespaces/{namespace}/services/{name}")
            self._selectors[key] = ((svc or {}).get("spec") or {}).get("selector") if svc else None
        return self._selectors[key]

    def _get(self, path: str) -> Obj | None:
        try:
            obj: Obj | None = self.api.read(path)
        except ApiError as err:  # the kubelet reports these as the container's config error too
            raise envres.ConfigError(str(err)) from None
        return obj


def event(pod: Obj, container: str, kind: str, reason: str, message: str, component: str) -> Obj:
    """A core/v1 Event about a pod's container, as the kubelet records them."""
    meta = pod["metadata"]
    ns, now = meta.get("namespace", "default"), status.now()
    node = pod["spec"].get("nodeName", "")
    return {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": ns},
        "involvedObject": {
            "kind": "Pod",
            "apiVersion": "v1",
            "namespace": ns,
            "name": meta["name"],
            "uid": meta["uid"],
            "fieldPath": f"spec.containers{{{container}}}",
        },
        "type": kind,
        "reason": reason,
        "message": message,
        "source": {"component": component, "host": node},
        "reportingComponent": component,
        "reportingInstance": node,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
