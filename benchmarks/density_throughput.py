"""Training throughput of an explicit-density model: genlab's Trainer against the smallest hand-written loop.

    python benchmarks/density_throughput.py --model pixelcnn --steps 200 --repeats 3 --threads 1
    python benchmarks/density_throughput.py --model glow --steps 100 --repeats 3 --threads 1
    python benchmarks/density_throughput.py --model ddpm --set model.width=32 --steps 20 --repeats 3 --threads 1

Both sides train the same genlab network (built from the model's registered defaults, `--set` overrides
applied to both) on full MNIST at batch 64 with Adam at the registered learning rate. The data transform is
the model's default, written out by hand on the plain side: dynamic binarisation (torch.bernoulli(u / 255))
for the autoregressive models, uniform dequantisation ((u + U(0, 1)) / 256) for flows, u / 127.5 - 1 for DDPM.
The plain loop per batch: `model.losses(x)["loss"]`, zero_grad, backward, step; nothing else. genlab: Trainer.fit() with
max_steps, no sample grids and no test eval, so the loops themselves are compared. Runs alternate
(plain, genlab; genlab, plain; ...); prints medians in images/s and the ratio genlab / plain in seconds.
"""
from __future__ import annotations

import argparse
import time

import torch
from timing import alternate, report, time_fit  # benchmarks/ is the script's folder

from genlab.config import parse_overrides
from genlab.data import info_for, load
from genlab.models import registry
from genlab.run import compose

BATCH = 64


def transform(run):
    """The default data transform of the run, by hand."""
    if run.data.binarize == "dynamic":
        return lambda u: torch.bernoulli(u / 255.0)
    if run.data.dequantize:
        return lambda u: (u + torch.rand_like(u)) / 256.0
    if run.data.range == "-11":  # DDPM's pixels in [-1, 1]
        return lambda u: u / 127.5 - 1.0
    return lambda u: u / 255.0


def plain(run, info, U: torch.Tensor, steps: int) -> float:
    model = registry.build(run.model, run.model_cfg, info)
    opt = torch.optim.Adam(model.parameters(), run.train.lr)
    f = transform(run)
    perm = torch.randperm(len(U))
    t = time.perf_counter()
    for i in range(steps):
        x = f(U[perm[(i * BATCH) % (len(U) - BATCH):][:BATCH]])
        loss = model.losses(x)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="pixelcnn")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--set", action="append", default=[], help="model/train overrides for both sides")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    mnist = load("mnist").train
    U = mnist.images.float()

    def run_for(steps):
        return compose(args.model, flags={"data": {"source": "mnist"},
                                          "train": {"batch_size": BATCH, "max_steps": steps, "samples": 0,
                                                    "eval_test": False, "ckpt_every": 10**9}},
                       overrides=args.set)

    run = run_for(args.steps)
    info = info_for(mnist, run.data)
    plain(run, info, U, 5)  # warm-up
    time_fit(run_for(5))
    times = alternate(lambda r: plain(run, info, U, args.steps), lambda r: time_fit(run), args.repeats)
    report(f"{args.model} {parse_overrides(args.set) or ''} on MNIST 28x28, batch {BATCH}, {args.steps} steps", times,
           args.steps * BATCH)


if __name__ == "__main__":
    main()
