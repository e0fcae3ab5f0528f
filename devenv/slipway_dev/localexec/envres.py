"""A container's environment, resolved the way the kubelet does it, and `$(VAR)` expansion.

Pure apart from the `Sources` it is given (Secrets and ConfigMaps come from the API in the
executor, from dicts in the unit tests). Error messages copy the kubelet's, because they end
up in the container's waiting message where the operator and people read them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

Obj = dict[str, Any]
HOST_IP = "127.0.0.1"  # every node of the local cluster is this machine

# What the kubelet accepts as an env var name coming from envFrom (C_IDENTIFIER-ish, plus
# dots and dashes since 1.26); other keys are skipped, as the kubelet does.
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_FIELD_LABEL = re.compile(r"""^metadata\.(labels|annotations)\[['"](.+)['"]\]$""")


class ConfigError(Exception):
    """The container cannot be created: the kubelet's CreateContainerConfigError."""


class Sources(Protocol):
    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        """The Secret's decoded data, or None when it does not exist."""
        ...

    def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        """The ConfigMap's data (and binaryData, decoded), or None when it does not exist."""
        ...


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes `$(VAR)` expansion (k8s.io/kubernetes/third_party/forked/golang/expansion):
    `$(NAME)` becomes the value of NAME when it is defined and stays as written when not;
    `$$` is an escaped `$`, so `$$(NAME)` gives a literal `$(NAME)`; any other `$` is kept."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "$" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:  # unterminated: kept as written
                out.append("$(")
                i += 2
                continue
            name = text[i + 2 : close]
            value = lookup(name)
            out.append(value if value is not None else f"$({name})")
            i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def resolve_env(
    pod: Obj,
    container: Obj,
    sources: Sources,
    pod_ip: str,
    adjust: Callable[[str, str], str] | None = None,
) -> dict[str, str]:
    """envFrom, then env in order, as the kubelet builds them (later entries win; `value`
    is expanded against what was defined before it). `adjust(name, value)` rewrites each
    value as it is defined, so later expansions see the rewritten one."""
    namespace = pod["metadata"].get("namespace", "default")
    env: dict[str, str] = {}

    def define(name: str, value: str) -> None:
        env[name] = adjust(name, value) if adjust is not None else value

    for source in container.get("envFrom") or []:
        for name, value in _env_from(namespace, source, sources).items():
            define(name, value)
    for var in container.get("env") or []:
        if var.get("valueFrom"):
            found = _value_from(pod, container, var["valueFrom"], sources, pod_ip)
            if found is None:  # an optional reference that is absent: the var is not set
                continue
            define(var["name"], found)
        else:
            define(var["name"], expand(var.get("value") or "", env.get))
    return env


def _env_from(namespace: str, source: Obj, sources: Sources) -> dict[str, str]:
    prefix = source.get("prefix") or ""
    if "secretRef" in source:
        ref, kind = source["secretRef"], "secret"
        data = sources.secret(namespace, ref["name"])
    elif "configMapRef" in source:
        ref, kind = source["configMapRef"], "configmap"
        data = sources.config_map(namespace, ref["name"])
    else:
        return {}
    if data is None:
        if ref.get("optional"):
            return {}
        raise ConfigError(f'{kind} "{ref["name"]}" not found')
    return {prefix + k: v for k, v in data.items() if _ENV_NAME.match(prefix + k)}


def _value_from(pod: Obj, container: Obj, value_from: Obj, sources: Sources, pod_ip: str) -> str | None:
    namespace = pod["metadata"].get("namespace", "default")
    if "secretKeyRef" in value_from:
        ref = value_from["secretKeyRef"]
        return _key_ref(namespace, ref, "secret", "Secret", sources.secret(namespace, ref["name"]))
    if "configMapKeyRef" in value_from:
        ref = value_from["configMapKeyRef"]
        return _key_ref(namespace, ref, "configmap", "ConfigMap", sources.config_map(namespace, ref["name"]))
    if "fieldRef" in value_from:
        return field_value(pod, value_from["fieldRef"]["fieldPath"], pod_ip)
    if "resourceFieldRef" in value_from:
        # Limits and requests in the container's units need quantity arithmetic; nothing
        # slipway runs asks for it, so it is refused rather than answered wrongly.
        raise ConfigError(f"resourceFieldRef ({container['name']}) is not supported by the local executor")
    raise ConfigError(f"unsupported valueFrom: {sorted(value_from)}")


def _key_ref(namespace: str, ref: Obj, kind: str, kind_title: str, data: Mapping[str, str] | None) -> str | None:
    optional = bool(ref.get("optional"))
    if data is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{ref["name"]}" not found')
    key = ref["key"]
    if key not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {kind_title} {namespace}/{ref['name']}")
    return data[key]


def field_value(pod: Obj, path: str, pod_ip: str, host_ip: str = HOST_IP) -> str:
    """The downward API's fieldRef paths the kubelet supports for env vars."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", "default"),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
    }
    if path in simple:
        return str(simple[path])
    m = _FIELD_LABEL.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    raise ConfigError(f"unsupported fieldPath: {path}")
