"""Optimizers: the settings every run shares (`train.optimizer`, `train.lr`, ...) and the optimizer they build.

Below the models, which build their own optimizers from these settings (a GAN one per player, with its own
rate), and below the trainer, which schedules and steps them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import check_choice, check_positive
from .errors import UserError, unknown

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}
SCHEDULES = ("constant", "cosine", "linear", "half-linear")


@dataclass
class OptimConfig:
    optimizer: str = "adam"  # adam | adamw | sgd | rmsprop
    lr: float = 1e-3  # base learning rate (the schedule scales it)
    beta1: float = 0.9  # Adam's first-moment decay (GANs: 0.5; WGAN-GP: 0)
    beta2: float = 0.999  # Adam's second-moment decay
    weight_decay: float = 0.0  # L2 penalty (adamw: decoupled decay)
    momentum: float = 0.0  # sgd / rmsprop
    # constant | cosine | linear (decay to 0 over the run, after warmup) | half-linear (constant for the first half,
    # then linear decay to 0: pix2pix, CycleGAN)
    schedule: str = "constant"
    warmup_steps: int = 0  # linear ramp of the rate from 0 over these steps
    grad_clip: float = 0.0  # max global grad norm; 0 = off

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise unknown("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("train.schedule", self.schedule, SCHEDULES)
        check_positive("train.lr", self.lr)
        check_positive("train.grad_clip", self.grad_clip, allow_zero=True)
        check_positive("train.warmup_steps", self.warmup_steps, allow_zero=True)
        check_positive("train.weight_decay", self.weight_decay, allow_zero=True)
        check_positive("train.momentum", self.momentum, allow_zero=True)
        for name in ("beta1", "beta2"):  # Adam's moment decays
            value = getattr(self, name)
            if not 0 <= value < 1:  # also false for nan
                raise UserError(f"train.{name} is a decay in [0, 1), got {value}")


def make_optimizer(params, cfg: OptimConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """The configured optimizer over `params` (lr overrides cfg.lr, for two time-scale models)."""
    lr = cfg.lr if lr is None else lr
    cls = OPTIMIZERS[cfg.optimizer]
    if cfg.optimizer in ("adam", "adamw"):
        return cls(params, lr=lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    return cls(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
