"""Masked convolutions for autoregressive image models (van den Oord et al. 2016a, section 3.4).

The image is generated in raster order, and within a pixel in colour order R, G, B. A masked kernel lets
the output at (i, j) see the rows above, the pixels to the left in row i, and at (i, j) itself only
earlier colour channels:

    mask A (first layer):  channel group c sees input groups < c at the centre tap
    mask B (later layers): channel group c sees input groups <= c at the centre tap

Feature maps are split into as many groups as the image has channels (feature f of n belongs to group
f * C // n), so channel c's predictions come from group c and never see channel c's own value.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MASK_TYPES = ("A", "B")


def channel_groups(n: int, colours: int, blocks: int = 1) -> torch.Tensor:
    """Colour group of each of n features; `blocks` equal slices are grouped independently (gated units'
    tanh and sigmoid halves must pair up feature by feature). -> n."""
    per = n // blocks
    return (torch.arange(n) % per) * colours // per


def causal_mask(out_ch: int, in_ch: int, kh: int, kw: int, mask_type: str, colours: int,
                out_blocks: int = 1) -> torch.Tensor:
    """out_ch x in_ch x kh x kw mask of 0/1 for a kernel centred at (kh // 2, kw // 2).

    Taps in rows above the centre, or left of it in the centre row, are open; taps after it are closed;
    the centre tap follows the channel groups (mask A: strictly earlier groups, mask B: up to the same).
    """
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask type must be A or B, got {mask_type!r}")
    ci, cj = kh // 2, kw // 2
    mask = torch.zeros(out_ch, in_ch, kh, kw)
    mask[:, :, :ci] = 1  # rows above
    mask[:, :, ci, :cj] = 1  # left in the centre row
    g_out = channel_groups(out_ch, colours, out_blocks).view(-1, 1)
    g_in = channel_groups(in_ch, colours).view(1, -1)
    mask[:, :, ci, cj] = (g_in < g_out).float() if mask_type == "A" else (g_in <= g_out).float()
    return mask


class MaskedConv2d(nn.Conv2d):
    """A same-size convolution whose kernel is multiplied by a causal mask (a buffer) on every call."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int | tuple[int, int], mask_type: str, colours: int,
                 out_blocks: int = 1):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        super().__init__(in_ch, out_ch, (kh, kw), padding=(kh // 2, kw // 2))
        self.register_buffer("mask", causal_mask(out_ch, in_ch, kh, kw, mask_type, colours, out_blocks),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)
