"""NADE's prefix sums a_d = c + sum_(d' < d) W[:, o(d')] x_o(d'): the cumulative sum over a B x D x H tensor
(the direct form) against genlab's blocks of 28 positions (models/fvbn.py), forward and backward, same inputs.

    python benchmarks/nade_prefix.py --batch 128 --repeats 5 --threads 1

Prints the best seconds of each over --repeats calls, their ratio, and the largest difference of the logits.
"""
from __future__ import annotations

import argparse
import time

import torch

from genlab.data import DataInfo
from genlab.models import registry


def cumsum_logits(model, v: torch.Tensor) -> torch.Tensor:
    """The direct form: one B x D x H tensor of W[:, o(d)] x_o(d), summed cumulatively."""
    vo = v[:, model.order]
    step = vo.unsqueeze(2) * model.W[:, model.order].t()  # B x D x H
    a = model.c + step.cumsum(1) - step
    lo = torch.einsum("bdh,dh->bd", torch.sigmoid(a), model.V[model.order]) + model.b[model.order]
    return torch.empty_like(lo).index_copy_(1, model.order, lo)


def timed(fn, v) -> float:
    t = time.perf_counter()
    fn(v).sum().backward()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = registry.build("nade", registry.get("nade").config_cls(), DataInfo(1, 28, 28, binarized="dynamic"))
    v = torch.bernoulli(torch.full((args.batch, 784), 0.13))
    ways = {"cumsum": lambda x: cumsum_logits(model, x), "blocks": model.conditional_logits}
    best = {k: min(timed(f, v) for _ in range(args.repeats)) for k, f in ways.items()}
    with torch.no_grad():
        diff = float((ways["cumsum"](v) - ways["blocks"](v)).abs().max())
    print(f"NADE (D = 784, H = 500), batch {args.batch}, {args.threads} thread(s), forward + backward, best of "
          f"{args.repeats}: cumsum {best['cumsum']:.3f} s, blocks {best['blocks']:.3f} s, "
          f"ratio {best['cumsum'] / best['blocks']:.2f}; largest logit difference {diff:.2e}")


if __name__ == "__main__":
    main()
