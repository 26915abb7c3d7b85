"""DCGAN training throughput: genlab's Trainer against the smallest hand-written loop, same networks and data.

    python benchmarks/gan_throughput.py --steps 300 --repeats 3

Both sides train genlab's `dcgan` (non-saturating loss, Adam 2e-4 / beta1 0.5, batch 64) on MNIST in
[-1, 1]. The plain loop: per batch, a discriminator step on real and G(z).detach() with
BCE-with-logits, then a generator step with -log D(G(z)); nothing else. genlab: Trainer.fit() with
max_steps, no sample grids, no mode monitor, no test eval (so the loop itself is compared). Measured
alternately, medians of --repeats; prints images/s and the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from timing import time_fit  # benchmarks/ is the script's folder

from genlab.data import load
from genlab.models import registry
from genlab.run import compose

BATCH = 64


def plain(model, X: torch.Tensor, steps: int) -> float:
    """The hand-written loop on genlab's own G, D and head; returns seconds."""
    opt_d = torch.optim.Adam([*model.D.parameters(), *model.d_out.parameters()], 2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(model.G.parameters(), 2e-4, betas=(0.5, 0.999))
    perm = torch.randperm(len(X))
    t = time.perf_counter()
    for i in range(steps):
        x = X[perm[(i * BATCH) % (len(X) - BATCH):][:BATCH]]
        z = torch.randn(BATCH, model.cfg.latent_dim)
        fake = torch.tanh(model.G(z))
        real_logit = model.d_out(model.D(x)).squeeze(1)
        fake_logit = model.d_out(model.D(fake.detach())).squeeze(1)
        loss_d = F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit)) + \
            F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        out = model.d_out(model.D(torch.tanh(model.G(torch.randn(BATCH, model.cfg.latent_dim))))).squeeze(1)
        loss_g = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    return time.perf_counter() - t


def genlab_fit(steps: int) -> float:
    return time_fit(compose("dcgan", flags={"data": {"source": "mnist"},
                                            "train": {"batch_size": BATCH, "max_steps": steps, "samples": 0,
                                                      "monitor_modes": False, "ckpt_every": 10**9}}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    mnist = load("mnist").train
    X = mnist.images.float() / 127.5 - 1
    run = compose("dcgan", flags={"data": {"source": "mnist"}})
    from genlab.data import info_for

    info = info_for(mnist, run.data)
    times = {"plain": [], "genlab": []}
    torch.manual_seed(0)
    plain(registry.build("dcgan", run.model_cfg, info), X, 20)  # warm-up
    genlab_fit(20)
    for r in range(args.repeats):
        for name in (("plain", "genlab") if r % 2 == 0 else ("genlab", "plain")):
            torch.manual_seed(r)
            times[name].append(plain(registry.build("dcgan", run.model_cfg, info), X, args.steps)
                               if name == "plain" else genlab_fit(args.steps))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"dcgan on MNIST 28x28, batch {BATCH}, {args.steps} steps, {args.repeats} repeats, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for k, v in med.items():
        print(f"  {k:7s} {v:7.2f} s  {args.steps * BATCH / v:7.1f} images/s  (runs: {', '.join(f'{t:.2f}' for t in times[k])})")
    print(f"  ratio genlab / plain = {med['genlab'] / med['plain']:.3f}")


if __name__ == "__main__":
    main()
