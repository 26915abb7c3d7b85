"""What every autoregressive image model shares: the exact likelihood, sequential sampling and completion.

    log p(x) = sum_i sum_c log p(x_{i,c} | x_{<i}, x_{i,<c})        raster order over pixels i, then R, G, B

A subclass supplies `network(inp, y) -> B x C * P x H x W`, a causal network whose outputs at pixel i see only
earlier pixels (and earlier channels of pixel i), and `receptive_rows`: how many rows above a row can reach
its outputs (None when a recurrence carries the whole past). The head (nn/heads.py) turns the outputs into
per-sub-pixel log-probabilities and draws values.

Sampling runs the network once per sub-pixel (C * H * W times). Two savings are exact: rows below the one being
drawn cannot reach it, so they are never computed, and a network with a finite `receptive_rows` R only needs
the R rows above.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

from ..config import check_choice, check_positive
from ..data import to_unit
from ..errors import UserError
from ..nn.heads import HEADS
from .common import CycledLabels, SingleLoss


@dataclass
class ARConfig:
    width: int = 64  # feature maps
    layers: int = 7
    head: str = "auto"  # auto (bernoulli on binarised data, else categorical) | bernoulli | categorical | logistic_mixture
    mixtures: int = 5  # components per sub-pixel for the logistic_mixture head

    def validate(self) -> None:
        check_choice("model.head", self.head, ("auto", *HEADS))
        check_positive("model.width", self.width)
        check_positive("model.layers", self.layers)
        check_positive("model.mixtures", self.mixtures)


# binarised MNIST, the papers' benchmark; Adam at PixelCNN++'s 1e-3; a 16-image epoch grid, as sampling is sequential
AR_DEFAULTS = {"data": {"binarize": "dynamic"}, "train": {"lr": 1e-3, "samples": 16}}


class Autoregressive(CycledLabels, SingleLoss):
    """Mixin for nn.Modules that define `network` and `receptive_rows`; call `_setup_head` first in __init__."""

    receptive_rows: int | None = None

    def _setup_head(self, cfg: ARConfig, info) -> int:
        """Pick the head for the data; returns the network's output channels C * P."""
        if info.dequantized:
            raise UserError(f"{self.registry_name} models 8-bit values exactly; turn data.dequantize off "
                            f"(dequantisation is for continuous densities such as flows)")
        name = cfg.head if cfg.head != "auto" else ("bernoulli" if info.binarized != "none" else "categorical")
        if name == "bernoulli" and info.binarized == "none":
            raise UserError("model.head=bernoulli needs binarised data: set data.binarize=dynamic (or static), "
                            "or model.head=categorical for 8-bit images")
        self.head_name, self.head, self.info = name, HEADS[name](cfg), info
        return info.channels * self.head.params

    def _targets(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data-range images -> (head targets, network input on [-1, 1]), both B x C x H x W."""
        t = self.head.target(to_unit(x, self.info))
        return t, (self.head.unit(t) * 2 - 1).to(x.dtype)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x) in nats per image of the discrete image (levels or bits); -> B."""
        t, inp = self._targets(x)
        return self.head.log_prob(self.network(inp, self._labels(y, len(x), x.device)), t).flatten(1).sum(1)

    def losses(self, x, y=None):
        nll = -self.log_prob(x, y).mean()
        return {"loss": nll, "bits_per_dim": nll / (self.info.dim * math.log(2))}

    def _from_unit(self, v: torch.Tensor) -> torch.Tensor:
        return v * 2 - 1 if self.info.range == "-11" else v

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """n images drawn sub-pixel by sub-pixel (C * H * W network calls); -> n x C x H x W in the data range."""
        device = next(self.parameters()).device
        return self._fill(torch.zeros(n, *self.info.shape, device=device), 0, generator, self._labels(y, n, device))

    @torch.no_grad()
    def complete(self, x: torch.Tensor, rows: int, generator: torch.Generator | None = None,
                 y: torch.Tensor | None = None) -> torch.Tensor:
        """Keep the top `rows` rows of x and draw the rest from p(rest | top): image completion, the
        inpainting these models can do exactly. -> B x C x H x W in the data range."""
        if not 0 <= rows < self.info.height:
            raise UserError(f"rows to keep must be in [0, {self.info.height - 1}], got {rows}")
        return self._fill(self.head.unit(self._targets(x)[0]), rows, generator, self._labels(y, len(x), x.device))

    def _fill(self, v: torch.Tensor, start_row: int, generator, y) -> torch.Tensor:
        """Draw every sub-pixel from row `start_row` on; v holds values on [0, 1], B x C x H x W."""
        c, h, w = self.info.shape
        with tqdm(total=(h - start_row) * w * c, unit="subpixel", desc="sampling", disable=None, leave=False) as bar:
            return self._from_unit(self._draw(v.clone(), start_row, generator, y, bar))

    def _draw(self, v: torch.Tensor, start_row: int, generator, y, bar) -> torch.Tensor:
        """The sampler itself, in place on v: one network pass per sub-pixel, cropped to the rows that reach it."""
        c, h, w = self.info.shape
        p = self.head.params
        for i in range(start_row, h):
            lo = 0 if self.receptive_rows is None else max(0, i - self.receptive_rows)
            for j in range(w):
                for ch in range(c):
                    out = self.network(v[:, :, lo:i + 1] * 2 - 1, y)[:, :, -1, j]  # B x C * P (row i, column j)
                    v[:, ch, i, j] = self.head.sample(out[:, ch * p:(ch + 1) * p], generator)
                    bar.update()
        return v
