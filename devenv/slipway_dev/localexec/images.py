"""Which images the executor can run, and how a container's command becomes a local argv.

There is no image store: an image is runnable when a local program stands in for it.

- slipway's own runtimes (…/trainer, …/predictor, …/drift, any registry and tag), whose code
  is in this repository under runtimes/. Their "image" is the executor's Python with
  runtimes/* on PYTHONPATH, so `python` in a command means that interpreter and `torchrun`
  the one next to it.
- KServe's containers in a predictor pod, run from KServe's own code at the version pinned in
  hack/kserve/go.mod:
  - `kserve/storage-initializer` (the storage initializer init container, named by the
    `inferenceservice-config` ConfigMap and the default ClusterStorageContainer): KServe's
    `initializer-entrypoint` script from the Go module's python/storage-initializer/, run
    with the KServe venv's interpreter, which has the `kserve-storage` package it imports;
  - `kserve/sklearnserver` (the `kserve-sklearnserver` ClusterServingRuntime):
    `python -m sklearnserver` with the module's python/sklearnserver/ on PYTHONPATH, as the
    image's ENV sets it, and the KServe venv's interpreter (kserve SDK, scikit-learn);
  - `kserve/agent` (the agent/batcher/logger sidecar): the `kserve-agent` binary built by
    hack/build-serving.sh.

  The KServe venv is built by hack/build-kserve-python.sh, which also links the Go module's
  directory into it as `kserve-src`, so the executor needs no `go` at run time. Repositories
  are matched as `…/kserve/<name>` or `…/kserve-<name>` (mirrors name them either way), any
  registry and tag: the tag is not checked, the local code is whatever version was built.
- Knative Serving's queue-proxy (`gcr.io/knative-releases/knative.dev/serving/cmd/queue`, the
  image config-deployment's `queue-sidecar-image` names, any tag or digest, any registry
  spelling the path `…/knative.dev/serving/cmd/queue`): the `knative-queue` binary built by
  hack/build-knative.sh from knative.dev/serving v0.48.1. The revision reconciler gives the
  container no command (the image's ENTRYPOINT is the binary, ko's `/ko-app/queue`).

When the program behind an image is missing (not built yet, module cache cleaned), `resolve`
raises Unavailable with a message saying what to run; the container waits in ErrImagePull,
and a later start (the back-off retries) finds it once built.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

RUNTIMES = ("trainer", "predictor", "drift")

# What the runtime images run when a pod gives no command (their ENTRYPOINT). The trainer's
# is fixed by docs/trainer-contract.md; the others follow the same naming.
ENTRYPOINTS: dict[str, list[str]] = {
    "trainer": ["python", "-m", "slipway_trainer"],
    "predictor": ["python", "-m", "slipway_predictor"],
    "drift": ["python", "-m", "slipway_drift"],
}

# KServe's images (repository `kserve/<name>`) and their ENTRYPOINTs, from the Dockerfiles at
# the module's root and in python/ (none has a CMD).
KSERVE_IMAGES = ("storage-initializer", "agent", "sklearnserver")
INITIALIZER_ENTRYPOINT = "/storage-initializer/scripts/initializer-entrypoint"  # storage-initializer.Dockerfile
AGENT_ENTRYPOINT = "/ko-app/agent"  # agent.Dockerfile
KSERVE_ENTRYPOINTS: dict[str, list[str]] = {
    "storage-initializer": [INITIALIZER_ENTRYPOINT],
    "agent": [AGENT_ENTRYPOINT],
    "sklearnserver": ["python", "-m", "sklearnserver"],  # python/sklearn.Dockerfile
}

# Knative Serving's queue-proxy sidecar (hack/build-knative.sh builds it as knative-queue).
KNATIVE_QUEUE_IMAGE = "gcr.io/knative-releases/knative.dev/serving/cmd/queue:v1.21.1"
KNATIVE_QUEUE_REPOSITORY_PATH = "knative.dev/serving/cmd/queue"
KNATIVE_QUEUE_ENTRYPOINT = "/ko-app/queue"  # ko's layout: /ko-app/<binary>
KNATIVE_QUEUE_BINARY = "knative-queue"
BUILD_KNATIVE = "hack/build-knative.sh"

KSERVE_SRC_LINK = "kserve-src"  # <kserve venv>/kserve-src -> KServe's Go module dir
BUILD_PYTHON = "hack/build-kserve-python.sh"
BUILD_SERVING = "hack/build-serving.sh"

_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")


def default_bin_dir() -> Path:
    """Where hack/build-serving.sh puts kserve-agent (its $SLIPWAY_BIN)."""
    return Path(os.environ.get("SLIPWAY_BIN") or Path.home() / ".cache" / "slipway" / "bin")


def default_kserve_venv() -> Path:
    """Where hack/build-kserve-python.sh builds the KServe Python venv (its $SLIPWAY_KSERVE_VENV)."""
    return Path(os.environ.get("SLIPWAY_KSERVE_VENV") or Path.home() / ".cache" / "slipway" / "venvs" / "kserve")


class Locations(Protocol):
    """Where the images' programs are on this machine; the executor's Config has these fields."""

    @property
    def python(self) -> str: ...  # slipway's runtimes' interpreter

    @property
    def repo_root(self) -> Path: ...  # this checkout (runtimes/)

    @property
    def kserve_venv(self) -> Path: ...  # hack/build-kserve-python.sh

    @property
    def bin_dir(self) -> Path: ...  # hack/build-serving.sh (kserve-agent), hack/build-knative.sh (knative-queue)


@dataclass(frozen=True)
class Programs:
    """A Locations on its own (tests, tools); the executor passes its Config."""

    python: str
    repo_root: Path
    kserve_venv: Path = field(default_factory=default_kserve_venv)
    bin_dir: Path = field(default_factory=default_bin_dir)


class Unavailable(Exception):
    """The image cannot be run here: the kubelet's ErrImagePull. str() is the message."""


