"""Batches from in-memory tensors by indexing (no per-item DataLoader).

The order of epoch e is a permutation drawn from its own generator seeded by (seed, e), so a run
resumed at batch b of epoch e sees exactly the batches an uninterrupted run would. Under data
parallelism each rank takes a strided share of every epoch's permutation.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from .base import ImageSet
from .transforms import Pipeline


class Batches:
    def __init__(
        self,
        data: ImageSet,
        pipeline: Pipeline,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        rank: int = 0,
        world: int = 1,
        device: torch.device | str = "cpu",
    ):
        self.data, self.pipeline = data, pipeline
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world = rank, world
        self.device = torch.device(device)
        per_rank = len(data) // world
        self.per_rank = per_rank
        self.num_batches = per_rank // batch_size if drop_last else -(-per_rank // batch_size)
        if self.num_batches == 0:
            self.num_batches = 1  # tiny data: one short batch rather than none
            self.drop_last = False

    def __len__(self) -> int:
        return self.num_batches

    def order(self, epoch: int) -> torch.Tensor:
        n = len(self.data)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(n, generator=g)
        else:
            perm = torch.arange(n)
        return perm[self.rank : self.per_rank * self.world : self.world]

    def batch(self, order: torch.Tensor, b: int, with_index: bool = False) -> tuple:
        """Batch b of an epoch whose order is `order`: (x float B x C x H x W, y int64 B or None),
        plus the images' indices in the dataset (int64 B) when `with_index`."""
        sel = order[b * self.batch_size : (b + 1) * self.batch_size]
        x = self.pipeline(self.data.take(sel).to(self.device, non_blocking=True))
        y = None if self.data.labels is None else self.data.labels[sel].to(self.device, non_blocking=True)
        return (x, y, sel.to(self.device)) if with_index else (x, y)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Yield the batches start.. of `epoch`."""
        order = self.order(epoch)
        for b in range(start, self.num_batches):
            yield self.batch(order, b)
