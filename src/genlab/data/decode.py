"""`genlab prepare SRC --out DIR`: decode a source once into the memory-mapped files of `prepared:DIR`
(data/prepared.py reads them). Image folders are decoded in parallel worker processes, a chunk at a time, and
written as they come: the folder never sits in memory whole.
"""
from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import UserError
from .prepared import INDEX_VERSION
from .sources import load

CHUNK = 512  # images per worker task


def _has_colour(files: list[str]) -> bool:
    """Worker: whether any of these images has colour, from the file headers (nothing is decoded)."""
    from PIL import Image

    from .readers import _GRAY_MODES

    for f in files:
        try:
            with Image.open(f) as im:
                if im.mode not in _GRAY_MODES:
                    return True
        except Exception as e:  # PIL raises many types on a damaged file
            raise UserError(f"cannot open image '{f}': {e}") from None
    return False


def _decode_chunk(job: tuple[list[str], bool]) -> np.ndarray:
    """Worker: decode image files to one uint8 array N x C x H x W (C = 3 when `colour`, else 1)."""
    from .readers import _open_image

    files, colour = job
    out = []
    for f in files:
        p = _open_image(Path(f))
        p = p[..., None] if p.ndim == 2 else p
        out.append(np.repeat(p, 3, axis=2) if colour and p.shape[2] == 1 else p)
        if out[-1].shape != out[0].shape:
            (h0, w0), (h, w) = out[0].shape[:2], p.shape[:2]
            raise UserError(f"images differ in size: '{files[0]}' is {w0}x{h0} but '{f}' is {w}x{h} "
                            f"(width x height); resize them to one size first")
    return np.stack(out).transpose(0, 3, 1, 2)


def _write_split(out: Path, split: str, images, labels, shape, progress) -> dict:
    """Stream uint8 chunks (N x C x H x W) into SPLIT.u8; -> the split's index entry."""
    n = 0
    with open(out / f"{split}.u8", "wb") as f:
        for chunk in images:
            if tuple(chunk.shape[1:]) != tuple(shape):
                raise UserError(f"the {split} images differ in size: {' x '.join(map(str, chunk.shape[2:]))} "
                                f"against {' x '.join(map(str, shape[1:]))} (height x width); resize them to one "
                                f"size first")
            f.write(np.ascontiguousarray(chunk, dtype=np.uint8).tobytes())
            n += len(chunk)
            progress(n)
    if labels is not None:
        np.save(out / f"{split}_labels.npy", np.asarray(labels, dtype=np.int64))
    return {"n": n, "labels": labels is not None}


def _chunks(files: list[Path]) -> list[list[str]]:
    return [[str(f) for f in files[i : i + CHUNK]] for i in range(0, len(files), CHUNK)]


def _folder_chunks(pool: ProcessPoolExecutor, files: list[Path], colour: bool):
    """Decoded images of `files`, in order, CHUNK at a time, as N x C x H x W uint8."""
    yield from pool.map(_decode_chunk, [(c, colour) for c in _chunks(files)])


def prepare_source(spec: str, out: str | Path, workers: int = 0, progress=lambda n: None) -> dict:
    """Decode source `spec` into DIR (module docstring); returns the index. Written into a sibling folder first
    and renamed, so an interrupted run leaves no half-written DIR."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"'{out}' already exists and is not an empty folder; choose another --out or remove it")
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    index = {"version": INDEX_VERSION, "source": spec, "splits": {}}
    try:
        if spec.startswith("folder:"):
            index.update(_prepare_folder(Path(spec.split(":", 1)[1]).expanduser(), staging, workers, progress))
        elif spec.startswith("hf:"):
            index.update(_prepare_hf(Path(spec.split(":", 1)[1]).expanduser(), staging, progress))
        else:
            splits = load(spec)
            parts = {"train": splits.train, "test": splits.test}
            index["shape"] = list(splits.train.shape)
            index["classes"] = splits.train.classes
            for name, s in parts.items():
                if s is None:
                    continue
                chunks = (s.images[i : i + 4096].numpy() for i in range(0, len(s), 4096))
                labels = None if s.labels is None else s.labels.numpy()
                index["splits"][name] = _write_split(staging, name, chunks, labels, s.shape, progress)
        (staging / "index.json").write_text(json.dumps(index, indent=2))
        if out.exists():
            out.rmdir()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return index


def _prepare_hf(path: Path, staging: Path, progress) -> dict:
    """A Hugging Face dataset on disk, decoded a slice at a time (the datasets library maps its Arrow files)."""
    from .readers import hf_chunks, hf_labels, load_hf

    train, test = load_hf(path)
    first = next(hf_chunks(train.select(range(min(1, len(train)))), f"'{path}' train"), None)
    if first is None:
        raise UserError(f"'{path}' train holds no images")
    shape, splits, classes = first.shape[1:], {}, None
    for split, ds in (("train", train), ("test", test)):
        if ds is None:
            continue
        labels, names = hf_labels(ds, f"'{path}' {split}", len(ds))
        classes = classes or names
        splits[split] = _write_split(staging, split, hf_chunks(ds, f"'{path}' {split}"),
                                     None if labels is None else labels.numpy(), shape, progress)
    return {"shape": list(shape), "classes": classes, "splits": splits}


def _prepare_folder(root: Path, staging: Path, workers: int, progress) -> dict:
    """An image folder (the layouts of `folder:DIR`), grey unless any image has colour, as the folder reader."""
    from .readers import _list_split, _open_image

    if not root.is_dir():
        raise UserError(f"folder: needs a folder, but '{root}' is not one")
    dirs = [root / "train", root / "test"] if (root / "train").is_dir() and (root / "test").is_dir() else [root]
    listed = {d.name if d != root else "train": _list_split(d) for d in dirs}
    classes = listed["train"][2]
    every = [f for files, _, _ in listed.values() for f in files]
    splits = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        colour = any(pool.map(_has_colour, _chunks(every)))
        side = _open_image(every[0]).shape[:2]
        shape = (3 if colour else 1, *side)
        for split, (files, names, split_classes) in listed.items():
            extra = sorted(set(split_classes) - set(classes))
            if extra:
                raise UserError(f"'{root / split}' has class folders not in the training split: {', '.join(extra)}")
            labels = None if names is None else [classes.index(n) for n in names]
            splits[split] = _write_split(staging, split, _folder_chunks(pool, files, colour), labels, shape, progress)
    return {"shape": list(shape), "classes": classes or None, "splits": splits}


