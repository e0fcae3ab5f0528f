"""Which images the executor can run, and how a container's command becomes a local argv.

There is no image store: an image is runnable when its repository is one of slipway's own
runtimes (…/trainer, …/predictor, …/drift, any registry and tag), whose code is in this
repository under runtimes/. Their "image" is the executor's Python with runtimes/*
on PYTHONPATH, so `python` in a command means that interpreter and `torchrun` the one next
to it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

RUNTIMES = ("trainer", "predictor", "drift")

# What the runtime images run when a pod gives no command (their ENTRYPOINT). The trainer's
# is fixed by docs/trainer-contract.md; the others follow the same naming.
ENTRYPOINTS: dict[str, list[str]] = {
    "trainer": ["python", "-m", "slipway_trainer"],
    "predictor": ["python", "-m", "slipway_predictor"],
    "drift": ["python", "-m", "slipway_drift"],
}

_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")


def repository(image: str) -> str:
    """The image reference without its digest and tag: `ghcr.io/x/trainer:0.1@sha256:…` →
    `ghcr.io/x/trainer`. A ':' after the last '/' is a tag; before it, a registry port."""
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def runtime_of(image: str) -> str | None:
    """The runtime an image holds (`trainer`, …) or None when the executor cannot run it."""
    last = repository(image).rsplit("/", 1)[-1]
    return last if last in RUNTIMES else None


def local_argv(argv: Sequence[str], python: str) -> list[str]:
    """The container's argv with its interpreter mapped to local ones: `python`, `python3`
    and `python3.X` (bare or absolute, as images write them) → `python`; `torchrun` → the
    torchrun installed next to it. Anything else runs as given, found on PATH."""
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