@dataclass(frozen=True)
class LocalImage:
    """What an image is on this machine."""

    name: str  # `trainer`, `kserve/sklearnserver`, …
    entrypoint: tuple[str, ...]  # the image's ENTRYPOINT, as the image spells it
    python: str  # what `python`/`python3`/`python3.X` means in its commands
    pythonpath: tuple[str, ...] = ()  # the image's PYTHONPATH, before the pod's own
    path: tuple[str, ...] = ()  # dirs prepended to PATH (the image's venv, the interpreter's dir)
    env: Mapping[str, str] = field(default_factory=dict)  # other ENV of the image; the pod's env wins
    heads: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # argv[0] in the image -> local argv prefix

    def command(self, container: Mapping[str, Any]) -> list[str]:
        """command + args as a container runtime combines them with the image's ENTRYPOINT
        (these images have no CMD): `command` replaces the ENTRYPOINT, `args` follow it."""
        command = container.get("command") or self.entrypoint
        return [str(a) for a in command] + [str(a) for a in container.get("args") or []]

    def local_argv(self, argv: Sequence[str]) -> list[str]:
        """The argv with its program mapped to the local one: the image's interpreter for
        `python`, `python3`, `python3.X` (bare or absolute), a program of the image (an
        ENTRYPOINT path, `torchrun`) to its local counterpart. Anything else runs as given,
        found on PATH."""
        if not argv:
            return []
        head = argv[0]
        if head in self.heads:
            return [*self.heads[head], *argv[1:]]
        base = head.rsplit("/", 1)[-1]
        if _PYTHON.match(base):
            return [self.python, *argv[1:]]
        if base in self.heads:
            return [*self.heads[base], *argv[1:]]
        return list(argv)


def repository(image: str) -> str:
    """The image reference without its digest and tag: `ghcr.io/x/trainer:0.1@sha256:…` →
    `ghcr.io/x/trainer`. A ':' after the last '/' is a tag; before it, a registry port."""
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def runtime_of(image: str) -> str | None:
    """The slipway runtime an image holds (`trainer`, …) or None when it holds none."""
    last = repository(image).rsplit("/", 1)[-1]
    return last if last in RUNTIMES else None


def kserve_image_of(image: str) -> str | None:
    """The KServe image an image reference names (`storage-initializer`, `agent`,
    `sklearnserver`): `[registry/]…/kserve/<name>` or `…/kserve-<name>`, any tag; else None."""
    parts = repository(image).split("/")
    last = parts[-1]
    if len(parts) >= 2 and parts[-2] == "kserve" and last in KSERVE_IMAGES:
        return last
    if last.startswith("kserve-") and last.removeprefix("kserve-") in KSERVE_IMAGES:
        return last.removeprefix("kserve-")
    return None


def is_knative_queue(image: str) -> bool:
    """Whether an image reference names Knative's queue-proxy: `[registry/…/]knative.dev/
    serving/cmd/queue`, any tag or digest (not ko's unresolved `ko://…`)."""
    if "://" in image:
        return False
    repo = repository(image)
    return repo == KNATIVE_QUEUE_REPOSITORY_PATH or repo.endswith("/" + KNATIVE_QUEUE_REPOSITORY_PATH)


def describe() -> str:
    """The images the executor can run, for messages."""
    names = [f".../{r}" for r in RUNTIMES] + [f"kserve/{k}" for k in KSERVE_IMAGES]
    names.append(f".../{KNATIVE_QUEUE_REPOSITORY_PATH}")
    return ", ".join(names)


