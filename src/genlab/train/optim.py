"""The trainer's stepping policy.

A model's `configure_optimizers(cfg)` returns plain torch optimizers (built with `genlab.optim`); the trainer
wraps each in a `Stepper`, and the model's `train_step` calls `opts["main"].step(loss)`. The Stepper holds what
the trainer owns: backward, gradient averaging across data-parallel ranks, gradient clipping, fp16 loss scaling,
the learning-rate schedule and the EMA update. The model's step stays readable top to bottom.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn

from ..optim import OptimConfig


def lr_factor(cfg: OptimConfig, step: int, total: int) -> float:
    """Multiplier of the base learning rate at `step` (0-based) of `total` steps."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant" or total <= cfg.warmup_steps:
        return 1.0
    t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)  # 0 -> 1 over the steps after warmup
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "half-linear":
        return min(1.0, 2 * (1 - t))
    return max(0.0, 1 - t)


class Stepper:
    """One optimizer plus the trainer's policies; `step(loss)` is one complete update."""

    def __init__(self, optimizer: torch.optim.Optimizer, grad_clip: float = 0.0,
                 scaler: torch.amp.GradScaler | None = None, world: int = 1):
        self.optimizer = optimizer
        self.grad_clip = grad_clip
        self.scaler = scaler
        self.world = world
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.last_grad_norm: torch.Tensor | None = None

    def set_lr_factor(self, f: float) -> None:
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def _allreduce_grads(self) -> None:
        """Average gradients over data-parallel ranks in one flat buffer (what DDP's buckets do)."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n

    def apply(self) -> None:
        """Update the parameters from the gradients already accumulated."""
        if self.world > 1:
            self._allreduce_grads()
        if self.grad_clip:
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
            self.last_grad_norm = nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def step(self, loss: torch.Tensor) -> None:
        """zero_grad, backward, (all-reduce, clip,) step."""
        self.zero_grad()
        self.backward(loss)
        self.apply()
