"""Cached features of real images, per dataset, split, count, load-time transforms and extractor weights.

A second evaluation against the same reference reads the features from disk instead of running the
extractor again (the Inception network takes about half an hour for 10k images on 2 CPU cores).
Files are safetensors under $GENLAB_CACHE/features (default ~/.cache/genlab/features).
"""
from __future__ import annotations

import hashlib
import json

import torch
from safetensors import SafetensorError, safe_open

from ..data import ImageSet
from ..data.registry import BUILTIN
from ..data.sources import cache_dir
from ..files import atomic_write, load_tensors, save_tensors


def cache_key(extractor, data_cfg, split: str, n: int) -> str:
    """Names the features of one reference set: the data settings that change the stored images, and the
    extractor's weights, preprocessing and precision (a change to any of them must not reuse old features)."""
    prep = {k: getattr(data_cfg, k) for k in ("source", "resize", "pad", "grayscale", "binarize")}
    prep["binarize"] = prep["binarize"] == "static"  # static binarisation changes the stored images
    prep["extractor"] = [extractor.preprocess, extractor.precision]
    digest = hashlib.sha1(json.dumps(prep, sort_keys=True).encode()).hexdigest()[:10]
    name = str(data_cfg.source).replace("/", "_").replace(":", "_")[-40:]
    return f"{name}-{split}-{n}-{extractor.identity}-{digest}"


def content_hash(images: torch.Tensor) -> str:
    """SHA-1 of the images' bytes: what a cached file's features were computed from."""
    return hashlib.sha1(images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _cached(path, content: str, builtin: bool) -> torch.Tensor | None:
    """The cached features when they were computed from these images. Files written before the content hash
    was stored are trusted for the built-in datasets only (packaged, so they cannot change)."""
    if not path.exists():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            stored = (f.metadata() or {}).get("content")
    except (SafetensorError, OSError):  # a damaged cache file is computed again
        return None
    if stored == content or (stored is None and builtin):
        return load_tensors(path)["features"]
    return None


def real_features(extractor, data: ImageSet, data_cfg, split: str, n: int, progress: bool = False) -> torch.Tensor:
    """Features of the first n images of `data` (8-bit values / 255), cached on disk under a name from the
    settings and checked against the images' content, so that a user's file replaced under the same path is
    never scored against the old file's features."""
    n = min(n, len(data))
    path = cache_dir() / "features" / f"{cache_key(extractor, data_cfg, split, n)}.safetensors"
    content = content_hash(data.images[:n])
    feats = _cached(path, content, str(data_cfg.source) in BUILTIN)
    if feats is not None:
        return feats
    images = data.images[:n].float() / 255.0
    feats = extractor.features(images, progress)
    meta = {"extractor": extractor.identity, "content": content}
    atomic_write(path, lambda tmp: save_tensors(tmp, {"features": feats}, meta))
    return feats
