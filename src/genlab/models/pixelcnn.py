"""PixelCNN (van den Oord et al. 2016a) and Gated PixelCNN (van den Oord et al. 2016b).

    -log p(x) = -sum_i sum_c log p(x_{i,c} | x_{<i}, x_{i,<c})            (nats per image, exact)

PixelCNN: a 7x7 mask-A convolution, then residual blocks (2h -> 1x1 -> h -> 3x3 mask B -> h -> 1x1 -> 2h, the
paper's Fig. 5), then two 1x1 mask-B layers into the head. Stacked 3x3 masks leave a blind spot: pixels above and
to the right of the current one that no path reaches.

Gated PixelCNN removes it with two stacks. The vertical stack sees every row above through (k//2 + 1) x k kernels
and is shifted down one row before it feeds the horizontal stack, which sees the current row to the left through
1 x k masked kernels. Units are gated and optionally class-conditional:

    y = tanh(W_f * x + V_f h) . sigma(W_g * x + V_g h)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..nn.masked import MaskedConv2d
from .autoregressive import AR_DEFAULTS, ARConfig, Autoregressive
from .registry import register

FIRST_KERNEL = 7  # both papers open with a 7x7 (PixelCNN) or 1x7 / 4x7 (gated stacks) masked kernel


def _output_layers(width: int, out: int, colours: int) -> nn.Sequential:
    """ReLU -> 1x1 mask B -> ReLU -> 1x1 mask B: per-pixel mixing into the head's C * P outputs."""
    return nn.Sequential(nn.ReLU(), MaskedConv2d(width, width, 1, "B", colours), nn.ReLU(),
                         MaskedConv2d(width, out, 1, "B", colours))


class ResidualBlock(nn.Module):
    def __init__(self, width: int, colours: int, kernel: int):
        super().__init__()
        half = width // 2
        self.body = nn.Sequential(
            nn.ReLU(), MaskedConv2d(width, half, 1, "B", colours),
            nn.ReLU(), MaskedConv2d(half, half, kernel, "B", colours),
            nn.ReLU(), MaskedConv2d(half, width, 1, "B", colours),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@dataclass
class PixelCNNConfig(ARConfig):
    width: int = 128  # the residual stream (2h); blocks work at h = width / 2
    layers: int = 7  # residual blocks after the 7x7 mask-A layer
    kernel: int = 3


def _check_kernel(k: int) -> None:
    if k < 1 or k % 2 == 0:
        raise UserError(f"model.kernel must be an odd number >= 1, got {k}")


@register("pixelcnn", PixelCNNConfig, AR_DEFAULTS)
class PixelCNN(Autoregressive, nn.Module):
    """PixelCNN: masked convolutions (mask A, then residual mask-B blocks) and an exact per-pixel likelihood."""

    def __init__(self, cfg: PixelCNNConfig, info):
        super().__init__()
        _check_kernel(cfg.kernel)
        self.cfg = cfg
        out = self._setup_head(cfg, info)
        c = info.channels
        self.net = nn.Sequential(
            MaskedConv2d(c, cfg.width, FIRST_KERNEL, "A", c),
            *[ResidualBlock(cfg.width, c, cfg.kernel) for _ in range(cfg.layers)],
            _output_layers(cfg.width, out, c),
        )
        self.receptive_rows = FIRST_KERNEL // 2 + cfg.layers * (cfg.kernel // 2)

    def network(self, inp, y=None):
        return self.net(inp)  # B x C x H x W -> B x C * P x H x W


def _gate(p: torch.Tensor) -> torch.Tensor:
    a, b = p.chunk(2, dim=1)  # B x 2w x H x W -> B x w x H x W
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    def __init__(self, in_ch: int, width: int, colours: int, kernel: int, first: bool, num_classes: int):
        super().__init__()
        self.k, self.first = kernel, first
        self.v_conv = nn.Conv2d(in_ch, 2 * width, (kernel // 2 + 1, kernel))  # ends at the current row
        self.v_to_h = nn.Conv2d(2 * width, 2 * width, 1)  # carries rows strictly above: no channel mask needed
        self.h_conv = MaskedConv2d(in_ch, 2 * width, (1, kernel), "A" if first else "B", colours, out_blocks=2)
        self.h_out = MaskedConv2d(width, width, 1, "B", colours)
        self.cond = nn.Embedding(num_classes, 4 * width) if num_classes else None  # class biases of both stacks

    def forward(self, v: torch.Tensor, h: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.k // 2
        pv = self.v_conv(F.pad(v, (r, r, r, 0)))  # B x 2w x H x W; row i sees rows i - r .. i
        above = F.pad(pv, (0, 0, 1, 0))[:, :, :-1]  # shifted down: row i gets row i - 1
        ph = self.h_conv(h) + self.v_to_h(above)
        if self.cond is not None:
            bv, bh = self.cond(y)[:, :, None, None].chunk(2, dim=1)
            pv, ph = pv + bv, ph + bh
        h_new = self.h_out(_gate(ph))
        return _gate(pv), h_new if self.first else h + h_new  # residual on the horizontal stack


@dataclass
class GatedPixelCNNConfig(ARConfig):
    width: int = 64  # feature maps of each stack
    layers: int = 7
    kernel: int = 3  # after the first layer's 7
    conditional: bool = False  # class-conditional: p(x | y) with a learned bias per class in every gate


@register("gated_pixelcnn", GatedPixelCNNConfig, AR_DEFAULTS)
class GatedPixelCNN(Autoregressive, nn.Module):
    """Gated PixelCNN: vertical and horizontal stacks (no blind spot), gated units, optional class conditioning."""

    def __init__(self, cfg: GatedPixelCNNConfig, info):
        super().__init__()
        _check_kernel(cfg.kernel)
        self.cfg = cfg
        out = self._setup_head(cfg, info)
        c = info.channels
        self.conditional = cfg.conditional
        self.num_classes = info.num_classes if cfg.conditional else 0
        if cfg.conditional and self.num_classes < 2:
            raise UserError("gated_pixelcnn with model.conditional=true needs labelled data with at least 2 classes")
        self.layers = nn.ModuleList(
            GatedLayer(c if i == 0 else cfg.width, cfg.width, c, FIRST_KERNEL if i == 0 else cfg.kernel, i == 0,
                       self.num_classes)
            for i in range(cfg.layers))
        self.out = _output_layers(cfg.width, out, c)
        # the vertical stack reaches k // 2 rows further up per layer; the shift adds one
        self.receptive_rows = 1 + FIRST_KERNEL // 2 + (cfg.layers - 1) * (cfg.kernel // 2)

    def network(self, inp, y=None):
        v = h = inp
        for layer in self.layers:
            v, h = layer(v, h, y)
        return self.out(h)  # B x C * P x H x W
