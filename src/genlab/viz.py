"""Pictures: image grids and strips written as PNG with Pillow (no torchvision), and samples exported as a folder of
PNGs or an npz for other tools."""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import UserError
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


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 1,
              row_labels: list[str] | None = None) -> Path:
    """Write a grid of [0, 1] images to a PNG, upscaled by `scale` (nearest) so small images stay legible;
    `row_labels` names each row in a margin on the left."""
    img = Image.fromarray(grid(images, nrow))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    if row_labels:
        img = _label_rows(img, row_labels)
    path = Path(path)
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))
    return path


def _label_rows(img: Image.Image, labels: list[str]) -> Image.Image:
    """The grid with a white margin on its left holding each row's label, centred on the row."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default()
    draw = ImageDraw.Draw(img)
    margin = 8 + max(draw.textbbox((0, 0), t, font=font)[2] for t in labels)
    out = Image.new(img.mode, (img.width + margin, img.height), 255 if img.mode == "L" else (255, 255, 255))
    out.paste(img, (margin, 0))
    draw = ImageDraw.Draw(out)
    row_h = img.height / len(labels)
    for i, text in enumerate(labels):
        box = draw.textbbox((0, 0), text, font=font)
        draw.text((4, i * row_h + (row_h - box[3]) / 2), text, fill=0 if img.mode == "L" else (0, 0, 0), font=font)
    return out


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


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """[0, 1] images N x C x H x W -> uint8 N x H x W x C, the layout image tools and genlab's npz reader take."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_png_dir(images: torch.Tensor, folder: str | Path) -> Path:
    """One 8-bit PNG per image at its own size (00000.png, ...): the folder torch-fidelity and clean-fid read.
    Written into a sibling folder first and renamed, so that an interrupted export leaves no partial folder."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"'{folder}' already exists and is not an empty folder; choose another -o or remove it")
    staging = folder.with_name(f".{folder.name}.partial")
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        pixels = to_uint8_nhwc(images)
        width = max(5, len(str(len(pixels) - 1)))
        for i, p in enumerate(pixels):
            Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p).save(staging / f"{i:0{width}d}.png")
        if folder.exists():
            folder.rmdir()
        os.replace(staging, folder)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"cannot write '{folder}': {e.strerror or e}") from None
    return folder


def save_npz(images: torch.Tensor, path: str | Path) -> Path:
    """The images as one uint8 array N x H x W x C under key 'x' (genlab's npz:FILE source reads it back)."""
    path = Path(path)
    pixels = to_uint8_nhwc(images)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, x=pixels)

    atomic_write(path, write)
    return path


@torch.no_grad()
def stylegan_figures(model, out: Path, generator: torch.Generator | None = None, n: int = 5) -> list[Path]:
    """StyleGAN's three figures, in the data range's [0, 1] view:
    style_mixing.png  rows of n source-A images; in each block the A image takes the coarse (first third of the
                      layers), middle or fine (last third) styles of each of n source-B images (the top row);
    truncation.png    n latents (rows) at psi = 0, 0.25, 0.5, 0.75, 1 (columns): psi = 0 is the mean w's image;
    noise.png         one w under n noise draws, then the per-pixel standard deviation over 32 draws (scaled
                      to its maximum): where the noise acts."""
    from .data.transforms import as_unit

    def view(x):
        return as_unit(model.finish(x), model.info.range)

    out.mkdir(parents=True, exist_ok=True)
    scale = upscale_for_display(model.info.height)
    k = model.synthesis.num_ws
    wa, wb = model.map(model.prior(n, generator)), model.map(model.prior(n, generator))
    noise = [v[:1].expand(n, -1, -1, -1) for v in model.noise(1, generator)]  # one draw for every image
    img_a = view(model.synthesize(model.broadcast(wa), noise))
    img_b = view(model.synthesize(model.broadcast(wb), noise))
    blank = torch.ones_like(img_a[:1])
    rows, labels = [torch.cat([blank, img_b])], ["B"]
    for name, (lo, hi) in (("coarse", (0, k // 3)), ("middle", (k // 3, 2 * k // 3)), ("fine", (2 * k // 3, k))):
        for i in range(n):
            ws = model.broadcast(wa[i : i + 1].expand(n, -1)).clone()
            ws[:, lo:hi] = wb[:, None]  # the B images' styles on these layers
            rows.append(torch.cat([img_a[i : i + 1], view(model.synthesize(ws, noise))]))
            labels.append(f"{name} from B" if i == 0 else "")
    paths = [save_grid(torch.cat(rows), out / "style_mixing.png", nrow=n + 1, scale=scale, row_labels=labels)]
    psis = (0.0, 0.25, 0.5, 0.75, 1.0)
    z = model.prior(n, generator)
    cols = [view(model.synthesize(model.broadcast(model.map(z, psi)), noise)) for psi in psis]
    paths.append(save_grid(torch.stack(cols, 1).flatten(0, 1), out / "truncation.png", nrow=len(psis), scale=scale,
                           row_labels=[f"psi {', '.join(f'{p:g}' for p in psis)}"] + [""] * (n - 1)))
    ws = model.broadcast(model.map(model.prior(1, generator)).expand(32, -1))
    draws = view(model.synthesize(ws, generator=generator))  # 32 noise draws of one w
    std = draws.std(0, keepdim=True)
    std = std / std.max().clamp_min(1e-12)
    paths.append(save_grid(torch.cat([draws[:n], std]), out / "noise.png", nrow=n + 1, scale=scale))
    return paths
