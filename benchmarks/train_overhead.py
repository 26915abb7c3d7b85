"""Trainer overhead: genlab's Trainer against the smallest hand-written PyTorch loop, same network, same data.

What it measures
    Seconds per epoch of training genlab's default `vae` (MLP 784-512-16, Bernoulli likelihood) on full
    MNIST (60k train images, [0, 1] grey levels, genlab's default data config) with Adam lr 1e-3,
    batch 128, drop_last, a fresh shuffle each epoch, in three variants:

    - plain:       the same model class built by `genlab.models.registry.build`, a plain `torch.optim.Adam` and
                   a loop over `X[perm[...]]` slices of a float tensor converted once before timing; per
                   batch `model.losses(x)["loss"]`, zero_grad, backward, step. Nothing else.
    - genlab:      `Trainer(run, out, quiet=True).fit()` with its standard per-epoch work (checkpoint,
                   64-sample grid, test-set eval). Only `.fit()` is timed, not building the Trainer.
    - genlab-bare: the same with `train.eval_test=false, train.samples=0`: the loop's own overhead plus
                   the epoch-end checkpoint.

    Fairness: one process, hence one torch thread count for all (`--threads`; on a machine shared with
    other work `--threads 1` gives far steadier figures, as torch's OpenMP threads wait on each other
    whenever one of them is descheduled); each variant is warmed up once before timing; the plain loop
    keeps its own random stream. The machine this was written for has 2 cores shared with other work,
    so the variants are interleaved epoch by epoch (plain, genlab, bare; genlab, bare, plain; ...):
    genlab runs one epoch per `.fit()` by resuming its own run folder with `train.epochs` one higher,
    which genlab guarantees to repeat an uninterrupted run bit for bit on CPU. Each such `.fit()` also
    pays the per-call set-up (TensorBoard writer open and close) that one long run pays once, so
    genlab's figure errs on the slow side. The table shows the median and minimum seconds per epoch over
    all epochs of all `--repeats` runs, and the median of the per-round ratios variant / plain (epochs
    timed side by side).

    Quality: the test -ELBO (nats per image, one posterior sample, the 10k test images) at the end of the
    first run, for both from their final weights on all 10k test images with the same fixed noise.

How to run
    .venv/bin/python benchmarks/train_overhead.py --quick          # smoke test: 1 epoch on 10k images
    .venv/bin/python benchmarks/train_overhead.py --epochs 10      # the full measurement (minutes)
    .venv/bin/python benchmarks/train_overhead.py --epochs 10 --threads 1   # the same, steadier on a busy machine
    .venv/bin/python benchmarks/train_overhead.py --epochs 5 --repeats 3 --long --threads 1   # one run per variant
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

import genlab
from genlab.data import info_for, prepare
from genlab.data import load as load_data
from genlab.models import registry
from genlab.run import compose, load_model
from genlab.train.trainer import Trainer

BATCH, LR, SEED = 128, 1e-3, 0
BARE = {"eval_test": False, "samples": 0}
WARMUP_STEPS = 200
# Burda et al. 2016 (IWAE paper), VAE with one stochastic layer trained with k=1, test log-likelihood
# estimated with 5000 importance samples, on dynamically binarised MNIST.
PUBLISHED_NATS = 86.76


def genlab_run(epochs: int, limit: int, extra: dict | None = None):
    train = {"epochs": epochs, "batch_size": BATCH, "lr": LR, "seed": SEED, "device": "cpu", **(extra or {})}
    return compose("vae", flags={"data": {"source": "mnist", "limit": limit}, "train": train})


class GenlabLoop:
    """A genlab run in its own folder, advanced one epoch per timed `.fit()`."""

    def __init__(self, limit: int, extra: dict | None = None):
        self.limit, self.extra = limit, extra
        self.dir = tempfile.TemporaryDirectory(prefix="genlab-bench-")
        self.epochs, self.time_s = 0, 0.0

    def epoch(self, n: int = 1) -> tuple[float, float]:
        """Train n more epochs in one `.fit()`; (wall, CPU) seconds of it."""
        self.epochs += n
        trainer = Trainer(genlab_run(self.epochs, self.limit, self.extra), self.dir.name, quiet=True)
        t0, c0 = time.perf_counter(), time.process_time()
        self.time_s = trainer.fit()["time_s"]
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        trainer.close()
        return wall, cpu

    def test_neg_elbo(self, X_test: torch.Tensor) -> float:
        """The trained weights from the run folder, scored exactly as the plain loop's are."""
        model, _ = load_model(self.dir.name, ema=False)
        return neg_elbo(model, X_test)


class PlainLoop:
    """genlab's network (the same initial weights), trained by the shortest loop PyTorch allows."""

    def __init__(self, X: torch.Tensor, make_model, max_steps: int = 0):
        self.X, self.n = X, len(X)
        self.steps = self.n // BATCH if not max_steps else min(max_steps, self.n // BATCH)
        torch.manual_seed(SEED)
        self.model = make_model()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.rng = torch.get_rng_state()  # its own random stream, whatever genlab draws in between

    def epoch(self, n: int = 1) -> tuple[float, float]:
        """Train n more epochs; (wall, CPU) seconds."""
        torch.set_rng_state(self.rng)
        t0, c0 = time.perf_counter(), time.process_time()
        model, opt, X = self.model, self.opt, self.X
        for _ in range(n):
            perm = torch.randperm(self.n)
            for b in range(self.steps):
                x = X[perm[b * BATCH : (b + 1) * BATCH]]
                loss = model.losses(x)["loss"]
                opt.zero_grad()
                loss.backward()
                opt.step()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        self.rng = torch.get_rng_state()
        return wall, cpu

    def test_neg_elbo(self, X_test: torch.Tensor) -> float:
        self.model.eval()
        value = neg_elbo(self.model, X_test)
        self.model.train()
        return value


