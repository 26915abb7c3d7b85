"""ProGAN and StyleGAN training throughput: genlab's Trainer against the smallest hand-written loop on the same
networks and data (MNIST padded to 32 px, data in [-1, 1]).

    python benchmarks/progressive_throughput.py --steps 100 --repeats 3

ProGAN at its full resolution (32 x 32, alpha 1: model.phase_images=1 puts it there at once): per batch, a
WGAN-GP critic step with the drift term, then a generator step, on genlab's own G and D modules. StyleGAN
without style mixing and with lazy R1 every 16 steps on both sides: per batch, the logistic D loss on
g(f(z)) and the real images (plus R1 on the 16th), then the non-saturating G loss. Both sides use Adam at the
models' rates; genlab's side is Trainer.fit() with max_steps, no grids, no monitor, no EMA. Measured alternately,
medians of --repeats; prints images/s and the ratio.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from timing import alternate, report, time_fit  # benchmarks/ is the script's folder

from genlab.data import info_for, load, prepare
from genlab.losses import gradient_penalty
from genlab.models import registry
from genlab.run import compose

BATCH = 32
SETTINGS = {"progan": ["model.phase_images=1"], "stylegan": ["model.mixing=0"]}


def plain_progan(m, X: torch.Tensor, steps: int) -> float:
    opt_d = torch.optim.Adam(m.D.parameters(), 1e-3, betas=(0.0, 0.99))
    opt_g = torch.optim.Adam(m.G.parameters(), 1e-3, betas=(0.0, 0.99))
    top = m.levels - 1
    t = time.perf_counter()
    for i in range(steps):
        x = X[torch.randint(0, len(X), (BATCH,))]
        fake = m.G(torch.randn(BATCH, m.cfg.latent_dim), top, 1.0).detach()
        d_real, d_fake = m.D(x, top, 1.0), m.D(fake, top, 1.0)
        gp = gradient_penalty(lambda v: m.D(v, top, 1.0), x, fake)
        loss_d = d_fake.mean() - d_real.mean() + 10 * gp + 0.001 * d_real.pow(2).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = -m.D(m.G(torch.randn(BATCH, m.cfg.latent_dim), top, 1.0), top, 1.0).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    return time.perf_counter() - t


def plain_stylegan(m, X: torch.Tensor, steps: int) -> float:
    g_params = [*m.mapping.parameters(), *m.synthesis.parameters()]
    opt_d = torch.optim.Adam(m.D.parameters(), 2e-3, betas=(0.0, 0.99))
    opt_g = torch.optim.Adam(g_params, 2e-3, betas=(0.0, 0.99))
    t = time.perf_counter()
    for i in range(steps):
        x = X[torch.randint(0, len(X), (BATCH,))]
        with torch.no_grad():
            fake = m.synthesize(m.broadcast(m.map(torch.randn(BATCH, m.cfg.latent_dim))))
        r1 = i % 16 == 0
        x.requires_grad_(r1)
        d_real = m.D(x, m.top, 1.0)
        loss_d = F.softplus(m.D(fake, m.top, 1.0)).mean() + F.softplus(-d_real).mean()
        if r1:
            (grad,) = torch.autograd.grad(d_real.sum(), x, create_graph=True)
            loss_d = loss_d + 16 * m.cfg.r1_gamma / 2 * grad.pow(2).flatten(1).sum(1).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        for p in m.D.parameters():
            p.requires_grad_(False)
        loss_g = F.softplus(-m.D(m.synthesize(m.broadcast(m.map(torch.randn(BATCH, m.cfg.latent_dim)))),
                                 m.top, 1.0)).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        for p in m.D.parameters():
            p.requires_grad_(True)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", default="progan,stylegan")
    args = p.parse_args()
    for name in args.models.split(","):
        run = compose(name, flags={"data": {"source": "mnist", "pad": 2},
                                   "train": {"batch_size": BATCH, "samples": 0, "monitor_modes": False, "ema": 0.0,
                                             "ckpt_every": 10**9}}, overrides=SETTINGS[name])
        train = prepare(load("mnist").train, run.data)
        X = train.images.float() / 127.5 - 1  # 60000 x 1 x 32 x 32 in [-1, 1]
        info = info_for(train, run.data)
        loop = plain_progan if name == "progan" else plain_stylegan

        def genlab_side(steps):
            run.train.max_steps = steps
            return time_fit(run)

        def plain_side(steps, seed):
            torch.manual_seed(seed)
            m = registry.build(name, run.model_cfg, info)
            return loop(m, X, steps)

        plain_side(10, 0)  # warm-up
        genlab_side(10)
        times = alternate(lambda r: plain_side(args.steps, r), lambda r: genlab_side(args.steps), args.repeats)
        report(f"{name} on MNIST padded to 32x32, batch {BATCH}, {args.steps} steps", times, args.steps * BATCH)


if __name__ == "__main__":
    main()
