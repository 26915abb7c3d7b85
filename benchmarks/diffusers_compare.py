"""genlab's DDPM beside Hugging Face diffusers: the same U-Net configuration, schedule and optimiser trained for the
same number of steps on MNIST, then the domain FID of DDIM samples and the sampling time per image.

    pip install diffusers          # the benchmark's only use of it; genlab never imports diffusers
    python benchmarks/diffusers_compare.py --out /tmp/ddpm_vs_diffusers --steps 300 --n 1000

Both sides: 28 x 28 MNIST in [-1, 1], batch --batch, U-Net of widths (32, 64, 64) with two residual blocks a
level (three on the way up), self-attention at 14 and 7 px and in the middle, single-head, group norm with
genlab's rule (at most 32 groups of at least 4 channels: 8 groups at 32 channels, 16 at 64; diffusers' GroupNorm
layers are given the same counts after construction), no dropout, sinusoidal time embedding of 32 -> 128; T = 1000,
Ho et al.'s linear betas 1e-4 .. 0.02, epsilon prediction and the simplified loss; Adam --lr (genlab's DDPM default,
1e-3) after a linear warm-up of --warmup steps, gradient norm
clipped at 1, EMA 0.9999 with the (1 + s) / (10 + s) warm-up (what both libraries do). Samples: the EMA weights,
DDIM with 50 steps and eta = 0, x0 clipped to [-1, 1]. genlab trains through its command line (`genlab train
ddpm`); diffusers through the smallest loop its documentation shows (UNet2DModel, DDPMScheduler.add_noise,
EMAModel), then DDIMScheduler. Prints a Markdown table and writes results.json in --out.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from genlab.data import load  # noqa: E402
from genlab.metrics.features import get_extractor  # noqa: E402
from genlab.metrics.frechet import fid_from_features  # noqa: E402
from genlab.nn.unet import group_norm  # noqa: E402
from genlab.run import load_model  # noqa: E402

WIDTHS = (32, 64, 64)
DDIM_STEPS = 50


def train_genlab(out: Path, args) -> tuple[Path, float]:
    run = out / "genlab"
    cmd = [sys.executable, "-m", "genlab.cli", "train", "ddpm", "--data", "mnist", "--seed", "0", "--quiet",
           "--set", f"model.width={WIDTHS[0]}", "--set", "model.mults=[1, 2, 2]", "--set", "model.blocks=2",
           "--set", "model.attention=16", "--set", "model.timesteps=1000", "--set", "model.schedule=linear",
           "--set", "model.dropout=0", "--set", f"train.lr={args.lr}",
           "--set", f"train.batch_size={args.batch}", "--set", f"train.max_steps={args.steps}",
           "--set", f"train.warmup_steps={args.warmup}", "--set", "train.samples=0", "--set", "train.eval_test=false",
           "--out", str(run)]
    subprocess.run(cmd, check=True)
    return run, float(json.loads((run / "trainer_state.json").read_text())["time_s"])  # the training loop's time


def diffusers_unet():
    """diffusers' UNet2DModel configured as genlab's recipe U-Net (1,707,009 parameters)."""
    from diffusers import UNet2DModel

    unet = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=2, block_out_channels=WIDTHS,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"), attention_head_dim=None,
                       norm_num_groups=8, dropout=0.0)
    for m in unet.modules():  # genlab's group counts per width (one count for all widths is all diffusers takes)
        if isinstance(m, torch.nn.GroupNorm):
            m.num_groups = group_norm(m.num_channels).num_groups
    return unet


def train_diffusers(out: Path, args) -> tuple[object, object, float]:
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    torch.manual_seed(0)
    unet = diffusers_unet()
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    opt = torch.optim.Adam(unet.parameters(), lr=args.lr)
    warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / args.warmup))
    ema = EMAModel(unet.parameters(), decay=0.9999)
    images = load("mnist").train.images  # N x 1 x 28 x 28 uint8
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(images), generator=g)
    t0 = time.perf_counter()
    for step in range(args.steps):
        i = (step * args.batch) % (len(images) - args.batch)
        x = images[perm[i : i + args.batch]].float() / 127.5 - 1
        noise = torch.randn_like(x)
        t = torch.randint(0, 1000, (len(x),))
        loss = F.mse_loss(unet(sched.add_noise(x, noise, t), t).sample, noise)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        warm.step()
        ema.step(unet.parameters())
    seconds = time.perf_counter() - t0
    ema.copy_to(unet.parameters())
    unet.eval()
    print(f"diffusers: trained {args.steps} steps in {seconds:.0f} s", flush=True)
    return unet, sched, seconds


@torch.no_grad()
def sample_diffusers(unet, sched, n: int, batch: int) -> tuple[torch.Tensor, float]:
    from diffusers import DDIMScheduler

    ddim = DDIMScheduler.from_config(sched.config)
    ddim.set_timesteps(DDIM_STEPS)
    g = torch.Generator().manual_seed(1)
    out, t0 = [], time.perf_counter()
    for start in range(0, n, batch):
        x = torch.randn(min(batch, n - start), 1, 28, 28, generator=g)
        for t in ddim.timesteps:
            x = ddim.step(unet(x, t).sample, t, x, eta=0.0).prev_sample
        out.append(x.clamp(-1, 1))
    return torch.cat(out), time.perf_counter() - t0


@torch.no_grad()
def sample_genlab(model, n: int, batch: int) -> tuple[torch.Tensor, float]:
    """The run's model (its EMA weights; DDIM, 50 steps, eta 0 by default)."""
    g = torch.Generator().manual_seed(1)
    out, t0 = [], time.perf_counter()
    for start in range(0, n, batch):
        out.append(model.sample(min(batch, n - start), generator=g))
    return torch.cat(out), time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n", type=int, default=1000, help="samples per side for the FID (against as many test images)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run, g_train = train_genlab(out, args)
    unet, sched, d_train = train_diffusers(out, args)
    ext = get_extractor("domain")
    real = ext.features(load("mnist").test.images[: args.n].float() / 255)
    rows = {}
    model, _ = load_model(run)
    samples = {"genlab": sample_genlab(model, args.n, 250), "diffusers": sample_diffusers(unet, sched, args.n, 250)}
    for name, (x, secs) in samples.items():
        rows[name] = {"fid_domain": fid_from_features(ext.features((x.float() + 1) / 2), real),
                      "sample_s_per_image": secs / args.n}
    rows["genlab"]["train_s"], rows["diffusers"]["train_s"] = g_train, d_train
    rows["genlab"]["params"] = sum(p.numel() for p in model.parameters())
    rows["diffusers"]["params"] = sum(p.numel() for p in unet.parameters())
    print(f"\n{args.steps} steps at batch {args.batch}, FID of {args.n} DDIM-{DDIM_STEPS} samples vs {args.n} test "
          f"images (domain features), {torch.get_num_threads()} thread(s)\n")
    print("| library | parameters | training s (s/step) | domain FID | sampling s/image |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['params']:,} | {r['train_s']:.0f} ({r['train_s'] / args.steps:.2f}) | "
              f"{r['fid_domain']:.1f} | {r['sample_s_per_image']:.3f} |")
    (out / "results.json").write_text(json.dumps({"rows": rows, "args": vars(args)}, indent=1))


if __name__ == "__main__":
    main()
