"""How a GAN's first few hundred steps go: D(x), D(G(z)), the generator's loss and the share of generated pixels
at the output's rails (|x| > 0.99 on [-1, 1], where tanh passes no gradient back), every --every steps.

    python benchmarks/gan_saturation.py --data folder:/tmp/mnist64 --steps 250               # the defaults
    python benchmarks/gan_saturation.py --data folder:/tmp/mnist64 --set model.init=dcgan    # the paper's init

The model's own train_step on shuffled batches of the training split (seed 0), no trainer around it; the
generator's outputs are checked on 64 fixed draws in eval mode. Prints one line per check.
"""
from __future__ import annotations

import argparse
import time

import torch

from genlab.data import Batches, Pipeline, info_for, load, prepare
from genlab.models import registry
from genlab.run import compose
from genlab.train.optim import Stepper

RAIL = 0.99


@torch.no_grad()
def rails(model, z: torch.Tensor) -> tuple[float, float]:
    """Share of the generator's pixels at the rails, and their mean, for the draws z."""
    model.eval()
    x = model.decode(z)
    model.train()
    return float((x.abs() > RAIL).float().mean()), float(x.mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="dcgan")
    p.add_argument("--data", required=True, help="a genlab source, e.g. folder:DIR or mnist")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.NAME=VALUE")
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--every", type=int, default=25)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()

    run = compose(args.model, flags={"data": {"source": args.data}}, overrides=args.set)
    data = prepare(load(args.data).train, run.data)
    info = info_for(data, run.data)
    torch.manual_seed(0)
    model = registry.build(args.model, run.model_cfg, info)
    opts = {k: Stepper(o, 0.0, None, 1) for k, o in model.configure_optimizers(run.train).items()}
    batches = Batches(data, Pipeline(run.data), args.batch, shuffle=True)
    z = model.prior(64, torch.Generator().manual_seed(1))
    share, mean = rails(model, z)
    print(f"{args.model} {' '.join(args.set) or 'defaults'} on {args.data} ({info.height} px), batch {args.batch}")
    print(f"step    0  rails {share:.3f}  mean {mean:+.3f}")
    start, step, epoch = time.perf_counter(), 0, 0
    while step < args.steps:
        for batch in batches.epoch(epoch):
            out = model.train_step(batch, opts, step)
            step += 1
            if step % args.every == 0:
                share, mean = rails(model, z)
                terms = "  ".join(f"{k} {float(out[k]):.3f}" for k in ("d_real", "d_fake", "loss_g") if k in out)
                print(f"step {step:4d}  {terms}  rails {share:.3f}  mean {mean:+.3f}  "
                      f"{time.perf_counter() - start:.0f} s", flush=True)
            if step >= args.steps:
                break
        epoch += 1


if __name__ == "__main__":
    main()
