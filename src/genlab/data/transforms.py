"""Transforms between 8-bit images and the float tensors models see.

Two stages, so likelihood conventions stay explicit:
- load time, on uint8 (done once): resize, pad, static binarisation (one fixed Bernoulli draw per pixel);
- batch time, on float: x = u/255 in [0, 1]; then dynamic binarisation (a fresh draw every batch),
  or uniform dequantisation x = (u + U(0,1)) / 256; then scaling to [-1, 1] if asked.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import check_choice
from ..errors import UserError, check_memory
from .base import DataInfo, ImageSet

BINARIZE = ("none", "dynamic", "static")
RANGES = {"01": (0.0, 1.0), "-11": (-1.0, 1.0)}  # each data range: (lo, hi)
STATIC_BINARIZATION_SEED = 20160601  # fixed, so every run sees the same static draw


@dataclass
class DataConfig:
    source: str = "mnist"  # mnist | digits | idx:DIR | cifar:DIR | folder:DIR | npz:FILE
    range: str = "01"  # the models' pixel range: 01 = [0, 1] | -11 = [-1, 1] (GANs' tanh)
    binarize: str = "none"  # none | dynamic (a fresh Bernoulli draw per batch) | static (one fixed draw)
    dequantize: bool = False  # uniform noise in each 8-bit bin: continuous densities on 8-bit data (flows)
    resize: int = 0  # 0 keeps the size; else square side in pixels (bilinear)
    pad: int = 0  # zero padding on each side, e.g. 2 turns 28x28 into 32x32
    grayscale: bool = False  # average colour channels to one
    limit: int = 0  # 0 = all; else train on the first N images
    target: str = ""  # a second source: two unpaired domains (labels 0 = source, 1 = target) for CycleGAN
    classes: str = ""  # keep only these classes of a labelled source, e.g. "3" or "0,1,2" or "0-4" (both splits)
    exclude_classes: str = ""  # ... or drop these (train an anomaly detector on the normal classes)

    def validate(self) -> None:
        check_choice("data.range", self.range, tuple(RANGES))
        check_choice("data.binarize", self.binarize, BINARIZE)
        if self.binarize != "none" and self.dequantize:
            raise UserError("data.binarize and data.dequantize exclude each other: binary data has no bins to fill")
        for name in ("classes", "exclude_classes"):
            parse_classes(getattr(self, name), f"data.{name}")
        if self.classes and self.exclude_classes:
            raise UserError("data.classes and data.exclude_classes exclude each other: give one list")
        if self.target and self.target == self.source:
            raise UserError(f"data.target names the same source as data.source ('{self.source}'): the two domains "
                            f"of unpaired translation must differ")
        for name in ("resize", "pad", "limit"):
            if getattr(self, name) < 0:
                raise UserError(f"data.{name} must be >= 0, got {getattr(self, name)}")


def parse_classes(spec: str, setting: str = "data.classes") -> set[int]:
    """'3', '0,1,2', '0-4' or '0-2,7' -> the class indices; '' -> none."""
    out: set[int] = set()
    for part in (p.strip() for p in str(spec).split(",") if p.strip()):
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise UserError(f"{setting} takes class numbers and ranges such as 3, 0,1,2 or 0-4; got '{spec}'") from None
        if a < 0 or b < a:
            raise UserError(f"{setting}: '{part}' is not a range of class numbers (low-high, from 0)")
        out |= set(range(a, b + 1))
    return out


def select_classes(images: ImageSet | None, cfg: DataConfig, what: str) -> ImageSet | None:
    """The images of the classes data.classes keeps (or data.exclude_classes leaves); labels stay as they are."""
    keep, drop = parse_classes(cfg.classes), parse_classes(cfg.exclude_classes, "data.exclude_classes")
    if images is None or not (keep or drop):
        return images
    if images.labels is None:
        raise UserError(f"data.classes and data.exclude_classes need a labelled source, and {what} has no labels")
    chosen = keep or set(range(images.num_classes)) - drop
    mask = torch.isin(images.labels, torch.tensor(sorted(chosen), dtype=torch.long))
    if not mask.any():
        raise UserError(f"no image of {what} is in the classes kept ({', '.join(map(str, sorted(chosen))) or 'none'})")
    return ImageSet(images.images[mask], images.labels[mask], images.classes, images.paired)


def prepare(images: ImageSet, cfg: DataConfig) -> ImageSet:
    """Load-time transforms on uint8 images; returns a new ImageSet."""
    x = images.images
    n, c, h, w = x.shape
    side_h, side_w = (cfg.resize, cfg.resize) if cfg.resize else (h, w)
    side_h, side_w = side_h + 2 * cfg.pad, side_w + 2 * cfg.pad
    # the resize runs on float32 copies of the whole set
    check_memory(f"data.resize={cfg.resize}, data.pad={cfg.pad} ({n:,} images of {c} x {side_h} x {side_w})",
                 n * c * side_h * side_w * (4 if cfg.resize else 1), "lower data.resize or data.pad, or data.limit")
    if cfg.grayscale and x.shape[1] > (2 if images.paired else 1):
        halves = x.chunk(2, 1) if images.paired else (x,)  # a pair's input and target each turn grey
        x = torch.cat([h.float().mean(1, keepdim=True).round().to(torch.uint8) for h in halves], 1)
    if cfg.resize:
        x = F.interpolate(x.float(), size=(cfg.resize, cfg.resize), mode="bilinear", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255).to(torch.uint8)
    if cfg.pad:
        x = F.pad(x, (cfg.pad,) * 4)
    if cfg.binarize == "static":
        g = torch.Generator().manual_seed(STATIC_BINARIZATION_SEED)
        x = (torch.rand(x.shape, generator=g) < x.float() / 255).to(torch.uint8) * 255
    # a mapped set keeps its file reader only if no transform copied it into memory
    return ImageSet(x, images.labels, images.classes, images.paired, images.reader if x is images.images else None)


class Pipeline:
    """Batch-time transform: uint8 batch -> float batch in the configured range."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        if self.cfg.dequantize:
            # (u + U(0,1)) / 256 lies in bin [u/256, (u+1)/256); float32 rounding can reach the top edge,
            # so cap just below it (the edge itself, 1.0 for u = 255, would make logit(x) infinite)
            x = u.float()
            top = (x + 1) / 256.0
            x = torch.minimum((x + torch.rand_like(x)) / 256.0, torch.nextafter(top, torch.zeros_like(top)))
        else:
            x = u / 255.0  # uint8 -> float32 in one pass
        if self.cfg.binarize == "dynamic":
            x = torch.bernoulli(x)
        if self.cfg.range == "-11":
            x = x * 2 - 1
        return x


def as_unit(x: torch.Tensor, range_: str) -> torch.Tensor:
    """Floats in data range `range_` ("01" or "-11") -> [0, 1] for display and pixel metrics."""
    return ((x + 1) / 2 if range_ == "-11" else x).clamp(0, 1)


def to_unit(x: torch.Tensor, info: DataInfo) -> torch.Tensor:
    """Model-range floats -> [0, 1] for display and pixel metrics."""
    return as_unit(x, info.range)


def info_for(images: ImageSet, cfg: DataConfig, *others: ImageSet | None) -> DataInfo:
    """The data's description for the models, from the training images; the class count covers `others` too (a
    test split may hold a class the training images lack)."""
    c, h, w = images.shape
    classes = max(s.num_classes for s in (images, *others) if s is not None)
    return DataInfo(c, h, w, classes, cfg.range, cfg.binarize, len(images), cfg.dequantize, images.paired)
