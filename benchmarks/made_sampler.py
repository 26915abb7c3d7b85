"""MADE's sampler: genlab's chain (the masked weights formed once per mask, the first layer's pre-activations
updated by the drawn pixel's column, only that pixel's output computed) against the direct form (one full masked
forward pass per pixel), on the same model and generator state.

    python benchmarks/made_sampler.py --hidden 8000 --masks 4 --n 16 --threads 1

Prints the seconds of each, their ratio, and whether both drew the same images.
"""
from __future__ import annotations

import argparse
import time

import torch

from genlab.data import DataInfo
from genlab.models import registry


@torch.no_grad()
def direct_sample(model, n: int, generator: torch.Generator) -> torch.Tensor:
    """One full pass of the masked MLP per pixel, the same draws in the same order as MADE.sample; -> n x D bits."""
    v = torch.zeros(n, model.info.dim)
    pick = torch.randint(model.cfg.masks, (n,), generator=generator)
    for k in range(model.cfg.masks):
        rows = (pick == k).nonzero().flatten()
        if len(rows) == 0:
            continue
        vk = v[rows]
        for i in getattr(model, f"order_{k}").tolist():
            vk[:, i] = torch.bernoulli(torch.sigmoid(model.conditional_logits(vk, k)[:, i]), generator=generator)
        v[rows] = vk
    return v


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, nargs="+", default=[8000])
    p.add_argument("--masks", type=int, default=4)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = registry.get("made").config_cls(hidden=tuple(args.hidden), masks=args.masks)
    model = registry.build("made", cfg, DataInfo(1, 28, 28, range="01", binarized="dynamic")).eval()
    start = time.perf_counter()
    chain = model.sample(args.n, generator=torch.Generator().manual_seed(0)).flatten(1)
    chain_s = time.perf_counter() - start
    start = time.perf_counter()
    direct = direct_sample(model, args.n, torch.Generator().manual_seed(0))
    direct_s = time.perf_counter() - start
    print(f"MADE {args.hidden}, {args.masks} masks, {args.n} images of 28 x 28, {args.threads} thread(s)")
    print(f"genlab chain {chain_s:.2f} s, direct {direct_s:.1f} s, ratio {direct_s / chain_s:.0f}; "
          f"same images: {bool(torch.equal(chain, direct))}")


if __name__ == "__main__":
    main()
