"""The `prepared:DIR` source: a dataset `genlab prepare` decoded into memory-mapped files (data/prepare.py writes
them). DIR holds, per split, `SPLIT.u8` (the uint8 images, N x C x H x W, C order, no header) and
`SPLIT_labels.npy` (int64, when labelled), and `index.json` (the shape and count of each split, the class names,
the source). Batches are read straight from the mapped file and nothing is decoded or copied whole: the
operating system pages the images in as batches touch them. Those pages are clean file pages the kernel can drop
under memory pressure, but they count in the process's resident set until it does: a run over a set larger than
the machine's memory works, and its measured RSS grows with the pages an epoch has touched.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .base import ImageSet, Splits
from .registry import user

INDEX_VERSION = 1


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
        images = torch.from_numpy(np.memmap(file, dtype=np.uint8, mode="c", shape=(n, *shape)))  # pages on demand
        labels = None
        if entry.get("labels"):
            labels = torch.from_numpy(np.load(path / f"{split}_labels.npy", allow_pickle=False))
        sets[split] = ImageSet(images, labels, index.get("classes"))
    if "train" not in sets:
        raise UserError(f"'{path}' has no training split")
    return Splits(sets["train"], sets.get("test"), f"prepared:{path}")
