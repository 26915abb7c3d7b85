"""Corruptions for denoising and inpainting: x in [lo, hi] -> corrupted x of the same shape.

`level` is each corruption's one knob: the noise std (as a fraction of the range), the fraction of
pixels hit, or the side of the masked block (as a fraction of the image side).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import unknown


def gaussian(x: torch.Tensor, level: float, lo: float, hi: float, g: torch.Generator | None = None) -> torch.Tensor:
    """x + N(0, (level * (hi - lo))^2), clipped to the range."""
    noise = torch.randn(x.shape, generator=g, device=x.device) * (level * (hi - lo))
    return (x + noise).clamp(lo, hi)


def salt_pepper(x: torch.Tensor, level: float, lo: float, hi: float, g: torch.Generator | None = None) -> torch.Tensor:
    """A fraction `level` of pixels set to lo or hi with equal chance (per pixel, all channels)."""
    b, _, h, w = x.shape
    u = torch.rand((b, 1, h, w), generator=g, device=x.device)
    salt = torch.rand((b, 1, h, w), generator=g, device=x.device) < 0.5
    hit = u < level
    out = torch.where(hit & salt, torch.full_like(x, hi), x)
    return torch.where(hit & ~salt, torch.full_like(x, lo), out)


def pixel_mask(x: torch.Tensor, level: float, lo: float, hi: float, g: torch.Generator | None = None) -> torch.Tensor:
    """A fraction `level` of pixels set to lo (masking noise, as in Vincent et al. 2008)."""
    b, _, h, w = x.shape
    keep = torch.rand((b, 1, h, w), generator=g, device=x.device) >= level
    return torch.where(keep, x, torch.full_like(x, lo))


def block_mask(x: torch.Tensor, level: float, lo: float, hi: float, g: torch.Generator | None = None) -> torch.Tensor:
    """One square block of side level * min(H, W) per image, at a random place, set to lo."""
    b, _, h, w = x.shape
    side = max(1, round(level * min(h, w)))
    top = torch.randint(0, h - side + 1, (b,), generator=g).tolist()
    left = torch.randint(0, w - side + 1, (b,), generator=g).tolist()
    out = x.clone()
    for i, (t, l) in enumerate(zip(top, left)):
        out[i, :, t : t + side, l : l + side] = lo
    return out


def half_mask(x: torch.Tensor, level: float, lo: float, hi: float, g: torch.Generator | None = None) -> torch.Tensor:
    """The bottom half of every image set to lo (the 'complete the image' task); `level` is unused."""
    out = x.clone()
    out[:, :, x.shape[2] // 2 :, :] = lo
    return out


def grayscale(x: torch.Tensor, level: float, lo: float, hi: float, g: torch.Generator | None = None) -> torch.Tensor:
    """Colour drained towards the channel mean: x + level (mean_c(x) - x); level 1 leaves grey in every channel
    (a colourisation model's input). One-channel images are unchanged."""
    return x + level * (x.mean(1, keepdim=True) - x)


CORRUPTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian": gaussian,
    "salt_pepper": salt_pepper,
    "mask": pixel_mask,
    "block": block_mask,
    "half": half_mask,
    "gray": grayscale,
}


def corrupt(name: str, x: torch.Tensor, level: float, range_: str, g: torch.Generator | None = None) -> torch.Tensor:
    if name not in CORRUPTIONS:
        raise unknown("corruption", name, CORRUPTIONS)
    lo, hi = (0.0, 1.0) if range_ == "01" else (-1.0, 1.0)
    return CORRUPTIONS[name](x, level, lo, hi, g)
