"""Host ports for the ports pods declare: every pod here shares one loopback.

In a cluster each pod has its own IP, so two predictor pods (a stable and a canary) can both
listen on 8080. Here both are 127.0.0.1, so each pod that declares `containerPorts` gets its
own free host port per declared port, kept for the pod's life (restarts included). The
container is told the host port where it is told its port:

- an argument `--<name>port=<N>` or `--<name>port <N>` (`--http_port`, `--grpc-port`,
  `--port`: the flag's name ends in `port`, any case, `_`/`-`) whose value is a declared port;
- an env var named `PORT` or `<anything>_PORT` whose value is a declared port (MASTER_PORT of
  a training gang is the gang's, see network.GangPorts);

and `$(VAR)` references see the rewritten value. A port the container uses without being told
(a server's built-in default) cannot be moved: two such pods collide.

The mapping is published on the pod as the annotation `localexec.slipway.dev/ports`, a JSON
object from container port to host port (`{"8080": 41234}`), so dev tools (the local KServe
gateway, Prometheus discovery) find the pod at 127.0.0.1:<host port>. The operator must not
rely on it: a real cluster has no such annotation.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Obj = dict[str, Any]

ANNOTATION = "localexec.slipway.dev/ports"
LOOPBACK = "127.0.0.1"

_PORT_FLAG = re.compile(r"^(?P<flag>--?[A-Za-z0-9_-]*port)(?:=(?P<value>\d+))?$", re.IGNORECASE)
_PORT_ENV = re.compile(r"^(.*_)?PORT$", re.IGNORECASE)


def declared(pod: Obj) -> list[int]:
    """The TCP container ports the pod's containers declare, each once, in order."""
    ports: list[int] = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        for p in container.get("ports") or []:
            number = p.get("containerPort")
            if isinstance(number, int) and p.get("protocol", "TCP") == "TCP" and number not in ports:
                ports.append(number)
    return ports


def named(container: Obj) -> dict[str, int]:
    """A container's named ports (for probes that name their port)."""
    return {p["name"]: int(p["containerPort"]) for p in container.get("ports") or [] if p.get("name")}


def published(pod: Obj) -> dict[int, int]:
    """The mapping in the pod's annotation ({} when absent or unreadable)."""
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
        return {int(k): int(v) for k, v in data.items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def annotation_value(mapping: Mapping[int, int]) -> str:
    return json.dumps({str(k): v for k, v in sorted(mapping.items())})


def bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def assign(
    ports: Iterable[int],
    previous: Mapping[int, int],
    taken: Iterable[int],
    pick: Callable[[], int],
    is_free: Callable[[int], bool] = bindable,
) -> dict[int, int]:
    """A host port per declared port. A port this pod had before (its annotation, written by
    an earlier executor) is kept when still free, so tools that know it need not look again;
    otherwise a fresh one, never one in `taken` (handed to another pod) or given twice."""
    used = set(taken)
    mapping: dict[int, int] = {}
    for port in ports:
        host = previous.get(port)
        if host is None or host in used or not is_free(host):
            host = pick()
            for _ in range(20):  # the kernel may hand back a port another pod holds
                if host not in used:
                    break
                host = pick()
        mapping[port] = host
        used.add(host)
    return mapping


def rewrite_args(argv: list[str], mapping: Mapping[int, int]) -> list[str]:
    """`--x_port=8080` / `--x_port 8080` with the host port in place of a declared port."""
    out = list(argv)
    for i, arg in enumerate(out):
        m = _PORT_FLAG.match(arg)
        if not m:
            continue
        if m.group("value") is not None:
            host = mapping.get(int(m.group("value")))
            if host is not None:
                out[i] = f"{m.group('flag')}={host}"
        elif i + 1 < len(out) and out[i + 1].isdigit():
            host = mapping.get(int(out[i + 1]))
            if host is not None:
                out[i + 1] = str(host)
    return out


def rewrite_env(name: str, value: str, mapping: Mapping[int, int]) -> str:
    """A PORT-style var's value with the host port in place of a declared port."""
    if _PORT_ENV.match(name) and value.strip().isdigit():
        host = mapping.get(int(value.strip()))
        if host is not None:
            return str(host)
    return value


def host_port(container: Obj, port: int | str, mapping: Mapping[int, int]) -> int | None:
    """Where a probe's port (a number or a container port's name) listens on the loopback:
    the host port of a declared port, the number itself for an undeclared one."""
    number = named(container).get(port) if isinstance(port, str) and not port.isdigit() else int(port)
    if number is None:
        return None
    return mapping.get(number, number)
