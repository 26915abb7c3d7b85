"""ProGAN (Karras et al. 2018): a generator and a discriminator that grow from 4 x 4 to the data's resolution,
each new resolution's block faded in while the previous output is mixed in and then trained alone.

Phases, each `phase_images` images long: 4 x 4 stable, then for each doubling a fade-in (alpha from 0 to 1)
and a stable phase. At resolution r with the new block faded in by alpha:

    G:  out = (1 - alpha) * upsample(toRGB_{r/2}(h_{r/2})) + alpha * toRGB_r(block_r(h_{r/2}))
    D:  h   = (1 - alpha) * fromRGB_{r/2}(avgpool(x))      + alpha * block_r(fromRGB_r(x))
    real images: x_r = (1 - alpha) * upsample(avgpool(x_r)) + alpha * x_r   (the data faded like the fakes)

Losses: WGAN-GP with the drift term, one D step per G step, Adam with betas (0, 0.99):

    L_D = E D(G(z)) - E D(x) + lambda E (||grad D(x^)|| - 1)^2 + eps_drift E D(x)^2    (lambda 10, eps 0.001)
    L_G = -E D(G(z))

Networks (nn/progressive.py): equalised learning rate in every layer, pixelwise feature normalisation after each
convolution in G, the minibatch standard deviation channel before D's last block, LeakyReLU 0.2, G's output
linear (clamped to the data range only when sampling). Images whose sides are not a power of two are padded (the
data range's low end, centred) to the next one and the samples cropped back. The images seen so far, and so the
phase, are a buffer of the model: a run killed mid-fade resumes where it stopped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_positive
from ..data.transforms import RANGES
from ..losses import wgan_gp_drift
from ..nn.progressive import Canvas, EqualizedConv2d, EqualizedLinear, minibatch_stddev, pixel_norm
from ..optim import make_optimizer
from .common import frozen
from .gan import grad_norm
from .registry import register

# the paper's optimiser and minibatch of 16 (Karras et al., appendix A.1, for 4 to 128 px), with which EMA 0.999 is its
# generator average of half-life 10,000 images. MNIST, seed 0: 4 / 10 / 10 classes after epochs 1-3 (the largest
# 74%, 17%, 16%; domain FID-1k 1395, 342, 177), where batch 64 read 2 / 9 / 10 (96%, 40%, 20%; 1622, 867, 470) on
# the CPU (BENCHMARKS.md)
PROGAN_DEFAULTS = {"data": {"range": "-11"},
                   "train": {"lr": 1e-3, "beta1": 0.0, "beta2": 0.99, "batch_size": 16, "ema": 0.999}}


@dataclass
class ProGANConfig:
    latent_dim: int = 128  # z ~ N(0, I) (the paper: 512)
    # feature maps min(fmap_max, 2 fmap_base / side) (the paper: 8192 and 512, so 512 up to 32 px); 64 here keeps a
    # 32 px step near 1.5 s on one CPU core (128 channels: 7 s, the gradient penalty's double backward most of it)
    fmap_base: int = 1024
    fmap_max: int = 64
    # images per fade-in and per stable phase (the paper: 800,000 on 30,000 faces). 8,000 reaches 32 px after
    # 48,000 images, within MNIST's first epoch, so its first samples are full-size digits. MNIST, seed 0, on the
    # CPU: 9, 10 and 10 classes (largest 37%, 15%, 13%) after epochs 1-3; 12,000 left epoch 1 at 16 px, which the
    # mode monitor read as 74% eights (BENCHMARKS.md)
    phase_images: int = 8000
    gp_weight: float = 10.0  # lambda
    drift: float = 0.001  # eps_drift
    mbstd_group: int = 4  # images per minibatch-stddev group

    def validate(self) -> None:
        for name in ("latent_dim", "fmap_base", "fmap_max", "phase_images", "mbstd_group"):
            check_positive(f"model.{name}", getattr(self, name))
        for name in ("gp_weight", "drift"):
            check_positive(f"model.{name}", getattr(self, name), allow_zero=True)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def schedule(images: float, phase_images: int, levels: int) -> tuple[int, float]:
    """(level, alpha) after `images` training images: level 0 is 4 x 4; alpha < 1 while a level fades in."""
    t = images / phase_images
    if t < 1:
        return 0, 1.0
    k = t - 1  # fade-in of level 1 starts here; each level takes two phases
    level = 1 + int(k // 2)
    if level >= levels:
        return levels - 1, 1.0
    return level, min(1.0, k - 2 * (level - 1))


class Generator(nn.Module):
    def __init__(self, latent_dim: int, channels: list[int], out_channels: int):
        super().__init__()
        c0 = channels[0]
        self.dense = EqualizedLinear(latent_dim, c0 * 16, gain=math.sqrt(2) / 4)  # z -> 4 x 4 (the paper's gain)
        self.blocks = nn.ModuleList([nn.ModuleList([EqualizedConv2d(c0, c0, 3)])])
        for c_prev, c in zip(channels, channels[1:]):
            self.blocks.append(nn.ModuleList([EqualizedConv2d(c_prev, c, 3), EqualizedConv2d(c, c, 3)]))
        self.to_rgb = nn.ModuleList([EqualizedConv2d(c, out_channels, 1, gain=1.0) for c in channels])
        self.c0 = c0

    def block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        if i:
            h = F.interpolate(h, scale_factor=2, mode="nearest")  # side doubles
        for conv in self.blocks[i]:
            h = pixel_norm(lrelu(conv(h)))
        return h

    def forward(self, z: torch.Tensor, level: int, alpha: float) -> torch.Tensor:
        """z: B x latent -> B x C x r x r, r = 4 * 2^level (linear output)."""
        h = pixel_norm(lrelu(self.dense(pixel_norm(z))).view(len(z), self.c0, 4, 4))
        h = self.block(0, h)
        prev = h
        for i in range(1, level + 1):
            prev, h = h, self.block(i, h)
        out = self.to_rgb[level](h)
        if level and alpha < 1:
            low = F.interpolate(self.to_rgb[level - 1](prev), scale_factor=2, mode="nearest")
            out = torch.lerp(low, out, alpha)
        return out


class Discriminator(nn.Module):
    """ProGAN's D; with `grow` off (StyleGAN's use) it has a fromRGB layer at the full resolution only."""

    def __init__(self, channels: list[int], in_channels: int, mbstd_group: int, grow: bool = True):
        super().__init__()
        c0 = channels[0]
        self.from_rgb = nn.ModuleList([EqualizedConv2d(in_channels, c, 1) if grow or i == len(channels) - 1
                                       else nn.Identity() for i, c in enumerate(channels)])
        self.blocks = nn.ModuleList([nn.ModuleList()])  # level 0 is the final block below
        for c_prev, c in zip(channels, channels[1:]):
            self.blocks.append(nn.ModuleList([EqualizedConv2d(c, c, 3), EqualizedConv2d(c, c_prev, 3)]))
        self.final_conv = EqualizedConv2d(c0 + 1, c0, 3)
        self.final_dense = EqualizedConv2d(c0, c0, 4, padding=0)  # 4 x 4 -> 1 x 1
        self.out = EqualizedLinear(c0, 1, gain=1.0)
        self.group = mbstd_group

    def block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        for conv in self.blocks[i]:
            h = lrelu(conv(h))
        return F.avg_pool2d(h, 2)  # side halves

    def forward(self, x: torch.Tensor, level: int, alpha: float) -> torch.Tensor:
        """x: B x C x r x r -> critic values B."""
        h = lrelu(self.from_rgb[level](x))
        if level:
            h = self.block(level, h)
            if alpha < 1:
                h = torch.lerp(lrelu(self.from_rgb[level - 1](F.avg_pool2d(x, 2))), h, alpha)
            for i in range(level - 1, 0, -1):
                h = self.block(i, h)
        h = lrelu(self.final_conv(minibatch_stddev(h, self.group)))  # B x (c0 + 1) x 4 x 4 -> B x c0 x 4 x 4
        return self.out(lrelu(self.final_dense(h)).flatten(1)).squeeze(1)


@register("progan", ProGANConfig, PROGAN_DEFAULTS)
class ProGAN(nn.Module):
    """ProGAN: G and D grow from 4x4, each block faded in; equalised rate, pixel norm, minibatch stddev, WGAN-GP."""

    def __init__(self, cfg: ProGANConfig, info):
        super().__init__()
        self.cfg, self.info = cfg, info
        self.canvas = Canvas(info.height, info.width, *RANGES[info.range])
        self.side, self.levels = self.canvas.side, self.canvas.levels
        channels = self.canvas.channels(cfg.fmap_base, cfg.fmap_max)
        self.G = Generator(cfg.latent_dim, channels, info.channels)
        self.D = Discriminator(channels, info.channels, cfg.mbstd_group)
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.float64))

    # ------------------------------------------------------------ phases and sizes
    def phase(self) -> tuple[int, float]:
        """(level, alpha) of the current phase."""
        return schedule(float(self.images_seen), self.cfg.phase_images, self.levels)

    def resolution(self) -> int:
        return 4 * 2 ** self.phase()[0]

    def real_at(self, x: torch.Tensor, level: int, alpha: float) -> torch.Tensor:
        """The data at the phase's resolution, faded like the fakes."""
        r = 4 * 2**level
        x = self.canvas.pad(x)
        x = F.avg_pool2d(x, self.side // r) if r < self.side else x
        if level and alpha < 1:
            x = torch.lerp(F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest"), x, alpha)
        return x

    # ------------------------------------------------------------ capabilities
    def prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.cfg.latent_dim, generator=generator, device=self.images_seen.device)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) at the current phase, upsampled (nearest) to the data's size and clamped to its range."""
        level, alpha = self.phase()
        out = self.G(z, level, alpha)
        out = F.interpolate(out, size=(self.side, self.side), mode="nearest") if out.shape[-1] < self.side else out
        return self.canvas.crop(out)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode(self.prior(n, generator))

    def trainable_now(self) -> set[str]:
        """Names of the parameters the current phase trains (the blocks up to its level, and the level below's
        RGB layers while fading in)."""
        level, alpha = self.phase()
        keep = {f"{net}.blocks.{i}." for net in ("G", "D") for i in range(level + 1)}
        keep |= {f"G.to_rgb.{level}.", f"D.from_rgb.{level}."}
        if level and alpha < 1:
            keep |= {f"G.to_rgb.{level - 1}.", f"D.from_rgb.{level - 1}."}
        fixed = ("G.blocks.", "D.blocks.", "G.to_rgb.", "D.from_rgb.")
        return {n for n, _ in self.named_parameters() if not n.startswith(fixed) or any(n.startswith(k) for k in keep)}

    # ------------------------------------------------------------ training
    def configure_optimizers(self, cfg) -> dict[str, torch.optim.Optimizer]:
        return {"d": make_optimizer(self.D.parameters(), cfg), "g": make_optimizer(self.G.parameters(), cfg)}

    def train_step(self, batch, opts, step: int) -> dict[str, torch.Tensor]:
        x = batch[0]
        level, alpha = self.phase()
        real = self.real_at(x, level, alpha)
        with torch.no_grad():
            fake = self.G(self.prior(len(x)), level, alpha)
        loss_d, d_real, d_fake, gp = wgan_gp_drift(lambda v: self.D(v, level, alpha), real, fake,
                                                   self.cfg.gp_weight, self.cfg.drift)
        opts["d"].step(loss_d)
        with frozen(self.D):
            loss_g = -self.D(self.G(self.prior(len(x)), level, alpha), level, alpha).mean()
            opts["g"].step(loss_g)
        self.images_seen += len(x)
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "d_real": d_real.detach().mean(),
                "d_fake": d_fake.detach().mean(), "gp": gp.detach(), "resolution": torch.tensor(float(4 * 2**level)),
                "alpha": torch.tensor(alpha), "grad_norm_d": grad_norm(opts["d"].params),
                "grad_norm_g": grad_norm(opts["g"].params)}
