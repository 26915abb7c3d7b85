"""Per-epoch cost over a long run: does the epoch-end work grow with the epoch count?

What it measures
    One uninterrupted `genlab train` of a tiny VAE (MLP 64-32-4 on the first 256 8x8 digits, batch 32: 8 steps
    an epoch, so the epoch-end work dominates) for `--epochs` epochs with the default per-epoch work: a 64-image
    grid, the test losses and a checkpoint. The seconds between consecutive epoch ends come from the run's own
    log (`time_s` of each epoch's test event); the table gives their median over the first and the last ten
    epochs and the ratio last / first. A flat cost reads about 1.0; re-encoding a growing GIF at each epoch end
    (before progress.gif was written once at the end) grew it with the epoch count.

    python benchmarks/epoch_overhead.py --epochs 100 --threads 1
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from genlab.api import train
from genlab.run import compose


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    run = compose("vae", flags={"data": {"source": "digits", "limit": 256},
                                "train": {"epochs": a.epochs, "batch_size": 32}},
                  overrides=["model.hidden=(32,)", "model.latent_dim=4"])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        start = time.perf_counter()
        train(run, out, quiet=True)
        wall = time.perf_counter() - start
        ends = [r["time_s"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
                if r["event"] == "test"]
        gif_kib = (out / "samples" / "progress.gif").stat().st_size / 1024
    per_epoch = [b - a_ for a_, b in zip(ends, ends[1:])]
    first, last = statistics.median(per_epoch[:10]), statistics.median(per_epoch[-10:])
    print("| epochs | first 10 (s/epoch, median) | last 10 (s/epoch, median) | last / first | wall (s) | "
          "progress.gif (KiB) |")
    print("|---|---|---|---|---|---|")
    print(f"| {a.epochs} | {first:.4f} | {last:.4f} | {last / first:.2f} | {wall:.1f} | {gif_kib:.0f} |")


if __name__ == "__main__":
    main()
