"""Explicit-density models on MNIST for a stated CPU budget: exact test NLL beside the published rows.

    python benchmarks/density_mnist.py --only pixelcnn,gated_pixelcnn
    python benchmarks/density_mnist.py --only nice,realnvp,glow --scale 2     # twice the steps

Autoregressive models train on dynamically binarised MNIST (Bernoulli head, the papers' benchmark) and report
the exact NLL in nats per image on all 10k test images, each binarised once with a fixed seed; flows train on
8-bit MNIST with uniform dequantisation and report bits/dim of the 8-bit images (density NLL + D log 256),
the convention of Dinh et al. and Kingma & Dhariwal. Each model runs its listed number of steps (times
`--scale`) at batch 64 with its registered defaults, the CPU sizes listed below and `--set` overrides; then
`--sample-n` images are drawn (timed, per image) and saved as a grid, and autoregressive models complete the
bottom halves of 8 test images (completions.png: originals, top halves, completions). Prints one Markdown
table with the budget and the published figure.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from genlab.api import train
from genlab.data import Batches, Pipeline, load, prepare, to_unit
from genlab.metrics import MetricContext, evaluate
from genlab.run import compose, load_model
from genlab.viz import save_grid

# (label, model, CPU-sized overrides, steps, published figure, unit); the sizes keep each run to ~10 min on 2 cores
VARIANTS = [
    ("PixelCNN", "pixelcnn", ["model.width=64", "model.layers=5"], 1200, "81.30", "nats"),
    ("Gated PixelCNN", "gated_pixelcnn", ["model.width=32", "model.layers=5"], 1200, "81.50 (pytorch-generative)",
     "nats"),
    ("PixelRNN Row LSTM", "pixelrnn", ["model.variant=row_lstm"], 1000, "80.54", "nats"),
    ("PixelRNN Diagonal BiLSTM", "pixelrnn", ["model.variant=diagonal_bilstm", "model.layers=3"], 400, "79.20",
     "nats"),
    ("NICE", "nice", [], 3000, "4.34 bits/dim (pytorch-generative)", "bpd"),
    ("RealNVP", "realnvp", ["model.width=32", "model.layers=2"], 600, "1.06", "bpd"),
    ("Glow", "glow", [], 1500, "1.05", "bpd"),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="multiply every model's steps")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--sample-n", type=int, default=16)
    p.add_argument("--out", default="runs/density_bench")
    p.add_argument("--only", help="comma-separated model names")
    p.add_argument("--set", action="append", default=[], help="extra overrides for every model")
    args = p.parse_args()
    splits = load("mnist")
    rows = []
    for label, name, sets, steps, published, unit in VARIANTS:
        if args.only and name not in args.only.split(","):
            continue
        steps = int(steps * args.scale)
        run = compose(name, flags={"data": {"source": "mnist"},
                                   "train": {"batch_size": args.batch, "max_steps": steps, "epochs": 1000,
                                             "samples": 0}},
                      overrides=[*sets, *args.set])
        out = Path(args.out) / label.lower().replace(" ", "_")
        t = time.perf_counter()
        train(run, out, quiet=True)
        secs = time.perf_counter() - t
        model, cfg = load_model(out)
        model.eval()
        test = prepare(splits.test, cfg.data)
        torch.manual_seed(0)  # the test set's one dynamic binarisation / dequantisation draw
        ctx = MetricContext(model, cfg, test, "test", len(test), train=prepare(splits.train, cfg.data), heldout=test)
        res = evaluate(["nll"], ctx)["nll"]
        g = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        samples = model.sample(args.sample_n, generator=g)
        per_image = (time.perf_counter() - t) / args.sample_n
        save_grid(to_unit(samples, cfg.info), out / "samples.png", scale=2)
        if hasattr(model, "complete"):
            x = next(Batches(test.subset(8), Pipeline(cfg.data), 8, shuffle=False).epoch(0))[0]
            top = x.clone()
            top[:, :, 14:] = 0
            done = model.complete(x, 14, generator=g)
            save_grid(to_unit(torch.cat([x, top, done]), cfg.info), out / "completions.png", nrow=8, scale=2)
        figure = res["nll_nats"] if unit == "nats" else res["bits_per_dim"]
        params = sum(p.numel() for p in model.parameters())
        rows.append((label, params, steps, secs, figure, unit, published, per_image, " ".join(sets)))
        print(f"{label}: {secs:.0f} s, {figure:.3f} {unit}, sampling {per_image * 1000:.0f} ms/image", flush=True)
    print(f"\nMNIST, batch {args.batch}, this CPU ({torch.get_num_threads()} threads); exact NLL on all 10k test "
          f"images; sampling time per image from a batch of {args.sample_n}")
    print("| model | settings | parameters | steps | train s | test NLL | published | sampling s/image |")
    print("|---|---|---|---|---|---|---|---|")
    for label, params, steps, secs, figure, unit, published, per_image, sets in rows:
        print(f"| {label} | {sets} | {params / 1e6:.2f} M | {steps} | {secs:.0f} | {figure:.3f} {unit} | {published} "
              f"| {per_image:.3f} |")


if __name__ == "__main__":
    main()
