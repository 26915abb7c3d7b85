"""Corruptions for denoising, inpainting, colourisation and the inputs of image-to-image models: x in [lo, hi] ->
corrupted x of the same shape.

`level` is each corruption's one knob, in [0, 1]: the noise std (as a fraction of the range), the fraction of
pixels hit, the side of the masked block (as a fraction of the image side), the edge threshold, the blur's
sigma (as a fraction of the image side), or the fraction of the resolution lost by downsampling. `LEVELS`
holds each one's default.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

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


SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4  # a 0 -> 1 step gives 1


def edges(x: torch.Tensor, level: float, lo: float, hi: float, g: torch.Generator | None = None) -> torch.Tensor:
    """An edge map (the input of pix2pix's edges -> image task): hi where the Sobel gradient magnitude of the
    grey image, on [0, 1] pixels, exceeds `level`, lo elsewhere; the same map on every channel."""
    b, c, h, w = x.shape
    grey = ((x - lo) / (hi - lo)).mean(1, keepdim=True)  # B x 1 x H x W in [0, 1]
    kernels = torch.stack([SOBEL, SOBEL.T])[:, None].to(x)  # 2 x 1 x 3 x 3: d/dx, d/dy
    grad = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)  # B x 2 x H x W
    edge = grad.pow(2).sum(1, keepdim=True).sqrt() > level
    return torch.where(edge, hi, lo).to(x.dtype).expand(b, c, h, w).contiguous()


def blur(x: torch.Tensor, level: float, lo: float, hi: float, g: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian blur of standard deviation sigma = level * min(H, W) pixels (replicated borders; the kernel
    reaches 3 sigma); level 0 leaves the image."""
    b, c, h, w = x.shape
    sigma = level * min(h, w)
    if sigma <= 0:
        return x.clone()
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()  # 2r + 1 taps
    v = F.pad(x.reshape(b * c, 1, h, w), (r, r, r, r), mode="replicate")
    v = F.conv2d(F.conv2d(v, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))  # separable: rows, then columns
    return v.view(b, c, h, w)


def downsample(x: torch.Tensor, level: float, lo: float, hi: float, g: torch.Generator | None = None) -> torch.Tensor:
    """Resolution lost (the input of super-resolution): the image shrunk to (1 - level) of its side by area
    averaging, then brought back to its size by bicubic interpolation (clipped to the range): level 0.75 is
    4x super-resolution, and this input is also the classical baseline, bicubic upsampling."""
    h, w = x.shape[-2:]
    small = (max(1, round((1 - level) * h)), max(1, round((1 - level) * w)))
    low = F.interpolate(x, size=small, mode="area")
    return F.interpolate(low, size=(h, w), mode="bicubic", align_corners=False).clamp(lo, hi)


CORRUPTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian": gaussian,
    "salt_pepper": salt_pepper,
    "mask": pixel_mask,
    "block": block_mask,
    "half": half_mask,
    "gray": grayscale,
    "edges": edges,
    "blur": blur,
    "downsample": downsample,
}
# each corruption's default level (half has no knob; gray's 1 drains all the colour)
LEVELS = {"gaussian": 0.3, "salt_pepper": 0.1, "mask": 0.3, "block": 0.4, "half": 0.0, "gray": 1.0, "edges": 0.25,
          "blur": 0.05, "downsample": 0.75}


def corrupt(name: str, x: torch.Tensor, level: float, range_: str, g: torch.Generator | None = None) -> torch.Tensor:
    if name not in CORRUPTIONS:
        raise unknown("corruption", name, CORRUPTIONS)
    lo, hi = (0.0, 1.0) if range_ == "01" else (-1.0, 1.0)
    return CORRUPTIONS[name](x, level, lo, hi, g)
