"""Tiny models and images shared by the application tests."""
from __future__ import annotations

import torch

from genlab.cli import main
from genlab.data import DataInfo
from genlab.models import registry

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


def run_cli(capsys, *args):
    """genlab's exit status, stdout and stderr for one command."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def tiny_vae_run(out, latent_dim: int):
    """A one-epoch VAE run on 256 digits, the run folder `genlab apply` reads."""
    assert main(["train", "vae", "--data", "digits", "--limit", "256", "--epochs", "1", "--batch-size", "64",
                 "--set", "model.hidden=(16,)", "--set", f"model.latent_dim={latent_dim}",
                 "--set", "train.eval_images=64", "--out", str(out), "--quiet"]) == 0
    return out
