"""From a pod's container spec to a local process's argv, environment and files.

`prepare` raises ImageUnavailable or envres.ConfigError for the two ways the kubelet fails
to create a container that matter here (ErrImagePull and CreateContainerConfigError; the
latter also for what the executor cannot honour: a volume other than an emptyDir, a
postStart or exec preStop hook);
everything else about the process (where it logs, its termination-message file, its
scratch dir, its emptyDir volumes) is laid out under the executor's state dir. The process
runs in its pod's network namespace and a mount namespace of its own (podnet.wrap).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import envres, images, network, podnet, probes
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
    pod_range: str = podnet.DEFAULT_RANGE  # pod IPs (podnet.py)
    service_cidr: str = podnet.DEFAULT_SERVICE_CIDR  # routed to `unreachable` on the host (podnet.py)
    kserve_venv: Path = field(default_factory=images.default_kserve_venv)  # images.Locations
    bin_dir: Path = field(default_factory=images.default_bin_dir)

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


def volume_dir(config: Config, pod: Obj, volume: str) -> Path:
    return pod_dir(config, pod) / "volumes" / volume


def protected(config: Config) -> list[Path]:
    """Paths a bind mount must not hide: the executor's files (the container's log,
    termination-message file and scratch dir are in there), the checkout, the interpreter."""
    python_prefix = Path(config.python).resolve().parent.parent
    return [config.root.resolve(), config.repo_root.resolve(), python_prefix, config.kserve_venv, config.bin_dir]


# The ServiceAccount admission plugin's token volume (`kube-api-access-<random>`, projected:
# token, kube-root-ca.crt, namespace), on every pod that automounts a token: not mounted, as
# nothing the executor runs calls the API with it.
SERVICE_ACCOUNT_VOLUME_PREFIX = "kube-api-access-"


def volume_mounts(
    config: Config, pod: Obj, container: Obj, env: Mapping[str, str] | None = None
) -> list[tuple[str, str, bool]]:
    """(source dir, mountPath, read-only) of the container's emptyDir mounts, `subPath` or
    `subPathExpr` (expanded with the container's `env`, as the kubelet does) below the
    volume's dir. A mountPath at or above a protected path (`/`, and `/tmp` when the state
    dir is in /tmp) is not mounted: the container gets TMPDIR, its pod's scratch dir,
    instead. A mount of any other kind of volume raises ConfigError (not honoured here),
    except the ServiceAccount token volume, which is left out."""
    volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
    keep = protected(config)
    out = []
    for m in container.get("volumeMounts") or []:
        name = m.get("name")
        volume = volumes.get(name)
        if volume is None:
            raise envres.ConfigError(f'volumeMount "{name}" ({container.get("name")}) names no volume of the pod')
        if "emptyDir" not in volume:
            if str(name).startswith(SERVICE_ACCOUNT_VOLUME_PREFIX) and "projected" in volume:
                continue
            kinds = ", ".join(sorted(k for k in volume if k != "name")) or "unknown"
            raise envres.ConfigError(
                f'volume "{name}" ({kinds}) mounted by {container.get("name")} is not supported by the local '
                "executor: only emptyDir volumes are mounted"
            )
        if not str(m.get("mountPath", "")).startswith("/"):
            continue
        target = Path(m["mountPath"])
        if any(target == p or target in p.parents for p in keep):
            continue
        source = volume_dir(config, pod, name)
        sub = m.get("subPath") or ""
        if m.get("subPathExpr"):
            sub = envres.expand(m["subPathExpr"], (env or {}).get)
        if sub:
            if sub.startswith("/") or ".." in Path(sub).parts:
                raise envres.ConfigError(
                    f'subPath "{sub}" of volumeMount "{name}" must be a relative path within the volume'
                )
            source = source / sub
        out.append((str(source), str(target), bool(m.get("readOnly"))))
    return out


def env_adjuster(pod: Obj, resolver: network.Resolver) -> Callable[[str, str], str]:
    """What happens to each env var as it is defined: DNS names of our pods in any value
    become their pod IPs (network.py). Applied before later vars and the command expand
    `$(VAR)`, so they see it."""

    def adjust(name: str, value: str) -> str:
        return network.rewrite_hosts(value, lambda host: resolver.resolve(host, pod))

    return adjust


def prepare(
    config: Config,
    pod: Obj,
    container: Obj,
    sources: envres.Sources,
    resolver: network.Resolver,
    pod_ip: str,
    netns: Path | None = None,
    base_env: Mapping[str, str] | None = None,
) -> Launch:
    """The container's process; run in the network namespace `netns` (None: the host's,
    for tests) with its emptyDir volumes mounted."""
    try:
        image = images.resolve(container.get("image") or "", config)
    except images.Unavailable as err:
        raise ImageUnavailable(str(err)) from None
    refused = probes.unsupported_lifecycle(container)
    if refused is not None:
        raise envres.ConfigError(refused)
    adjust = env_adjuster(pod, resolver)
    pod_env = envres.resolve_env(pod, container, sources, pod_ip, adjust)
    argv = [envres.expand(arg, pod_env.get) for arg in image.command(container)]
    workdir = pod_dir(config, pod)
    env = process_env(config, pod, pod_env, workdir, base_env, image)
    env[TERMINATION_ENV] = str(termination_path(config, pod, container["name"]))
    mounts = volume_mounts(config, pod, container, pod_env)
    return Launch(
        image.local_argv(argv),
        env,
        workdir,
        log_path(config, pod, container["name"]),
        netns=netns,
        mounts=tuple(mounts),
    )


def process_env(
    config: Config,
    pod: Obj,
    pod_env: Mapping[str, str],
    workdir: Path,
    base_env: Mapping[str, str] | None,
    image: images.LocalImage,
) -> dict[str, str]:
    """The process's environment: a few of the executor's own vars, the image's defaults,
    then the pod's env on top; the image's PYTHONPATH (runtimes/*) before the pod's."""
    source = os.environ if base_env is None else base_env
    env = {k: source[k] for k in config.pass_env if k in source}
    # `python` inside a shell command, too, should be the image's interpreter.
    env["PATH"] = os.pathsep.join(p for p in (*image.path, env.get("PATH", "")) if p)
    spec = pod.get("spec") or {}
    env.update(
        {
            "HOSTNAME": spec.get("hostname") or pod["metadata"]["name"],
            "PYTHONUNBUFFERED": "1",  # the runtime images set it: logs appear as they are written
            "TMPDIR": str(workdir / "tmp"),  # the pod's emptyDir at /tmp
            **image.env,
        }
    )
    if network.gang_key(pod) is not None:
        # torch.distributed's gloo/NCCL pick an interface from the host name, which has no
        # address here: the pod's eth0 carries its pod IP.
        env.update({"GLOO_SOCKET_IFNAME": "eth0", "NCCL_SOCKET_IFNAME": "eth0"})
    env.update(pod_env)
    paths = list(image.pythonpath)
    if pod_env.get("PYTHONPATH"):
        paths.append(pod_env["PYTHONPATH"])
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env
