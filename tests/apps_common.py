"""Tiny models and images shared by the application tests."""
from __future__ import annotations

import torch

from genlab import registry
from genlab.data import DataInfo

INFO = DataInfo(1, 8, 8, num_classes=10)
SMALL = {"ae": {"hidden": (16,), "latent_dim": 3}, "vae": {"hidden": (16,), "latent_dim": 3},
         "pixelcnn": {"width": 8, "layers": 1}, "nice": {"width": 8, "layers": 1}}


def tiny(name: str, info: DataInfo = INFO, **over):
    """Model `name` at a tiny size (SMALL, then `over`), seeded, in eval mode."""
    cfg = registry.get(name).config_cls(**{**SMALL.get(name, {}), **over})
    torch.manual_seed(0)
    return registry.build(name, cfg, info).eval()


def images(n: int = 20, seed: int = 0, c: int = 1) -> torch.Tensor:
    return torch.rand(n, c, 8, 8, generator=torch.Generator().manual_seed(seed))
