"""In-memory image datasets.

Every source yields `ImageSet`s: uint8 tensors N x C x H x W (0..255) with optional int64 labels.
Keeping the raw 8-bit values makes the likelihood conventions explicit: a model sees floats only after
`transforms.Pipeline` maps them to its stated range, binarisation or dequantisation.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import UserError


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor | None = None  # int64, N
    classes: list[str] | None = None  # class names, index = label
    paired: bool = False  # each image is an (input, target) pair: channels [0, C/2) the input, [C/2, C) the target
    # for images mapped from a file (prepared:DIR): reads the images at given indices from the file itself, so
    # batches never map the file's pages into the process
    reader: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels is not None:
            if self.labels.shape != (len(self.images),):
                raise UserError(
                    f"found {len(self.labels)} labels for {len(self.images)} images: the counts must match"
                )
            self.labels = self.labels.long()

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            return 0
        if self.classes:
            return len(self.classes)
        return int(self.labels.max().item()) + 1 if len(self.labels) else 0

    def subset(self, n: int | None) -> "ImageSet":
        if n is None or n >= len(self):
            return self
        labels = None if self.labels is None else self.labels[:n]
        return ImageSet(self.images[:n], labels, self.classes, self.paired, self.reader)

    def take(self, index: torch.Tensor) -> torch.Tensor:
        """The images at `index` (int64, B): B x C x H x W uint8."""
        return self.reader(index) if self.reader is not None else self.images[index]


@dataclass
class Splits:
    """A dataset's splits as the source provides them; `test` is None where the source has none."""

    train: ImageSet
    test: ImageSet | None = None
    name: str = ""

    def __post_init__(self):
        if self.test is not None and self.test.shape != self.train.shape:
            raise UserError(
                f"{self.name or 'dataset'}: train images are {self.train.shape} but test images are "
                f"{self.test.shape}; all images must have one size"
            )


@dataclass
class DataInfo:
    """What a model needs to know of its data; stored in config.json so a run can be rebuilt."""

    channels: int
    height: int
    width: int
    num_classes: int = 0
    range: str = "01"  # "01" -> [0, 1], "-11" -> [-1, 1]
    binarized: str = "none"  # none | dynamic | static
    num_train: int = 0  # training images (models with one parameter per image, e.g. GLO, need it)
    dequantized: bool = False  # 8-bit levels spread by uniform noise (densities); discrete models refuse it
    paired: bool = False  # (input, target) pairs stacked on the channels (pairs:DIR): image-to-image models only

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def validate(self) -> None:
        """UserError for sizes no data has (a config.json edited by hand, or damaged)."""
        for name in ("channels", "height", "width"):
            if not 1 <= getattr(self, name) <= 2**20:
                raise UserError(f"info.{name} must be a size from 1 to {2**20:,}, got {getattr(self, name)}: the run's "
                                f"config.json is damaged")
        for name in ("num_classes", "num_train"):
            if getattr(self, name) < 0:
                raise UserError(f"info.{name} must be >= 0, got {getattr(self, name)}: the run's config.json is "
                                f"damaged")

    @property
    def dim(self) -> int:
        return self.channels * self.height * self.width
