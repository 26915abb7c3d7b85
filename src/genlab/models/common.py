"""Pieces of the model contract shared by several families."""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

from ..data import to_unit
from ..errors import UserError
from ..optim import make_optimizer


class SingleLoss:
    """Mixin: `losses(x, y) -> {"loss": scalar, ...terms}` is all a model defines to be trainable."""

    def configure_optimizers(self, cfg) -> dict[str, torch.optim.Optimizer]:
        return {"main": make_optimizer(self.parameters(), cfg)}

    def train_step(self, batch, opts, step: int) -> dict[str, torch.Tensor]:
        x, y = batch
        out = self.losses(x, y)
        opts["main"].step(out["loss"])
        return {k: v.detach() for k, v in out.items()}


class CycledLabels:
    """Mixin for models with an optional class condition: `_labels(y, n, device)` is None for an unconditional
    model, y itself when given, else the classes in turn (0, 1, ..., K-1, 0, ...) for n generated images."""

    conditional = False
    num_classes = 0

    def _labels(self, y: torch.Tensor | None, n: int, device) -> torch.Tensor | None:
        if not self.conditional:
            return None
        return torch.arange(n, device=device) % self.num_classes if y is None else y.to(device)


def class_count(model: str, asked: int, info) -> int:
    """The classes a labelled model works with: `asked` (its model.num_classes) or, for 0, the data's; UserError
    for fewer than two, or for data with more classes than asked."""
    k = asked or info.num_classes
    if k < 2:
        raise UserError(f"{model} needs labelled data with at least 2 classes "
                        f"(this dataset has {'no labels' if not info.num_classes else '1 class'})")
    if info.num_classes > k:
        raise UserError(f"model.num_classes={k} but the data have {info.num_classes} classes")
    return k


def require_binary(name: str, info) -> None:
    """UserError unless the run's images are binarised (and not dequantised)."""
    if info.binarized == "none":
        raise UserError(f"{name} models binary images: set data.binarize=dynamic (or static)")
    if info.dequantized:
        raise UserError(f"{name} models binary images: turn data.dequantize off")


class BinaryImages:
    """Mixin for models of binary pixels (NADE, MADE, the RBM): images <-> flat 0/1 vectors."""

    conditional = False
    binary_only = True  # refuses grey or dequantised data (require_binary in __init__)

    def _bits(self, x: torch.Tensor) -> torch.Tensor:
        """Data-range images -> their binary pixels, B x D."""
        return (to_unit(x, self.info) > 0.5).to(x.dtype).flatten(1)

    def _images(self, v: torch.Tensor) -> torch.Tensor:
        """Values in [0, 1], B x D -> images B x C x H x W in the data range."""
        v = v.view(len(v), *self.info.shape)
        return v * 2 - 1 if self.info.range == "-11" else v


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """No parameter gradients for `modules` inside the block (gradients still flow through them)."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


class DiscriminatorHealth:
    """Mixin for adversarial models: warn when a sigmoid discriminator wins outright (D(real) > 0.99 and
    D(fake) < 0.01) in at least 90% of the last 100 steps, judged from step 50 on, so that a short run is warned
    as well as a long one.

    `_track_health(terms)` reads the logged D(real) and D(fake) probabilities; models whose discriminator
    outputs are not probabilities (WGAN critics, hinge) set `tracks_d_probs = False`.
    """

    HEALTH_WINDOW, HEALTH_SHARE, HEALTH_MIN_STEPS = 100, 0.9, 50
    tracks_d_probs = True
    d_rate_setting = ""  # the config key of the discriminator's own learning rate, where the model has one

    def _track_health(self, terms: dict[str, torch.Tensor]) -> None:
        if not self.tracks_d_probs:
            return
        if not hasattr(self, "_d_won"):
            self._d_won: deque[bool] = deque(maxlen=self.HEALTH_WINDOW)
        self._d_won.append(bool(terms["d_real"] > 0.99) and bool(terms["d_fake"] < 0.01))

    def health(self) -> str | None:
        won = getattr(self, "_d_won", ())
        if len(won) >= self.HEALTH_MIN_STEPS and sum(won) >= self.HEALTH_SHARE * len(won):
            return (f"the discriminator has won outright in at least {self.HEALTH_SHARE:.0%} of the last "
                    f"{self.HEALTH_WINDOW} steps (D(real) > 0.99, D(fake) < 0.01): the generator gets no signal; "
                    f"try loss=nonsaturating, a lower train.lr or a slower discriminator"
                    + (f" ({self.d_rate_setting} below train.lr)" if self.d_rate_setting else ""))
        return None


def all_gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of t (dim 0 may differ between ranks), concatenated in rank order; t itself when
    not distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    sizes = [torch.zeros(1, dtype=torch.long, device=t.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([len(t)], device=t.device))
    most = int(max(s.item() for s in sizes))
    padded = torch.zeros((most, *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: len(t)] = t
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)])
