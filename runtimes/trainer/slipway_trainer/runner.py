"""One training run from config to manifest: the order of the steps, and who (which rank) does what."""

from __future__ import annotations

import tempfile
from pathlib import Path

from slipway_trainer import sklearn_backend
from slipway_trainer.config import TrainConfig
from slipway_trainer.data import Split, Table, infer_task, load_table, split
from slipway_trainer.distributed import DistContext, barrier, process_group
from slipway_trainer.errors import InvalidInput
from slipway_trainer.outputs import write_outputs
from slipway_trainer.report import Progress
from slipway_trainer.s3 import S3


def run(cfg: TrainConfig, ctx: DistContext, progress: Progress, s3: S3 | None = None) -> str:
    """Train and write the outputs; returns the manifest's URI (on every rank: it is where rank 0 wrote it)."""
    s3 = s3 or S3()
    progress.emit(
        "start",
        modelName=cfg.model_name,
        framework=cfg.framework,
        algorithm=cfg.algorithm,
        dataset=cfg.dataset.uri,
        seed=cfg.seed,
        output=cfg.output,
        worldSize=ctx.world_size,
    )
    # Cheap checks of the algorithm and its hyperparameters come before reading a possibly large dataset.
    estimator = None
    if cfg.framework == "sklearn":
        if ctx.is_distributed:
            raise InvalidInput("distributed training needs framework pytorch; scikit-learn runs as one process")
        estimator = sklearn_backend.resolve_estimator(cfg.algorithm, cfg.hyperparameters, cfg.seed)
    else:
        from slipway_trainer.mlp import MlpParams

        MlpParams.from_hyperparameters(cfg.hyperparameters)
    if ctx.is_main:
        s3.check_output(cfg.output)
    table = load_table(cfg.dataset, s3)
    task = infer_task(table.y)
    if estimator is not None:
        task = sklearn_backend.task_for(estimator, table, task)
    parts = split(table, task, cfg.seed)
    _report_data(progress, table, parts, task)
    manifest_uri = f"{cfg.output}/manifest.json"
    with tempfile.TemporaryDirectory(prefix="slipway-trainer-") as tmp:
        workdir = Path(tmp)
        if estimator is not None:
            trained = sklearn_backend.train(parts, estimator, workdir, progress)
            manifest_uri = write_outputs(cfg, s3, workdir, table, parts, trained, progress)
        else:
            _run_torch(cfg, ctx, progress, s3, workdir, table, parts, task)
    return manifest_uri


def _run_torch(
    cfg: TrainConfig, ctx: DistContext, progress: Progress, s3: S3, workdir: Path, table: Table, parts: Split, task: str
) -> None:
    import torch

    from slipway_trainer import torch_backend

    with process_group(ctx, cuda=torch.cuda.is_available()):
        trained = torch_backend.train(parts, task, cfg.hyperparameters, cfg.seed, ctx, workdir, progress)
        if trained is not None:
            write_outputs(cfg, s3, workdir, table, parts, trained, progress)
        # Nobody leaves before rank 0 has written the manifest: a finished pod then means a finished job.
        barrier(ctx)


def _report_data(progress: Progress, table: Table, parts: Split, task: str) -> None:
    progress.emit(
        "data",
        rows=table.rows,
        features=len(table.x.columns),
        target=table.target,
        task=task,
        sha256=table.sha256,
        droppedRows=table.dropped_rows,
        train=len(parts.x_train),
        validation=len(parts.x_val),
        stratified=parts.stratified,
        classes=len(parts.classes) or None,
    )
