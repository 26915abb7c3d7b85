"""genlab's U-Net against diffusers' UNet2DModel of the same configuration: seconds per forward pass (sampling)
and per forward and backward pass (training), the two networks taking turns.

    pip install diffusers          # the benchmark's only use of it
    python benchmarks/unet_speed.py --threads 1 --repeats 5 [--profile]

Both networks: the DDPM recipe's U-Net (benchmarks/diffusers_compare.py: widths 32, 64, 64, attention at 14 and 7
px, genlab's group counts, no dropout; 1,707,009 parameters each), 28 x 28 inputs, fp32. Sampling: no grad, batch
--sample-batch; training: batch --train-batch, loss = mean square of the output, backward. --profile prints each
network's ten most expensive operators (self CPU time) for one training pass.
"""
from __future__ import annotations

import argparse
import time

import torch
from diffusers_compare import WIDTHS, diffusers_unet  # benchmarks/ is the script's folder
from timing import alternate, report

from genlab.nn.unet import UNet


def genlab_unet() -> UNet:
    return UNet(1, 1, 28, width=WIDTHS[0], mults=(1, 2, 2), blocks=2, attention=16, dropout=0.0)


def passes(net, call, x, t, n: int, train: bool) -> float:
    """Seconds for n passes."""
    start = time.perf_counter()
    for _ in range(n):
        if train:
            call(net, x, t).pow(2).mean().backward()
        else:
            with torch.no_grad():
                call(net, x, t)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--passes", type=int, default=5, help="passes per timed repeat")
    p.add_argument("--sample-batch", type=int, default=250)
    p.add_argument("--train-batch", type=int, default=64)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nets = {"diffusers": (diffusers_unet(), lambda net, x, t: net(x, t).sample),
            "genlab": (genlab_unet(), lambda net, x, t: net(x, t))}
    assert len({sum(q.numel() for q in net.parameters()) for net, _ in nets.values()}) == 1, "different networks"
    for mode, batch in (("sampling", args.sample_batch), ("training", args.train_batch)):
        x, t = torch.randn(batch, 1, 28, 28), torch.randint(0, 1000, (batch,))
        train = mode == "training"
        for net, call in nets.values():
            passes(net, call, x, t, 1, train)  # warm-up
        side = {n: (lambda r, n=n: passes(*nets[n], x, t, args.passes, train) / args.passes) for n in nets}
        times = alternate(side["diffusers"], side["genlab"], args.repeats, names=("diffusers", "genlab"))
        report(f"{mode}, batch {batch}, seconds per pass ({args.passes} passes a repeat)", times, batch)
        if args.profile and train:
            for name, (net, call) in nets.items():
                with torch.profiler.profile() as prof:
                    passes(net, call, x, t, 1, True)
                print(f"\n{name}, one training pass:")
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


if __name__ == "__main__":
    main()
