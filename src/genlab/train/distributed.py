"""Data parallelism under torchrun: process group set-up and keeping replicas identical.

Models run their own optimizer steps (a GAN takes several per batch), so gradients are averaged in
`Stepper.apply` right before each step rather than by hooks around one forward pass; the result is
the same update DistributedDataParallel makes, for any number of optimizers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch.distributed as dist
from torch import nn


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(device_type: str) -> Dist:
    """Join the process group torchrun describes in the environment; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    for t in [*module.parameters(), *module.buffers()]:
        dist.broadcast(t.data, src=0)


def sync_buffers(module: nn.Module) -> None:
    """Rank 0's buffers (e.g. batch-norm statistics) everywhere, as DDP does each step."""
    for b in module.buffers():
        dist.broadcast(b.data, src=0)


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


def shutdown(d: Dist) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
