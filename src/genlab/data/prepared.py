"""The `prepared:DIR` source: a dataset `genlab prepare` decoded into memory-mapped files (data/prepare.py writes
them). DIR holds, per split, `SPLIT.u8` (the uint8 images, N x C x H x W, C order, no header) and
`SPLIT_labels.npy` (int64, when labelled), and `index.json` (the shape and count of each split, the class names,
the source). Batches are read straight from the mapped file and nothing is decoded or copied whole: the
operating system pages the images in as batches touch them, and after each batch the loader drops the pages read
from the process (MADV_DONTNEED; they stay in the kernel's file cache), so a run's memory does not grow with the
set. A transform that rewrites the images (resize, pad, grey, static binarisation) copies them into memory.
"""
from __future__ import annotations

import json
import mmap
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .base import ImageSet, Splits
from .registry import user

INDEX_VERSION = 1


def _releaser(mapped: np.memmap):
    """Drop the mapping's pages from this process (MADV_DONTNEED): they stay in the kernel's file cache, and the
    next read of an image maps its page again; None where the platform has no madvise."""
    mm = getattr(mapped, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return None
    return lambda: mm.madvise(mmap.MADV_DONTNEED)


@user("prepared", "a source decoded by genlab prepare: memory-mapped uint8 files, read a batch at a time")
def prepared(path: Path) -> Splits:
    if not (path / "index.json").is_file():
        raise UserError(f"'{path}' holds no index.json: make it with genlab prepare SRC --out {path}")
    try:
        index = json.loads((path / "index.json").read_text())
        shape, entries = tuple(int(v) for v in index["shape"]), index["splits"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise UserError(f"'{path / 'index.json'}' is not an index genlab prepare wrote") from None
    sets = {}
    for split, entry in entries.items():
        file = path / f"{split}.u8"
        n = int(entry["n"])
        size = n * int(np.prod(shape))
        if not file.is_file() or file.stat().st_size != size:
            raise UserError(f"'{file}' should hold {n:,} images of {' x '.join(map(str, shape))} ({size:,} bytes); "
                            f"it is missing or damaged: run genlab prepare again")
        mapped = np.memmap(file, dtype=np.uint8, mode="c", shape=(n, *shape))
        images = torch.from_numpy(mapped)  # pages read on demand
        labels = None
        if entry.get("labels"):
            labels = torch.from_numpy(np.load(path / f"{split}_labels.npy", allow_pickle=False))
        sets[split] = ImageSet(images, labels, index.get("classes"), release=_releaser(mapped))
    if "train" not in sets:
        raise UserError(f"'{path}' has no training split")
    return Splits(sets["train"], sets.get("test"), f"prepared:{path}")
