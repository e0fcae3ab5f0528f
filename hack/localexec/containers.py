"""From a pod's container spec to a local process's argv, environment and files.

`prepare` raises ImageUnavailable or envres.ConfigError for the two ways the kubelet fails
to create a container that matter here (ErrImagePull and CreateContainerConfigError);
everything else about the process (where it logs, its termination-message file, its
scratch dir) is laid out under the executor's state dir.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import envres, images, network
from . import ports as ports_module  # `ports` is the gang ports argument below
from .procs import Launch

Obj = dict[str, Any]

TERMINATION_ENV = "SLIPWAY_TERMINATION_LOG"
# What a container inherits from the executor's environment: enough for a Python program to
# run (PATH, locale, HOME for caches); not the developer's credentials or settings, which a
# container in a cluster would not see either.
PASS_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")


class ImageUnavailable(Exception):
    pass


@dataclass(frozen=True)
class Config:
    root: Path  # <cluster state dir>/executor
    python: str
    repo_root: Path
    max_grace: float = 5.0
    nodes: frozenset[str] = frozenset()  # only pods bound to these nodes; empty: any node
    pass_env: tuple[str, ...] = PASS_ENV

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pods(self) -> Path:
        return self.root / "pods"

    @property
    def run(self) -> Path:
        return self.root / "run"


def pod_ref(pod: Obj) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace', 'default')}/{meta['name']}"


def pod_dir(config: Config, pod: Obj) -> Path:
    meta = pod["metadata"]
    return config.pods / f"{meta.get('namespace', 'default')}_{meta['name']}_{meta['uid'][:8]}"


def log_path(config: Config, pod: Obj, container: str) -> Path:
    meta = pod["metadata"]
    return config.logs / f"{meta.get('namespace', 'default')}_{meta['name']}_{container}.log"


def termination_path(config: Config, pod: Obj, container: str) -> Path:
    return pod_dir(config, pod) / f"{container}.termination-log"


def unavailable_message(image: str) -> str:
    names = ", ".join(f".../{r}" for r in images.RUNTIMES)
    return f'image "{image}" is not available to the local executor: it runs only slipway\'s runtime images ({names})'


def command_of(container: Obj, runtime: str) -> list[str]:
    """command + args as a container runtime combines them with the image's ENTRYPOINT/CMD
    (the runtime images have an ENTRYPOINT and no CMD)."""
    command = list(container.get("command") or images.ENTRYPOINTS[runtime])
    return command + list(container.get("args") or [])


def env_adjuster(
    pod: Obj,
    resolver: network.Resolver,
    ports: network.GangPorts,
    host_ports: Mapping[int, int] | None = None,
) -> Callable[[str, str], str]:
    """What happens to each env var as it is defined: a gang's MASTER_ADDR/MASTER_PORT
    become 127.0.0.1 and the gang's own port; a PORT-style var naming a declared container
    port becomes the pod's host port for it; DNS names of our pods in any value become
    127.0.0.1. Applied before later vars and the command expand `$(VAR)`, so they see it."""
    gang = network.gang_key(pod)

    def adjust(name: str, value: str) -> str:
        if gang is not None and name == "MASTER_PORT":
            return str(ports.port(gang))
        if gang is not None and name == "MASTER_ADDR":
            return network.LOOPBACK
        if host_ports:
            value = ports_module.rewrite_env(name, value, host_ports)
        return network.rewrite_hosts(value, lambda host: resolver.is_local(host, pod))

    return adjust


def prepare(
    config: Config,
    pod: Obj,
    container: Obj,
    sources: envres.Sources,
    resolver: network.Resolver,
    ports: network.GangPorts,
    base_env: Mapping[str, str] | None = None,
    host_ports: Mapping[int, int] | None = None,
) -> Launch:
    """`host_ports` (container port -> host port, see ports.py) is substituted where the
    container is told its port: PORT-style env vars and `--*port` arguments."""
    runtime = images.runtime_of(container.get("image") or "")
    if runtime is None:
        raise ImageUnavailable(unavailable_message(container.get("image") or ""))
    adjust = env_adjuster(pod, resolver, ports, host_ports)
    pod_env = envres.resolve_env(pod, container, sources, network.LOOPBACK, adjust)
    argv = [envres.expand(arg, pod_env.get) for arg in command_of(container, runtime)]
    if host_ports:
        argv = ports_module.rewrite_args(argv, host_ports)
    workdir = pod_dir(config, pod)
    env = process_env(config, pod, pod_env, workdir, base_env)
    env[TERMINATION_ENV] = str(termination_path(config, pod, container["name"]))
    return Launch(images.local_argv(argv, config.python), env, workdir, log_path(config, pod, container["name"]))


def process_env(
    config: Config, pod: Obj, pod_env: Mapping[str, str], workdir: Path, base_env: Mapping[str, str] | None
) -> dict[str, str]:
    """The process's environment: a few of the executor's own vars, the image's defaults,
    then the pod's env on top; runtimes/* prepended to PYTHONPATH."""
    source = os.environ if base_env is None else base_env
    env = {k: source[k] for k in config.pass_env if k in source}
    # `python` inside a shell command, too, should be the configured interpreter.
    env["PATH"] = os.pathsep.join(p for p in (str(Path(config.python).parent), env.get("PATH", "")) if p)
    spec = pod.get("spec") or {}
    env.update(
        {
            "HOSTNAME": spec.get("hostname") or pod["metadata"]["name"],
            "PYTHONUNBUFFERED": "1",  # the runtime images set it: logs appear as they are written
            "TMPDIR": str(workdir / "tmp"),  # the pod's emptyDir at /tmp
        }
    )
    if network.gang_key(pod) is not None:
        # torch.distributed's gloo/NCCL pick an interface from the host name; on a machine
        # where every worker is 127.0.0.1 that has to be the loopback.
        env.update({"GLOO_SOCKET_IFNAME": "lo", "NCCL_SOCKET_IFNAME": "lo"})
    env.update(pod_env)
    paths = images.runtime_paths(config.repo_root)
    if pod_env.get("PYTHONPATH"):
        paths.append(pod_env["PYTHONPATH"])
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env
