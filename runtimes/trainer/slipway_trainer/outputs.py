"""What a run leaves under `output`: the artifact(s), reference.parquet, and manifest.json written last."""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from slipway_trainer import __version__
from slipway_trainer.config import TrainConfig
from slipway_trainer.data import Split, Table, reference_sample, signature
from slipway_trainer.report import Progress
from slipway_trainer.s3 import S3


@dataclass(frozen=True)
class LocalFile:
    path: Path
    format: str
    content_type: str = "application/octet-stream"

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class Trained:
    """A backend's result on the rank that writes; the runner turns it into the outputs and the manifest."""

    task: str
    metrics: dict[str, float]
    artifact: LocalFile
    extras: list[LocalFile] = field(default_factory=list)  # state_dict.pt for PyTorch
    device: str = "cpu"
    world_size: int = 1
    libraries: dict[str, str] = field(default_factory=dict)


def file_digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest(), path.stat().st_size


def library_versions(*distributions: str) -> dict[str, str]:
    versions = {"python": platform.python_version(), "slipway-trainer": __version__}
    for dist in ("numpy", "pandas", "pyarrow", *distributions):
        with contextlib.suppress(metadata.PackageNotFoundError):  # an optional one is simply not listed
            versions[dist] = metadata.version(dist)
    return versions


def write_outputs(
    cfg: TrainConfig, s3: S3, workdir: Path, table: Table, split: Split, trained: Trained, progress: Progress
) -> str:
    """Upload everything, the manifest last: a manifest in S3 means every object it names is there too."""
    uploaded: dict[str, dict[str, Any]] = {}
    for f in [trained.artifact, *trained.extras]:
        uploaded[f.name] = _upload(s3, f, cfg.output, progress)
    reference = reference_sample(split.x_train, cfg.seed)
    ref_file = LocalFile(workdir / "reference.parquet", "parquet", "application/vnd.apache.parquet")
    reference.to_parquet(ref_file.path, index=False)
    ref_entry = _upload(s3, ref_file, cfg.output, progress)
    manifest = build_manifest(cfg, table, split, trained, uploaded, {"uri": ref_entry["uri"], "rows": len(reference)})
    manifest_uri = f"{cfg.output}/manifest.json"
    s3.put_bytes(manifest_uri, json.dumps(manifest, indent=2).encode(), "application/json")
    progress.emit("upload", uri=manifest_uri)
    return manifest_uri


def _upload(s3: S3, f: LocalFile, output: str, progress: Progress) -> dict[str, Any]:
    sha256, size = file_digest(f.path)
    uri = f"{output}/{f.name}"
    s3.upload_file(f.path, uri, f.content_type)
    progress.emit("upload", uri=uri, sizeBytes=size, sha256=sha256)
    return {"uri": uri, "sha256": sha256, "sizeBytes": size, "format": f.format}


def build_manifest(
    cfg: TrainConfig,
    table: Table,
    split: Split,
    trained: Trained,
    uploaded: dict[str, dict[str, Any]],
    reference: dict[str, Any],
) -> dict[str, Any]:
    """The contract's manifest; `modelName`, `classes`, `split` and `stateDict` are additions it allows."""
    manifest: dict[str, Any] = {
        "modelName": cfg.model_name,
        "framework": cfg.framework,
        "task": trained.task,
        "algorithm": cfg.algorithm,
        "artifact": uploaded[trained.artifact.name],
        "metrics": trained.metrics,
        "dataset": {"uri": cfg.dataset.uri, "sha256": table.sha256, "rows": table.rows},
        "hyperparameters": cfg.hyperparameters,
        "seed": cfg.seed,
        "signature": {"inputs": signature(table.x), "target": table.target},
        "referenceData": reference,
        "libraries": trained.libraries,
        "device": trained.device,
        "worldSize": trained.world_size,
        "split": {"train": len(split.x_train), "validation": len(split.x_val), "stratified": split.stratified},
    }
    if split.classes:
        manifest["classes"] = split.classes
    if "state_dict.pt" in uploaded:
        manifest["stateDict"] = uploaded["state_dict.pt"]
    return manifest
