"""Which sampling prior fits a trained VAE's codes? One VAE run's posteriors on all training images, scored by
what the codes drawn from each prior decode to.

    python benchmarks/latent_priors.py RUN --epochs 10 --every 2 --lr 1e-3

Rows: the posterior draws z ~ q(z | x) themselves (the target any prior fitted to q(z) aims at), the posterior
means (the reconstructions), N(0, I), a 10-component Gaussian mixture on 10,000 means (model.prior=mixture), and
Dai & Wipf's second-stage VAE (model.prior=two-stage) every `--every` epochs of its fit. Columns: the Frechet
distance between the prior's codes and 5,000 posterior draws in the latent space, and the domain FID of 5,000
decoded samples against the first 5,000 test images (FID-5k reads higher than the 10,000-image protocol).
"""
from __future__ import annotations

import argparse
import time

import torch

from genlab.data import Batches, Pipeline, to_unit
from genlab.metrics.frechet import fid_from_features
from genlab.metrics.sample_quality import fid_between
from genlab.models.latent_prior import GaussianMixtureLatents, SecondStageVAE
from genlab.run import load_model, split_images

N = 5000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--every", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model, cfg = load_model(a.run)
    train = Batches(split_images(cfg, "train"), Pipeline(cfg.data), 500, shuffle=False, drop_last=False)
    mu, sd = model.posteriors(train.epoch(0))  # N x d each
    test, _ = next(Batches(split_images(cfg, "test").subset(N), Pipeline(cfg.data), N, shuffle=False).epoch(0))
    test = to_unit(test, cfg.info)
    g = torch.Generator().manual_seed(0)
    draws = mu[:N] + sd[:N] * torch.randn(N, mu.shape[1], generator=g)
    print(f"{a.run}: codes {tuple(mu.shape)}, {int((sd.mean(0) < 0.5).sum())} dimensions with a mean posterior sd "
          f"below 0.5\n\n| codes from | latent FD to q(z) | domain FID-5k of the decoded |\n|---|---|---|")

    def row(name: str, z: torch.Tensor) -> None:
        with torch.no_grad():
            images = to_unit(model.decode(z), cfg.info)
        print(f"| {name} | {fid_from_features(z.numpy(), draws.numpy()):.3f} | {fid_between(images, test):.1f} |",
              flush=True)

    row("posterior draws z ~ q(z | x)", draws)
    row("posterior means (reconstructions)", mu[:N])
    row("N(0, I)", torch.randn(N, mu.shape[1], generator=g))
    mix = GaussianMixtureLatents(mu.shape[1], 10)
    mix.fit(mu[:10000])
    row("mixture, 10 components", mix.sample(N, g))
    torch.manual_seed(0)
    stage = SecondStageVAE(mu.shape[1], a.width, 3, a.every, a.lr, a.batch_size)
    start = time.perf_counter()
    for epoch in range(a.every, a.epochs + 1, a.every):
        loss = stage.fit(mu, sd, seed=epoch)
        row(f"two-stage, epoch {epoch} (-ELBO {loss:.2f}, gamma {float(stage.log_gamma.exp()):.3f}, "
            f"{time.perf_counter() - start:.0f} s)", stage.sample(N, torch.Generator().manual_seed(1)))


if __name__ == "__main__":
    main()
