"""Which part of a GAN collapses? Swap generators, discriminators, losses and StyleGAN's output on MNIST at 32 px.

    python benchmarks/gan_parts_probe.py --g stylegan --d progan --loss ns-r1 --out probe.jsonl   # StyleGAN's parts
    python benchmarks/gan_parts_probe.py --g dcgan --d progan --loss ns-r1 --out probe.jsonl      # DCGAN's G instead
    python benchmarks/gan_parts_probe.py --g stylegan --d progan --loss wgan-gp --out probe.jsonl # ProGAN's loss
    python benchmarks/gan_parts_probe.py --g stylegan --output tanh --out probe.jsonl             # a tanh output

A hand-written loop (one D step, one G step, batch 32, MNIST padded to 32 x 32 in [-1, 1]) over genlab's networks:
`--g stylegan` (StyleGAN's mapping and synthesis at their defaults, Adam 2e-3, betas (0, 0.99)) or `--g dcgan`
(DCGAN's generator, N(0, 0.02) init, Adam 2e-4, betas (0.5, 0.999)); `--d progan` (StyleGAN's discriminator, which
is ProGAN's at full resolution; StyleGAN's optimiser) or `--d dcgan` (batch norm; layer norm under wgan-gp);
`--loss ns-r1` (non-saturating, lazy R1 every 16 steps) or `wgan-gp` (with ProGAN's drift term).

Every 250 steps it writes one JSON line to --out: the classes the shipped MNIST classifier reads in 500 samples
(a class counts at >= 10% of its data share, as `genlab eval --metrics modes`), the largest class's share, the
per-pixel standard deviation across the 500 samples (in [-1, 1] units: 0 when every latent draws one image), and for
StyleGAN the spread of w across z (mean distance to the mean over the mean's norm) and of one layer's styles
(coefficient of variation). The last samples go to --out + ".pt" (64 x 1 x 28 x 28, weights_only-loadable).
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from genlab.data import load
from genlab.data.base import DataInfo
from genlab.losses import wgan_gp_drift
from genlab.metrics.features import get_extractor
from genlab.metrics.modes import class_distribution, mode_coverage
from genlab.models.stylegan import StyleGAN, StyleGANConfig
from genlab.nn.dcgan import DCDiscriminator, DCGenerator, dcgan_init


class DCGANGenerator(nn.Module):
    def __init__(self, latent_dim: int = 128):
        super().__init__()
        self.net, self.latent_dim = DCGenerator((1, 32, 32), latent_dim, 64), latent_dim
        self.net.apply(dcgan_init)

    def forward(self, n: int) -> torch.Tensor:
        return torch.tanh(self.net(torch.randn(n, self.latent_dim)))  # n x 1 x 32 x 32


class StyleGANGenerator(nn.Module):
    def __init__(self, sg: StyleGAN):
        super().__init__()
        self.sg = sg

    def forward(self, n: int) -> torch.Tensor:
        return self.sg.synthesize(self.sg.mixed_ws(n))  # n x 1 x 32 x 32, mixing as in training


class DCGANDiscriminator(nn.Module):
    def __init__(self, norm: str):
        super().__init__()
        self.body = DCDiscriminator((1, 32, 32), 64, norm)
        self.head = self.body.head(1)
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(1)


def d_loss(name: str, d: nn.Module, real: torch.Tensor, fake: torch.Tensor, step: int, gamma: float) -> torch.Tensor:
    if name == "wgan-gp":
        return wgan_gp_drift(d, real, fake, gp_weight=10.0, drift=0.001)[0]
    lazy = gamma > 0 and step % 16 == 0
    real.requires_grad_(lazy)
    d_real = d(real)
    loss = F.softplus(d(fake)).mean() + F.softplus(-d_real).mean()
    if lazy:
        (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
        loss = loss + 16 * gamma / 2 * grad.pow(2).flatten(1).sum(1).mean()
    return loss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--g", choices=("stylegan", "dcgan"), default="stylegan")
    p.add_argument("--d", choices=("progan", "dcgan"), default="progan")
    p.add_argument("--loss", choices=("ns-r1", "wgan-gp"), default="ns-r1")
    p.add_argument("--output", choices=("linear", "tanh"), default="linear", help="StyleGAN's output")
    p.add_argument("--gamma", type=float, default=0.05, help="R1's gamma (ns-r1)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    torch.manual_seed(a.seed)
    train = load("mnist").train
    data = F.pad(train.images.float() / 127.5 - 1, (2, 2, 2, 2), value=-1.0)  # N x 1 x 32 x 32 in [-1, 1]
    sg = StyleGAN(StyleGANConfig(output=a.output), DataInfo(1, 32, 32, 10, "-11"))
    g = StyleGANGenerator(sg) if a.g == "stylegan" else DCGANGenerator()
    d = (lambda x: sg.D(x, sg.top, 1.0)) if a.d == "progan" else DCGANDiscriminator(
        "layer" if a.loss == "wgan-gp" else "batch")
    d_params = list(sg.D.parameters()) if a.d == "progan" else list(d.parameters())
    g_params = [*sg.mapping.parameters(), *sg.synthesis.parameters()] if a.g == "stylegan" else list(g.parameters())
    opt_d = (torch.optim.Adam(d_params, 2e-3, betas=(0.0, 0.99)) if a.d == "progan"
             else torch.optim.Adam(d_params, 2e-4, betas=(0.5, 0.999)))
    opt_g = (torch.optim.Adam(g_params, 2e-3, betas=(0.0, 0.99)) if a.g == "stylegan"
             else torch.optim.Adam(g_params, 2e-4, betas=(0.5, 0.999)))
    clf, dist = get_extractor("domain"), class_distribution(train.labels, 10)
    log, t0 = open(a.out, "w"), time.time()

    def read(step: int) -> None:
        g.eval()
        with torch.no_grad():
            torch.manual_seed(1234 + step)
            imgs = torch.cat([g(100) for _ in range(5)])[..., 2:30, 2:30].clamp(-1, 1)  # 500 x 1 x 28 x 28
            rec = {"step": step, "images": step * 32}
            if a.g == "stylegan":
                w = sg.map(sg.prior(256))
                s = sg.synthesis.convs[3].affine(w)
                rec |= {"w_spread": float((w - w.mean(0)).norm(dim=1).mean() / w.mean(0).norm()),
                        "style_cv": float(s.std(0).mean() / s.mean(0).abs().mean())}
        g.train()
        cov = mode_coverage(clf.probs((imgs + 1) / 2).argmax(1), dist)
        rec |= {"classes": cov["classes_covered"], "largest": cov["max_class_share"],
                "spread": float(imgs.std(0).mean()), "time_s": time.time() - t0}
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rec.items()}), file=log,
              flush=True)
        torch.save(imgs[:64].clone(), a.out + ".pt")

    for step in range(a.steps + 1):
        if step % 250 == 0:
            read(step)
        if step == a.steps:
            break
        real = data[torch.randint(0, len(data), (32,))]
        with torch.no_grad():
            fake = g(32)
        loss = d_loss(a.loss, d, real, fake, step, a.gamma)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        for q in d_params:
            q.requires_grad_(False)
        out = d(g(32))
        loss = F.softplus(-out).mean() if a.loss == "ns-r1" else -out.mean()
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        for q in d_params:
            q.requires_grad_(True)


if __name__ == "__main__":
    main()
