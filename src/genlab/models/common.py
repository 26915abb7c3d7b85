"""Pieces of the model contract shared by families trained with one optimizer on one loss."""
from __future__ import annotations

import torch

from ..train.optim import make_optimizer


class SingleLoss:
    """Mixin: `losses(x, y) -> {"loss": scalar, ...terms}` is all a model defines to be trainable."""

    def configure_optimizers(self, cfg) -> dict[str, torch.optim.Optimizer]:
        return {"main": make_optimizer(self.parameters(), cfg)}

    def train_step(self, batch, opts, step: int) -> dict[str, torch.Tensor]:
        x, y = batch
        out = self.losses(x, y)
        opts["main"].step(out["loss"])
        return {k: v.detach() for k, v in out.items()}