@torch.no_grad()
def neg_elbo(model, X_test: torch.Tensor) -> float:
    """Mean one-sample -ELBO over all test images, batches of 500, fixed noise."""
    torch.manual_seed(SEED)
    return sum(float(model.losses(x)["neg_elbo"]) * len(x) for x in X_test.split(500)) / len(X_test)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
            f"Python {platform.python_version()}")


def code_version() -> str:
    """genlab's version and, in a git checkout, its commit (+ "-dirty" with uncommitted changes)."""
    git = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                         cwd=Path(genlab.__file__).parent)
    return f"genlab {genlab.__version__}" + (f" (git {git.stdout.strip()})" if git.returncode == 0 else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2, help="independent runs of each variant, all epochs pooled")
    p.add_argument("--limit", type=int, default=0, help="train on the first N images (0 = all 60k)")
    p.add_argument("--threads", type=int, default=0, help="torch threads for all variants (0 = torch's default)")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 epoch, 10k images, 1 repeat")
    p.add_argument("--long", action="store_true",
                   help="one uninterrupted run of --epochs per variant and repeat (the set-up paid once, as a real "
                        "run pays it) instead of one resumed .fit() per epoch; the ratio is then per run")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.epochs, args.limit, args.repeats = 1, 10000, 1

    print(f"machine: {machine()}")
    print(f"code: {code_version()}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    run = genlab_run(args.epochs, args.limit)
    splits = load_data("mnist")
    train = prepare(splits.train.subset(args.limit or None), run.data)
    info = info_for(train, run.data)
    X = train.images.float() / 255.0  # N x 1 x 28 x 28 in [0, 1], converted once
    X_test = splits.test.images.float() / 255.0
    make_model = partial(registry.build, "vae", run.model_cfg, info)
    print(f"data: {len(X)} train images, {len(X_test)} test; {args.epochs} epoch(s) x {args.repeats} run(s), "
          f"batch {BATCH}, {len(X) // BATCH} steps/epoch")

    # warm-up: allocator and kernels, and on genlab's side the imports and paths of the epoch-end work
    PlainLoop(X, make_model, max_steps=WARMUP_STEPS).epoch()
    GenlabLoop(WARMUP_STEPS * BATCH).epoch()

    names = ["plain", "genlab", "genlab-bare"]
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    trainer_s: dict[str, list[float]] = {n: [] for n in names}
    first: dict = {}
    for r in range(args.repeats):
        loops = {"plain": PlainLoop(X, make_model), "genlab": GenlabLoop(args.limit),
                 "genlab-bare": GenlabLoop(args.limit, BARE)}
        for e in range(1 if args.long else args.epochs):
            k = r * args.epochs + e
            this = {}
            for name in names[k % 3:] + names[: k % 3]:
                n = args.epochs if args.long else 1
                wall, cpu = loops[name].epoch(n)
                this[name] = wall / n
                walls[name].append(this[name])
                cpus[name].append(cpu / n)
            for name in names:
                ratios[name].append(this[name] / this["plain"])
            label = f"epochs 1-{args.epochs} (per epoch)" if args.long else f"epoch {e + 1:>2}"
            print(f"  run {r + 1} {label}: " + "  ".join(f"{n} {this[n]:6.2f} s" for n in names)
                  + f"   load {os.getloadavg()[0]:.2f}", flush=True)
        for name in ("genlab", "genlab-bare"):
            trainer_s[name].append(loops[name].time_s / args.epochs)
        if r == 0:
            first = {"genlab": loops["genlab"].test_neg_elbo(X_test), "plain": loops["plain"].test_neg_elbo(X_test)}
    print(f"load average at end: {os.getloadavg()[0]:.2f}")

    labels = {"plain": "plain loop", "genlab": "genlab (defaults)", "genlab-bare": "genlab (no eval, no grid)"}
    timed = (f"{len(walls['plain'])} runs of {args.epochs} epochs" if args.long
             else f"{len(walls['plain'])} epochs")
    print(f"\nseconds per epoch over {timed} per variant; ratio = median over the rounds of "
          f"(variant / plain timed beside it), target <= 1.05")
    print("| variant                   | median s/epoch | min s/epoch | ratio | CPU s/epoch | trainer time_s/epoch |")
    print("|---------------------------|----------------|-------------|-------|-------------|----------------------|")
    for name in names:
        trainer = f"{statistics.median(trainer_s[name]):.2f}" if trainer_s[name] else "-"
        print(f"| {labels[name]:<25} | {statistics.median(walls[name]):14.2f} | {min(walls[name]):11.2f} "
              f"| {statistics.median(ratios[name]):5.3f} | {statistics.median(cpus[name]):11.2f} | {trainer:>20} |")
    print("(CPU = process CPU time of all threads; trainer time_s = the Trainer's own clock, which stops at "
          "the last step of each .fit() and so leaves out that epoch's grid, test eval and checkpoint)")

    print(f"\ntest -ELBO after {args.epochs} epoch(s), 10k test images, one posterior sample (nats/image):")
    print(f"  genlab: {first['genlab']:.2f}   plain loop: {first['plain']:.2f}")
    print(f"  published: VAE on MNIST ~{PUBLISHED_NATS} nats (Burda et al. 2016, IWAE-5000 estimate of -log p(x)) "
          f"on dynamically binarised MNIST. Not the same quantity: ours is a one-sample bound on the grey-level "
          f"cross-entropy, which is no normalised likelihood; the numbers are not comparable.")


if __name__ == "__main__":
    main()
