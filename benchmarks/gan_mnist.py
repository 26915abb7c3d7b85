"""Every adversarial model on MNIST for the same CPU budget, judged by domain FID, precision/recall and
mode coverage side by side.

    python benchmarks/gan_mnist.py --steps 600 --width 32 --n 5000

Each model trains `--steps` steps at batch 64 with its paper defaults (data in [-1, 1], Adam 2e-4,
beta1 0.5) and `model.width` set to --width for the convolutional ones; then 5000 samples are drawn and
compared with the first 5000 MNIST test images under genlab's shipped MNIST classifier (domain FID,
precision/recall k=3, classes covered, KL(data || samples)). Prints one Markdown table with the budget.
A short budget ranks the models by how fast they learn, not by where they converge.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from genlab.api import train
from genlab.data import load, prepare
from genlab.metrics import MetricContext, evaluate
from genlab.models import registry
from genlab.run import compose, load_model

VARIANTS = [  # (label, model, --set overrides)
    ("GAN minimax (MLP)", "gan", ["model.loss=minimax"]),
    ("GAN non-saturating (MLP)", "gan", []),
    ("DCGAN non-saturating", "dcgan", []),
    ("DCGAN WGAN (clipping, n_critic 5)", "dcgan", ["model.loss=wgan", "model.n_critic=5", "train.optimizer=rmsprop",
                                                    "train.lr=5e-5"]),
    ("DCGAN WGAN-GP (n_critic 5)", "dcgan", ["model.loss=wgan-gp", "model.n_critic=5", "train.beta1=0.0",
                                             "train.beta2=0.9", "train.lr=1e-4"]),
    ("DCGAN LSGAN", "dcgan", ["model.loss=lsgan"]),
    ("DCGAN hinge + spectral norm", "dcgan", ["model.loss=hinge", "model.spectral_norm=true"]),
    ("cGAN", "cgan", []),
    ("ACGAN", "acgan", []),
    ("InfoGAN", "infogan", []),
    ("BiGAN", "bigan", []),
    ("VAE-GAN", "vaegan", []),
    ("GLO", "glo", []),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--out", default="runs/gan_bench")
    p.add_argument("--only", help="comma-separated model names")
    args = p.parse_args()
    splits = load("mnist")
    rows = []
    for label, name, sets in VARIANTS:
        if name not in registry.names() or (args.only and name not in args.only.split(",")):
            continue
        fields = {f for f in registry.get(name).config_cls.__dataclass_fields__}
        extra = [f"model.width={args.width}"] if "width" in fields else []
        run = compose(name, flags={"data": {"source": "mnist"},
                                   "train": {"batch_size": 64, "max_steps": args.steps, "epochs": 100,
                                             "monitor_modes": False, "samples": 64}},
                      overrides=[*extra, *sets])
        out = Path(args.out) / label.lower().replace(" ", "_").replace("(", "").replace(")", "").replace(",", "")
        t = time.perf_counter()
        train(run, out, quiet=True)
        secs = time.perf_counter() - t
        model, cfg = load_model(out)
        test = prepare(splits.test, cfg.data)
        ctx = MetricContext(model, cfg, test, "test", args.n, train=prepare(splits.train, cfg.data), heldout=test)
        res = evaluate(["fid", "pr", "modes"], ctx)
        rows.append((label, secs, res["fid"]["fid"], res["pr"]["precision"], res["pr"]["recall"],
                     res["modes"]["classes_covered"], res["modes"]["kl_data_to_samples"]))
        print(f"{label}: {secs:.0f} s, FID {rows[-1][2]:.2f}", flush=True)
    print(f"\nMNIST, {args.steps} steps x batch 64 per model on this CPU, conv width {args.width}; "
          f"{args.n} samples vs the first {args.n} test images, shipped MNIST classifier features")
    print("| model | train s | domain FID | precision | recall | classes covered | KL(data||samples) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.0f} | {r[2]:.2f} | {r[3]:.3f} | {r[4]:.3f} | {r[5]}/10 | {r[6]:.3f} |")


if __name__ == "__main__":
    main()
