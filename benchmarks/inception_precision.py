"""How the FID Inception's arithmetic and input scaling move its speed, its features and FID on MNIST.

    python benchmarks/inception_precision.py --n 500       # 500 train vs 500 test images, ~10 min on 1 core

Variants, all on the same images (8-bit quantised, grey -> RGB, bicubic antialiased resize to 299):
- `fp32, x*2-1`: genlab's input scaling before issue 10 (white = 1.0), contiguous memory;
- `fp32`: the weights' own scaling (p - 128) / 128 (white = 127/128, as clean-fid), contiguous memory;
- `fp32 channels-last`: the same numbers in NHWC memory (what genlab runs now);
- `bf16 channels-last`: bfloat16 autocast (AMX units), `genlab eval --precision bf16`.
For each: images/s, relative L2 distance of the features to `fp32`, and FID(train[:n], test[:n]).
"""
from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch

from genlab.data import load
from genlab.metrics.features import get_extractor
from genlab.metrics.frechet import fid_from_features
from metric_floors import machine


def run(net, batches, memory_format, cast) -> tuple[float, torch.Tensor]:
    """(seconds in the network, features) for a list of prepared batches."""
    out, seconds = [], 0.0
    with torch.no_grad():
        for x in batches:
            x = x.contiguous(memory_format=memory_format)
            t = time.perf_counter()
            with cast:
                out.append(net(x).float())
            seconds += time.perf_counter() - t
    return seconds, torch.cat(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500, help="images per side (train vs test)")
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    ext = get_extractor("inception")
    mnist = load("mnist")
    sides = {name: split.images[: args.n].float() / 255 for name, split in (("train", mnist.train), ("test", mnist.test))}
    # the prepared inputs, (p - 128) / 128; the old scaling is the affine map of the same tensor
    prepared = {k: [ext._prepare(v[i : i + args.batch]).contiguous() for i in range(0, len(v), args.batch)]
                for k, v in sides.items()}
    old = {k: [(x * 128 + 128) / 255 * 2 - 1 for x in v] for k, v in prepared.items()}
    run(ext.net, prepared["test"][:1], torch.contiguous_format, nullcontext())  # warm-up
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    variants = {
        "fp32, x*2-1 (before)": (old, torch.contiguous_format, nullcontext()),
        "fp32": (prepared, torch.contiguous_format, nullcontext()),
        "fp32 channels-last": (prepared, torch.channels_last, nullcontext()),
        "bf16 channels-last": (prepared, torch.channels_last, bf16),
    }
    feats, rates = {}, {}
    for name, (inputs, fmt, cast) in variants.items():
        s_train, f_train = run(ext.net, inputs["train"], fmt, cast)
        s_test, f_test = run(ext.net, inputs["test"], fmt, cast)
        feats[name], rates[name] = (f_train, f_test), 2 * args.n / (s_train + s_test)
        print(f"  {name}: done", flush=True)
    base = feats["fp32"]
    print(f"\nInception features, MNIST train[:{args.n}] vs test[:{args.n}], {args.threads} thread(s)\n")
    print("| variant | images/s | speed vs fp32 | feature rel. L2 vs fp32 | FID train vs test | FID vs fp32 |")
    print("|---|---|---|---|---|---|")
    fid0 = fid_from_features(*base)
    for name, (f_train, f_test) in feats.items():
        rel = (torch.cat([f_train, f_test]) - torch.cat(base)).norm() / torch.cat(base).norm()
        fid = fid_from_features(f_train, f_test)
        print(f"| {name} | {rates[name]:.2f} | {rates[name] / rates['fp32']:.2f} | {rel:.4f} | {fid:.3f} | "
              f"{(fid - fid0) / fid0:+.2%} |")
    mixed = fid_from_features(feats["bf16 channels-last"][0], base[1])
    print(f"\nbf16 samples against fp32 reference features (a cache mismatch genlab's keys prevent): FID {mixed:.3f}")


if __name__ == "__main__":
    main()
