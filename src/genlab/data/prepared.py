"""The `prepared:DIR` source: a dataset `genlab prepare` decoded into files (data/decode.py writes them). DIR holds,
per split, `SPLIT.u8` (the uint8 images, N x C x H x W, C order, no header) and `SPLIT_labels.npy` (int64, when
labelled), and `index.json` (the shape and count of each split, the class names, the source).

Nothing is decoded or copied whole. The training loader reads each batch's images with positional reads (the
kernel's file cache serves them), so nothing of the file is mapped into the training process and its memory does
not grow with the set; other readers (the applications, evaluation) index a memory mapping of the file. A
transform that rewrites the images (resize, pad, grey, static binarisation) copies them into memory.
"""
from __future__ import annotations

import json
import os
import weakref
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .base import ImageSet, Splits
from .registry import user

INDEX_VERSION = 1


def _file_reader(file: Path, shape: tuple[int, ...]):
    """index (int64, B) -> the images at those positions, B x C x H x W uint8, read with one pread each: nothing of
    the file is mapped into the process (a mapped read pulls in a whole large folio, up to megabytes, per image)."""
    size = int(np.prod(shape))
    fd = os.open(file, os.O_RDONLY)

    def read(index: torch.Tensor) -> torch.Tensor:
        buf = bytearray(len(index) * size)
        view = memoryview(buf)
        for i, k in enumerate(index.tolist()):
            view[i * size : (i + 1) * size] = os.pread(fd, size, k * size)
        return torch.frombuffer(buf, dtype=torch.uint8).view(len(index), *shape)

    weakref.finalize(read, os.close, fd)  # the file closes with the last reference to its reader
    return read


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
        sets[split] = ImageSet(images, labels, index.get("classes"), reader=_file_reader(file, shape))
    if "train" not in sets:
        raise UserError(f"'{path}' has no training split")
    return Splits(sets["train"], sets.get("test"), f"prepared:{path}")
