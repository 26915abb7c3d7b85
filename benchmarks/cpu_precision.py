"""Training speed on this CPU's AMX/AVX-512 bf16 units: fp32 eager against bf16 autocast, channels-last
memory and torch.compile, on DCGAN, the conv VAE and Gated PixelCNN, and what each reaches at equal time.

    python benchmarks/cpu_precision.py                          # all three models, ~25 min on 1 core
    python benchmarks/cpu_precision.py --models dcgan --budget 120

Part 1, speed: the model's own train_step on one fixed MNIST batch of 64, every variant built from the same
seed, timed over --steps steps after 3 warm-up steps, variants interleaved over --repeats rounds (the
medians are compared, so a busy neighbour slows every variant alike). Ratios are to fp32 eager.
Part 2, quality at equal time: genlab's Trainer trains each variant on MNIST for --budget seconds of
steps (steps = budget / the variant's measured s/step), then the model's metric on test images:
DCGAN domain FID (1000 samples vs the first 1000 test images, shipped classifier), VAE test -ELBO and
Gated PixelCNN test NLL (nats, first 1000 dynamically binarised test images, binarised once).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from metric_floors import machine

from genlab.api import train
from genlab.cli import _load
from genlab.data import Batches, Pipeline, info_for, load, prepare
from genlab.metrics.registry import MetricContext, evaluate
from genlab.models import registry
from genlab.run import compose
from genlab.train.optim import Stepper

MODELS = {
    "dcgan": ["train.monitor_modes=false"],
    "vae": ["model.arch=conv", "model.latent_dim=32", "data.binarize=dynamic"],
    "gated_pixelcnn": ["model.width=64", "model.layers=7"],
}
VARIANTS = {"fp32": {}, "bf16": {"amp": "bf16"}, "channels-last": {"channels_last": True},
            "bf16 + channels-last": {"amp": "bf16", "channels_last": True}, "compile": {"compile": True}}


def step_time(name: str, variant: dict, steps: int) -> float:
    """Mean s/step of `steps` train_steps on one fixed batch (after 3 warm-up steps)."""
    run = compose(name, flags={"data": {"source": "mnist"}}, overrides=MODELS[name])
    data = prepare(load("mnist").test.subset(64), run.data)
    info = info_for(data, run.data)
    x, y = Batches(data, Pipeline(run.data), 64, shuffle=False).batch(torch.arange(64), 0)
    torch.manual_seed(0)
    model = registry.build(name, run.model_cfg, info)
    if variant.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opts = {k: Stepper(o, 0.0, None, 1) for k, o in model.configure_optimizers(run.train).items()}
    step = torch.compile(model.train_step) if variant.get("compile") else model.train_step
    cast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.get("amp") == "bf16")
    for i in range(3):
        with cast:
            step((x, y), opts, i)
    t = time.perf_counter()
    for i in range(steps):
        with cast:
            step((x, y), opts, 3 + i)
    return (time.perf_counter() - t) / steps


def quality(name: str, variant: dict, steps: int, out: Path) -> float:
    flags = {"data": {"source": "mnist"},
             "train": {"epochs": 100, "max_steps": steps, "batch_size": 64, "samples": 0, "eval_test": False,
                       **{k: v for k, v in variant.items() if k != "compile"}}}
    run = compose(name, flags=flags, overrides=MODELS[name])
    train(run, out, quiet=True)
    model, cfg = _load(out)
    test = prepare(load("mnist").test, cfg.data)
    ctx = MetricContext(model, cfg, test, "test", 1000)
    metric = {"dcgan": ("fid", "fid"), "vae": ("elbo", "neg_elbo_nats"), "gated_pixelcnn": ("nll", "nll_nats")}[name]
    return evaluate([metric[0]], ctx)[metric[0]][metric[1]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budget", type=float, default=240, help="seconds of training per variant in part 2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-compile", action="store_true", help="leave torch.compile out (it needs a C++ compiler)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    variants = {k: v for k, v in VARIANTS.items() if not (args.no_compile and v.get("compile"))}
    for name in args.models.split(","):
        times: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.repeats):
            for v, settings in variants.items():
                times[v].append(step_time(name, settings, args.steps))
        med = {v: statistics.median(ts) for v, ts in times.items()}
        print(f"\n{name} ({' '.join(MODELS[name])}), batch 64, {args.threads} thread(s), {args.budget:.0f} s per variant\n")
        print("| variant | s/step (median) | speed vs fp32 | steps in budget | metric at equal time |")
        print("|---|---|---|---|---|")
        for v, settings in variants.items():
            if settings.get("compile"):  # the Trainer has no compile switch: speed only
                print(f"| {v} | {med[v]:.3f} | {med['fp32'] / med[v]:.2f} | | (speed only) |")
                continue
            steps = max(1, int(args.budget / med[v]))
            with tempfile.TemporaryDirectory() as tmp:
                value = quality(name, settings, steps, Path(tmp) / "run")
            print(f"| {v} | {med[v]:.3f} | {med['fp32'] / med[v]:.2f} | {steps} | {value:.2f} |", flush=True)


if __name__ == "__main__":
    main()
