"""Exponential moving average of a model's weights: theta_ema <- d_t * theta_ema + (1 - d_t) * theta.

d_t = min(d, (1 + t) / (10 + t)) at update t (warm-up as in TensorFlow's ExponentialMovingAverage): without it
the average keeps weight d^t on the random initialisation, 39% after 937 steps at d = 0.999, and a GAN's early
samples and mode-coverage checks read noise instead of the generator.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p, 1.0 - decay)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)
