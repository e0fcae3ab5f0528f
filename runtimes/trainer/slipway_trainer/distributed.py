"""Who this process is in a torchrun gang. Reading the environment needs no torch, so the scikit-learn path and
the single-process path never import torch.distributed."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from slipway_trainer.errors import TrainerError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 evaluates and writes; the others only train."""
        return self.rank == 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DistContext:
        """torchrun sets RANK, LOCAL_RANK and WORLD_SIZE (total processes) for each worker. The pod's own
        WORLD_SIZE (number of pods, for torchrun's --nnodes) is not ours to read without RANK beside it."""
        env = os.environ if env is None else env
        if "RANK" not in env or "LOCAL_RANK" not in env:
            return cls()
        try:
            ctx = cls(int(env["RANK"]), int(env["LOCAL_RANK"]), int(env.get("WORLD_SIZE", "1")))
        except ValueError as e:
            raise TrainerError(f"malformed torchrun environment: {e}") from e
        if not 0 <= ctx.rank < ctx.world_size:
            raise TrainerError(f"RANK {ctx.rank} is outside WORLD_SIZE {ctx.world_size}")
        return ctx


@contextmanager
def process_group(ctx: DistContext, cuda: bool) -> Iterator[None]:
    """The default process group for the gang (nccl between GPUs, gloo on CPU), torn down on the way out.
    MASTER_ADDR and MASTER_PORT come from torchrun (env:// rendezvous)."""
    if not ctx.is_distributed:
        yield
        return
    import torch.distributed as dist

    if cuda:
        import torch

        torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", ctx.local_rank))
    else:
        dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.is_distributed:
        import torch.distributed as dist

        dist.barrier()
