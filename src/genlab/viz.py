"""Pictures: image grids and strips written as PNG with Pillow (no torchvision)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .files import atomic_write


def grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """B x C x H x W floats in [0, 1] -> one H' x W' x C uint8 array, nrow images per row."""
    images = images.detach().float().cpu().clamp(0, 1)
    b, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(b))
    rows = math.ceil(b / nrow)
    canvas = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value)
    for i in range(b):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[:, top : top + h, left : left + w] = images[i]
    arr = (canvas * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # C x H' x W' -> H' x W' x C
    return arr[..., 0] if c == 1 else arr


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 1) -> Path:
    """Write a grid of [0, 1] images to a PNG, upscaled by `scale` (nearest) so small images stay legible."""
    img = Image.fromarray(grid(images, nrow))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))
    return path


def upscale_for_display(side: int) -> int:
    """A nearest-neighbour factor that makes small images (8x8, 28x28) comfortable to look at."""
    return max(1, 96 // side) if side < 48 else 1


def _frame(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as im:
            return im.convert("P", palette=Image.ADAPTIVE)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def save_animation(frames: list[Path], path: str | Path, ms_per_frame: int = 400) -> Path | None:
    """An animated GIF of PNG frames (e.g. the per-epoch sample grids), the last frame held longer. Frames that
    cannot be read (deleted or damaged since they were written) are left out."""
    images = [im for im in map(_frame, frames) if im is not None]
    if not images:
        return None
    durations = [ms_per_frame] * (len(images) - 1) + [ms_per_frame * 4]
    path = Path(path)
    atomic_write(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                                  duration=durations, loop=0))
    return path
