"""framework: pytorch, algorithm: mlp. One process or a torchrun gang (DistributedDataParallel); CUDA with
mixed precision when there is a GPU, CPU otherwise; bit-for-bit repeatable on CPU for a fixed seed."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# cuBLAS is only deterministic with a fixed workspace, which must be configured before its first call.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler, TensorDataset

from slipway_trainer.data import CLASSIFICATION, REGRESSION, Split
from slipway_trainer.distributed import DistContext
from slipway_trainer.errors import InvalidInput
from slipway_trainer.metrics import HEADLINE, classification_metrics, regression_metrics
from slipway_trainer.mlp import Classifier, MlpParams, Regressor, TabularMLP
from slipway_trainer.outputs import LocalFile, Trained, library_versions
from slipway_trainer.report import Progress


def pick_device(ctx: DistContext) -> torch.device:
    return torch.device("cuda", ctx.local_rank) if torch.cuda.is_available() else torch.device("cpu")


@dataclass
class Tensors:
    x_train: torch.Tensor
    y_train: torch.Tensor  # class indices (classification) or the standardized target (regression)
    x_val: torch.Tensor
    y_mean: float = 0.0
    y_std: float = 1.0


def prepare(split: Split, task: str, device: torch.device) -> Tensors:
    """The whole table goes to the device once: tabular sets are small, and indexing beats a DataLoader."""
    x_train = torch.as_tensor(split.x_train.to_numpy(dtype=np.float32))
    x_val = torch.as_tensor(split.x_val.to_numpy(dtype=np.float32))
    if not (torch.isfinite(x_train).all() and torch.isfinite(x_val).all()):
        raise InvalidInput("feature columns contain missing or infinite values; the mlp needs complete numeric data")
    if task == CLASSIFICATION:
        y = torch.as_tensor(np.searchsorted(np.asarray(split.classes), split.y_train), dtype=torch.int64)
        return Tensors(x_train.to(device), y.to(device), x_val.to(device))
    y_np = split.y_train.astype(np.float64)
    y_mean, y_std = float(y_np.mean()), float(y_np.std()) or 1.0
    y = torch.as_tensor((y_np - y_mean) / y_std, dtype=torch.float32).unsqueeze(1)
    return Tensors(x_train.to(device), y.to(device), x_val.to(device), y_mean, y_std)


def build(t: Tensors, split: Split, task: str, params: MlpParams) -> tuple[TabularMLP, nn.Module]:
    """The network and the head that is evaluated and saved; both share the same parameters."""
    mean = t.x_train.mean(dim=0)
    std = t.x_train.std(dim=0, unbiased=False)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))  # a constant column must not divide by zero
    n_outputs = len(split.classes) if task == CLASSIFICATION else 1
    core = TabularMLP(mean.cpu(), std.cpu(), params, n_outputs).to(t.x_train.device)
    head: nn.Module = Classifier(core) if task == CLASSIFICATION else Regressor(core, t.y_mean, t.y_std)
    return core, head.to(t.x_train.device)


def evaluate(head: nn.Module, t: Tensors, split: Split, task: str) -> dict[str, float]:
    """Full precision, eval mode, no autocast: validation metrics must not depend on the AMP loss scale."""
    head.eval()
    with torch.no_grad():
        out = head(t.x_val).double().cpu().numpy()  # metrics in float64, like scikit-learn's
    head.train()
    if task == REGRESSION:
        return regression_metrics(split.y_val, out)
    labels = np.asarray(split.classes, dtype=split.y_val.dtype)
    return classification_metrics(split.y_val, labels[out.argmax(axis=1)], out, split.classes)


@dataclass
class Run:
    """What the training loop needs besides the model: kept together so its signature stays readable."""

    t: Tensors
    split: Split
    task: str
    params: MlpParams
    seed: int
    ctx: DistContext
    progress: Progress


def fit(core: TabularMLP, head: nn.Module, run: Run) -> None:
    t, ctx, params = run.t, run.ctx, run.params
    device = t.x_train.device
    model: nn.Module = core
    if ctx.is_distributed:
        # The standardization buffers are identical on every rank (same split), so no per-step broadcast.
        ids = [device.index] if device.type == "cuda" else None
        model = DistributedDataParallel(core, device_ids=ids, forward_sync_buffers=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)  # float16 autocast needs loss scaling
    loss_fn: nn.Module = nn.CrossEntropyLoss() if run.task == CLASSIFICATION else nn.MSELoss()
    # Every rank shuffles the same way (seed + epoch) and takes its own equal share, padded if needed, so all
    # ranks run the same number of steps, which DDP's gradient all-reduce requires.
    sampler: DistributedSampler[tuple[torch.Tensor, ...]] = DistributedSampler(
        TensorDataset(t.x_train), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=run.seed
    )
    mean_loss = math.nan
    for epoch in range(params.epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), dtype=torch.int64, device=device)
        totals = torch.zeros(2, dtype=torch.float64, device=device)
        for batch in torch.split(order, params.batch_size):
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                loss = loss_fn(model(t.x_train[batch]), t.y_train[batch])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            totals[0] += loss.detach().double() * len(batch)
            totals[1] += len(batch)
        if ctx.is_distributed:
            dist.all_reduce(totals)
        mean_loss = float(totals[0] / totals[1])
        if ctx.is_main:
            headline = HEADLINE[run.task]
            value = evaluate(head, t, run.split, run.task).get(headline)
            run.progress.emit("epoch", epoch=epoch + 1, epochs=params.epochs, loss=mean_loss, **{headline: value})
    if not math.isfinite(mean_loss):
        raise InvalidInput(f"training diverged (loss {mean_loss}); try a lower learning_rate")


def export(head: nn.Module, workdir: Path) -> tuple[LocalFile, LocalFile]:
    """model.pt: the head as TorchScript, on CPU so it loads anywhere; state_dict.pt: its weights alone."""
    head = head.cpu().eval()
    model_path, state_path = workdir / "model.pt", workdir / "state_dict.pt"
    with warnings.catch_warnings():
        # torch 2.15 deprecates TorchScript in favour of torch.export; the contract still names TorchScript.
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(head), str(model_path))
    torch.save(head.state_dict(), state_path)
    return LocalFile(model_path, "torchscript"), LocalFile(state_path, "state_dict")


def train(
    split: Split,
    task: str,
    hyperparameters: dict[str, Any],
    seed: int,
    ctx: DistContext,
    workdir: Path,
    progress: Progress,
) -> Trained | None:
    """Train on every rank; only rank 0 evaluates and returns the result to write (the others return None).
    The caller has set up the process group when the gang has more than one process."""
    params = MlpParams.from_hyperparameters(hyperparameters)
    device = pick_device(ctx)
    torch.manual_seed(seed)  # every rank builds the same initial weights; DDP also broadcasts rank 0's
    torch.use_deterministic_algorithms(True, warn_only=True)
    t = prepare(split, task, device)
    core, head = build(t, split, task, params)
    progress.emit(
        "fit",
        network=repr_layers(params),
        device=str(device),
        trainRows=len(split.x_train),
        rowsPerRank=math.ceil(len(split.x_train) / ctx.world_size),  # DistributedSampler's share, padded
    )
    fit(core, head, Run(t, split, task, params, seed, ctx, progress))
    if not ctx.is_main:
        return None
    metrics = evaluate(head, t, split, task)
    progress.emit("evaluate", validationRows=len(split.x_val), metrics=metrics)
    model, state = export(head, workdir)
    libraries = library_versions("torch", "scikit-learn")
    if device.type == "cuda" and torch.version.cuda:
        libraries["cuda"] = torch.version.cuda
    return Trained(task, metrics, model, [state], device.type, ctx.world_size, libraries)


def repr_layers(params: MlpParams) -> str:
    return "-".join(str(w) for w in params.hidden_layers) or "linear"
