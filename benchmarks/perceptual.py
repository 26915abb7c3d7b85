"""The perceptual loss against the squared error: the reconstructions of autoencoders trained on each, side by side.

    python benchmarks/perceptual.py RUN [RUN ...] [--n 10000] [--inception]

Each RUN is an autoencoder or VAE run folder (for example the same conv AE trained with model.loss=mse and with
model.loss=perceptual, the commands in BENCHMARKS.md). The first --n test images are reconstructed (the VAE: the
decoded posterior mean) and scored against themselves, pixels in [0, 1]:
  - PSNR and SSIM (per image, averaged): fidelity, which the squared error optimises;
  - sharpness: the gradient energy sum (dx^2 + dy^2) of the reconstructions over that of the originals (1 = as
    sharp as the data; blur falls below 1);
  - the perceptual distance itself, in the network the run's data calls for (models/perceptual.py);
  - realism: FID of the reconstructions against the originals, in the shipped MNIST classifier's features for
    1 x 28 x 28 images, else (or with --inception as well) in the Inception network's (bf16).
Prints a Markdown table and writes perceptual.json beside the first run.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from genlab.apps.reduce import reconstruction_scores  # noqa: E402
from genlab.data import to_unit  # noqa: E402
from genlab.metrics.features import get_extractor  # noqa: E402
from genlab.metrics.frechet import fid_from_features  # noqa: E402
from genlab.models.perceptual import PerceptualDistance, resolve  # noqa: E402
from genlab.run import first_images, load_model  # noqa: E402

BATCH = 250


def gradient_energy(x: torch.Tensor) -> torch.Tensor:
    """sum of squared horizontal and vertical differences per image; B x C x H x W -> B."""
    dx, dy = x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]
    return dx.pow(2).flatten(1).sum(1) + dy.pow(2).flatten(1).sum(1)


def describe(cfg) -> str:
    """The run's model and training loss, e.g. "ae, mse" or "vae, perceptual (mnist)"."""
    m = cfg.model_cfg
    kind = getattr(m, "recon", None) or m.loss  # the VAE's recon (likelihood | perceptual), the AEs' loss
    kind = m.likelihood if kind == "likelihood" else kind
    return f"{cfg.model}, {kind}" + (f" ({resolve(m.perceptual_net, cfg.info.shape)})" if kind == "perceptual" else "")


def score(run: str, n: int, inception) -> dict:
    model, cfg = load_model(run)
    x, _ = first_images(cfg, "test", n)
    with torch.no_grad():
        r = torch.cat([model.reconstruct(x[i : i + BATCH]) for i in range(0, len(x), BATCH)])
    x01, r01 = to_unit(x, cfg.info), to_unit(r, cfg.info)
    out = {"model": describe(cfg), **reconstruction_scores(x, r, cfg.info.range),
           "sharpness": float(gradient_energy(r01).sum() / gradient_energy(x01).sum())}
    dist = PerceptualDistance(cfg.info.shape)
    with torch.no_grad():
        out["perceptual_distance"] = float(torch.cat([dist(r01[i : i + BATCH], x01[i : i + BATCH])
                                                      for i in range(0, len(x), BATCH)]).mean())
    out["perceptual_network"] = dist.name
    if tuple(cfg.info.shape) == (1, 28, 28):
        ext = get_extractor("domain")
        out["domain_fid"] = fid_from_features(ext.features(r01), ext.features(x01))
    if inception is not None or tuple(cfg.info.shape) != (1, 28, 28):
        ext = inception or get_extractor("inception", precision="bf16")
        out["inception_fid"] = fid_from_features(ext.features(r01), ext.features(x01))
    out["n"] = len(x)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--n", type=int, default=10000, help="test images (all of a smaller split)")
    p.add_argument("--inception", action="store_true", help="the Inception FID for MNIST runs too")
    args = p.parse_args()
    inception = get_extractor("inception", precision="bf16") if args.inception else None
    rows = {run: score(run, args.n, inception) for run in args.runs}
    cols = ["psnr_db", "ssim", "sharpness", "perceptual_distance", "domain_fid", "inception_fid"]
    cols = [c for c in cols if any(c in r for r in rows.values())]
    print("| run | training loss | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for run, r in rows.items():
        cells = [f"{r[c]:.4g}" if c in r else "" for c in cols]
        print(f"| {Path(run).name} | {r['model']} | " + " | ".join(cells) + " |")
    first = next(iter(rows.values()))
    print(f"\n{first['n']} test images; perceptual distance in {first['perceptual_network']}'s features; "
          "sharpness = gradient energy of reconstructions / of originals")
    out = Path(args.runs[0]) / "perceptual.json"
    out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
