"""Layers of the progressive and style-based GANs (Karras et al. 2018, 2019).

Equalised learning rate: weights are drawn from N(0, 1) and scaled at run time by He's constant
c = gain / sqrt(fan_in), so that Adam's per-parameter step sizes move every layer at the same speed:

    y = (c W) x + b,   W ~ N(0, I),   c = sqrt(2) / sqrt(fan_in)  (gain 1 for the linear toRGB layers)

Pixelwise feature normalisation (G): b_xy = a_xy / sqrt(mean_j (a_xy^j)^2 + 1e-8), over the channels j.
Minibatch standard deviation (D): the standard deviation of each feature at each position over the group,
averaged over features and positions into one number, appended as a constant extra channel.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EqualizedLinear(nn.Module):
    """Linear layer with the equalised learning rate; `lr_mul` also scales the rate (StyleGAN's mapping net)."""

    def __init__(self, d_in: int, d_out: int, gain: float = math.sqrt(2), bias: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_out, d_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((d_out,), float(bias)))
        self.scale, self.lr_mul = gain / math.sqrt(d_in) * lr_mul, lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualizedConv2d(nn.Module):
    """k x k convolution (same padding) with the equalised learning rate."""

    def __init__(self, c_in: int, c_out: int, k: int, gain: float = math.sqrt(2), padding: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.scale = gain / math.sqrt(c_in * k * k)
        self.padding = k // 2 if padding is None else padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each pixel's feature vector scaled to unit root mean square over the channels; B x C x ... -> same."""
    return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + eps)


def minibatch_stddev(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """x: B x C x H x W -> B x (C + 1) x H x W, the extra channel holding the mean over features and positions of
    each feature's standard deviation within the image's group of `group` images (the whole batch if smaller or
    not dividing it)."""
    b, c, h, w = x.shape
    g = group if b % group == 0 and b >= group else b
    y = x.view(g, b // g, c, h, w)  # groups interleave: image i is in group i % (b // g)
    std = (y - y.mean(0, keepdim=True)).pow(2).mean(0).add(1e-8).sqrt()  # (B/g) x C x H x W
    s = std.mean((1, 2, 3)).view(-1, 1, 1, 1).repeat(g, 1, h, w)  # B x 1 x H x W
    return torch.cat([x, s], 1)


def resolution_channels(res: int, base: int, most: int) -> int:
    """Feature maps at resolution `res`: min(most, base / (res / 2)), halving as the side doubles (the paper: base
    8192, at most 512, so 512 up to 32 px and 256 at 64 px), and at least 1."""
    return max(1, min(most, int(2 * base / res)))


class Canvas:
    """The square power-of-two canvas the progressive and style-based generators draw on: side 2^k >= 4 covering the
    data's H x W, the data centred on it with the range's low end around, and the feature maps per resolution."""

    def __init__(self, height: int, width: int, lo: float, hi: float):
        self.side = max(4, 2 ** math.ceil(math.log2(max(height, width))))
        self.levels = int(math.log2(self.side)) - 1  # resolutions 4, 8, ..., side
        self.height, self.width, self.lo, self.hi = height, width, lo, hi
        self.top, self.left = (self.side - height) // 2, (self.side - width) // 2

    def channels(self, base: int, most: int) -> list[int]:
        return [resolution_channels(4 * 2**i, base, most) for i in range(self.levels)]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Data-sized images -> the canvas (already canvas-sized images pass unchanged)."""
        h, w = x.shape[-2:]
        top, left = (self.side - h) // 2, (self.side - w) // 2
        return F.pad(x, (left, self.side - w - left, top, self.side - h - top), value=self.lo)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """Canvas-sized output -> the data's size, clamped to its range."""
        return x[..., self.top : self.top + self.height, self.left : self.left + self.width].clamp(self.lo, self.hi)