def resolve(image: str, where: Locations) -> LocalImage:
    """What `image` is on this machine; Unavailable when nothing stands in for it or what
    does is not built. Checked at every container start, so building it later is enough."""
    runtime = runtime_of(image)
    if runtime is not None:
        return LocalImage(
            name=runtime,
            entrypoint=tuple(ENTRYPOINTS[runtime]),
            python=where.python,
            pythonpath=tuple(runtime_paths(where.repo_root)),
            path=(str(Path(where.python).parent),),  # `python` inside a shell command, too
            heads={"torchrun": (str(Path(where.python).parent / "torchrun"),)},
        )
    if is_knative_queue(image):
        queue = where.bin_dir / KNATIVE_QUEUE_BINARY
        if not _executable(queue):
            raise Unavailable(_missing(image, f"Knative's queue-proxy is not built (no {queue}); run {BUILD_KNATIVE}"))
        heads = {KNATIVE_QUEUE_ENTRYPOINT: (str(queue),), "queue": (str(queue),)}
        return LocalImage(name="knative/queue", entrypoint=(KNATIVE_QUEUE_ENTRYPOINT,), python="python", heads=heads)
    kind = kserve_image_of(image)
    if kind == "agent":
        agent = where.bin_dir / "kserve-agent"
        if not _executable(agent):
            raise Unavailable(_missing(image, f"KServe's agent is not built (no {agent}); run {BUILD_SERVING}"))
        return LocalImage(name="kserve/agent", entrypoint=(AGENT_ENTRYPOINT,), python="python", heads=_heads(agent))
    if kind is not None:
        return _kserve_python_image(image, kind, where.kserve_venv)
    raise Unavailable(f'image "{image}" is not available to the local executor: it runs only {describe()}')


def _kserve_python_image(image: str, kind: str, venv: Path) -> LocalImage:
    python = venv / "bin" / "python"
    src = venv / KSERVE_SRC_LINK / "python"
    if not _executable(python):
        raise Unavailable(_missing(image, f"KServe's Python runtimes are not built (no {python}); run {BUILD_PYTHON}"))
    env = {"VIRTUAL_ENV": str(venv)}  # the images' venv is on PATH and named by VIRTUAL_ENV
    path = (str(venv / "bin"),)
    if kind == "storage-initializer":
        script = src / "storage-initializer" / "scripts" / "initializer-entrypoint"
        if not script.is_file():
            raise Unavailable(_missing(image, f"KServe's source is missing (no {script}); run {BUILD_PYTHON}"))
        # The module cache's copy is not executable (the image chmods it): run it with the
        # interpreter its `#!/usr/bin/env python3` finds in the image, the venv's.
        run = (str(python), str(script))
        heads = {INITIALIZER_ENTRYPOINT: run, "initializer-entrypoint": run}
        return LocalImage(
            name="kserve/storage-initializer",
            entrypoint=(INITIALIZER_ENTRYPOINT,),
            python=str(python),
            path=path,
            env=env,
            heads=heads,
        )
    server = src / "sklearnserver"
    if not (server / "sklearnserver" / "__main__.py").is_file():
        raise Unavailable(
            _missing(image, f"KServe's source is missing (no {server}/sklearnserver); run {BUILD_PYTHON}")
        )
    return LocalImage(
        name="kserve/sklearnserver",
        entrypoint=tuple(KSERVE_ENTRYPOINTS["sklearnserver"]),
        python=str(python),
        pythonpath=(str(server),),  # ENV PYTHONPATH=/sklearnserver
        path=path,
        env=env,
    )


def _heads(program: Path) -> dict[str, tuple[str, ...]]:
    return {AGENT_ENTRYPOINT: (str(program),), "agent": (str(program),)}


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _missing(image: str, why: str) -> str:
    return f'image "{image}" is not available to the local executor: {why}'


def local_argv(argv: Sequence[str], python: str) -> list[str]:
    """The container's argv with its interpreter mapped to local ones: `python`, `python3`
    and `python3.X` (bare or absolute, as images write them) → `python`; `torchrun` → the
    torchrun installed next to it. Anything else runs as given, found on PATH.
    (A slipway runtime's LocalImage.local_argv.)"""
    if not argv:
        return []
    head = argv[0]
    base = head.rsplit("/", 1)[-1]
    if _PYTHON.match(base):
        head = python
    elif base == "torchrun":
        head = str(Path(python).parent / "torchrun")
    return [head, *argv[1:]]


def runtime_paths(repo_root: Path) -> list[str]:
    """The source dirs of runtimes/*: `src/` where a runtime has one, else the runtime dir.
    Looked up at every start, so a runtime added while the executor runs is found."""
    base = repo_root / "runtimes"
    if not base.is_dir():
        return []
    paths = []
    for d in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        paths.append(str(d / "src" if (d / "src").is_dir() else d))
    return paths
