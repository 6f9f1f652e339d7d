"""DistributedDataParallel plumbing: read torchrun's environment, gather evaluation features.

``torchrun --nproc_per_node=N -m reidlib train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; NCCL is used
on GPUs and gloo on CPUs. Without those variables everything runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(use_cuda: bool) -> DistContext:
    """Join the process group torchrun describes, or return the single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    ctx = DistContext(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(ctx.local_rank)
        # Generous timeout: after the last epoch rank 0 alone ranks and re-ranks (minutes on MSMT17)
        # while the other ranks wait in a barrier.
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timedelta(hours=2))
    return ctx


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics) before evaluating.

    DDP broadcasts buffers at the start of each training forward, but each rank's forward then updates
    its own running statistics, so after the last step the ranks disagree; features gathered from
    differently normalised copies would not be comparable.
    """
    if ctx.enabled:
        for buf in module.buffers():
            dist.broadcast(buf, src=0)


def gather_strided(rows: Tensor, total: int, ctx: DistContext) -> Tensor:
    """Reassemble rows computed as ``items[rank::world_size]`` on every rank into ``total`` rows.

    Shards are padded to a common length, all-gathered, and interleaved back into the original order.
    """
    if not ctx.enabled:
        return rows
    longest = -(-total // ctx.world_size)
    padded = rows.new_zeros((longest, *rows.shape[1:]))
    padded[: rows.shape[0]] = rows
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded)
    return torch.stack(parts, dim=1).flatten(0, 1)[:total]  # (longest * world, ...) in item order
