"""StyleGAN (Karras et al. 2019) with StyleGAN2's weight modulation (Karras et al. 2020), or the first paper's AdaIN.

Mapping network f: z -> w, `mapping_layers` equalised linear layers at a learning rate times 0.01, after
normalising z. Synthesis network g: a learned constant 4 x 4 input, then per resolution up to the data's: two
3 x 3 convolutions (one at 4 x 4), each styled by its own w_i through an affine map A_i, with per-pixel noise
scaled by a learned strength, and a 1 x 1 toRGB per resolution summed into the image (StyleGAN2's skip output).

    modulated (StyleGAN2):  s = A(w);  w'_ijk = s_i w_ijk;  w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps)
    adain (StyleGAN):       (y_s, y_b) = A(w);  AdaIN(x_i) = y_s,i (x_i - mu(x_i)) / sigma(x_i) + y_b,i

Style mixing regularisation: with probability `mixing` an image takes w from z_1 for the layers before a random
crossover and from z_2 after it. Truncation: w' = w_avg + psi (w - w_avg), w_avg the running mean of f(z).
Losses, as the first paper trained its two data sets (`loss`): `ns-r1` (FFHQ's, and StyleGAN2's), non-saturating
with lazy R1 (gamma / 2 E ||grad D(x)||^2 on real images, every `r1_every` D steps and scaled by it); `wgan-gp`
(CelebA-HQ's, ProGAN's loss), WGAN-GP with the drift term. Either with, optionally, the path length regulariser
(every `pl_every` G steps):

    ns-r1:    L_D = E softplus(D(G(z))) + E softplus(-D(x)) [+ r1_every gamma / 2 E ||grad_x D(x)||^2]
              L_G = E softplus(-D(G(z)))
    wgan-gp:  L_D = E D(G(z)) - E D(x) + lambda E (||grad D(x^)|| - 1)^2 + eps_drift E D(x)^2
              L_G = -E D(G(z))
    L_G += pl_every w_pl E (||J_w^T y||_2 - a)^2, y ~ N(0, I) / sqrt(H W), a its running mean

Output (`output`): the papers' linear image, or (the default) tanh mapped onto the data's range, as DCGAN's. On
MNIST with the non-saturating loss, the linear output drew one digit shape for every latent after 16,000 images,
with grey speckle left in the background (the per-pixel spread across latents fell from 0.63 to 0.13); the tanh
output drew digits of all ten classes (largest 24%, spread 0.38). WGAN-GP kept the linear output varied too (nine
classes after 32,000 images), and DCGAN's generator against this discriminator and loss covered the ten digits
(BENCHMARKS.md, issue 12, eighth session). Four pixels in five of a digit sit at the range's low end, which a linear
output has to hit exactly. With the defaults, three epochs of MNIST cover the ten digits after every epoch (largest
class 16% after the third; domain FID 89.4 on 10,000 samples).

The discriminator is ProGAN's at full resolution (equalised rate, minibatch stddev). Images whose sides are not a
power of two are padded (centred, with the range's low end) and the samples cropped back, as in ProGAN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_choice, check_positive
from ..data.transforms import RANGES
from ..errors import UserError
from ..losses import wgan_gp_drift
from ..nn.progressive import Canvas, EqualizedLinear, pixel_norm
from ..optim import make_optimizer
from .common import frozen
from .gan import grad_norm
from .progan import Discriminator, lrelu
from .registry import register

STYLEGAN_DEFAULTS = {"data": {"range": "-11"},
                     "train": {"lr": 2e-3, "beta1": 0.0, "beta2": 0.99, "batch_size": 32, "ema": 0.999}}


@dataclass
class StyleGANConfig:
    latent_dim: int = 128  # z and w (the paper: 512)
    mapping_layers: int = 8  # f's depth
    mapping_lr_mul: float = 0.01  # f's learning-rate multiplier
    fmap_base: int = 1024  # feature maps min(fmap_max, 2 fmap_base / side), as ProGAN's (sized for a CPU)
    fmap_max: int = 64  # (the paper: 512)
    style: str = "modulated"  # modulated (StyleGAN2's modulation/demodulation) | adain (StyleGAN's)
    mixing: float = 0.9  # probability of style mixing per image
    loss: str = "ns-r1"  # ns-r1 | wgan-gp (see the module's docstring)
    r1_gamma: float = 0.05  # gamma of the R1 penalty (StyleGAN2 used 10 at 1024 px and scales it with the pixel count)
    r1_every: int = 16  # lazy regularisation: R1 every this many D steps
    gp_weight: float = 10.0  # wgan-gp: lambda
    drift: float = 0.001  # wgan-gp: eps_drift
    pl_weight: float = 0.0  # path length regularisation weight (StyleGAN2: 2); 0 = off
    pl_every: int = 4  # ... every this many G steps
    w_avg_beta: float = 0.995  # decay of the tracked mean w (truncation's centre)
    truncation: float = 1.0  # psi of sampling; 1 = none
    output: str = "tanh"  # tanh (scaled to the data's range) | linear (the papers'; see the module's docstring)
    mbstd_group: int = 4  # D's minibatch-stddev group

    def validate(self) -> None:
        for name in ("latent_dim", "mapping_layers", "fmap_base", "fmap_max", "r1_every", "pl_every", "mbstd_group"):
            check_positive(f"model.{name}", getattr(self, name))
        for name in ("mapping_lr_mul", "r1_gamma", "gp_weight", "drift", "pl_weight", "truncation"):
            check_positive(f"model.{name}", getattr(self, name), allow_zero=name != "mapping_lr_mul")
        check_choice("model.style", self.style, ("modulated", "adain"))
        check_choice("model.loss", self.loss, ("ns-r1", "wgan-gp"))
        check_choice("model.output", self.output, ("tanh", "linear"))
        for name in ("mixing", "w_avg_beta"):
            if not 0 <= getattr(self, name) <= 1:
                raise UserError(f"model.{name} must lie in [0, 1], got {getattr(self, name)}")


class StyledConv(nn.Module):
    """A k x k convolution styled by w (modulation/demodulation or AdaIN), noise, bias and LeakyReLU; `up` doubles
    the side first; `rgb` makes it a toRGB layer (1 x 1, modulated without demodulation, no noise, linear)."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, style: str, up: bool = False, rgb: bool = False):
        super().__init__()
        k = 1 if rgb else 3
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.scale = (1 if rgb else math.sqrt(2)) / math.sqrt(c_in * k * k)  # equalised rate (He's constant)
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.style, self.up, self.rgb = ("modulated" if rgb else style), up, rgb
        self.affine = EqualizedLinear(w_dim, c_in if self.style == "modulated" else 2 * c_out, gain=1.0, bias=1.0)
        if style == "adain" and not rgb:  # y_b starts at 0, y_s at 1
            with torch.no_grad():
                self.affine.bias[c_out:] = 0.0
        self.noise_strength = nn.Parameter(torch.zeros(())) if not rgb else None

    def modulated_weight(self, w: torch.Tensor) -> torch.Tensor:
        """Each image's kernel: the weights scaled by its style per input channel and, except in toRGB,
        demodulated to unit norm per output channel; B x w_dim -> B x C_out x C_in x k x k."""
        wt = (self.weight * self.scale)[None] * self.affine(w)[:, None, :, None, None]
        return wt if self.rgb else wt * torch.rsqrt(wt.pow(2).sum((2, 3, 4), keepdim=True) + 1e-8)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)  # side doubles
        b, c, h, wd = x.shape
        k = self.weight.shape[-1]
        if self.style == "modulated":
            wt = self.modulated_weight(w)  # B x C_out x C_in x k x k
            out = F.conv2d(x.reshape(1, b * c, h, wd), wt.reshape(-1, c, k, k), padding=k // 2,
                           groups=b).view(b, -1, h, wd)  # one group per image
        else:
            out = F.conv2d(x, self.weight * self.scale, padding=k // 2)
        if noise is not None and self.noise_strength is not None:
            out = out + self.noise_strength * noise  # noise: B x 1 x H x W
        out = out + self.bias.view(1, -1, 1, 1)
        if self.rgb:
            return out
        out = lrelu(out) * math.sqrt(2)  # StyleGAN2's gain after the activation
        if self.style == "adain":
            ys, yb = self.affine(w).chunk(2, 1)  # B x C_out each
            out = ys[..., None, None] * F.instance_norm(out) + yb[..., None, None]
        return out


class Synthesis(nn.Module):
    def __init__(self, w_dim: int, channels: list[int], out_channels: int, style: str):
        super().__init__()
        self.const = nn.Parameter(torch.randn(1, channels[0], 4, 4))
        self.convs = nn.ModuleList([StyledConv(channels[0], channels[0], w_dim, style)])
        self.to_rgb = nn.ModuleList([StyledConv(channels[0], out_channels, w_dim, style, rgb=True)])
        for c_prev, c in zip(channels, channels[1:]):
            self.convs.append(StyledConv(c_prev, c, w_dim, style, up=True))
            self.convs.append(StyledConv(c, c, w_dim, style))
            self.to_rgb.append(StyledConv(c, out_channels, w_dim, style, rgb=True))
        self.num_ws = len(self.convs) + 1  # StyleGAN2: each conv its own w; each toRGB shares the next conv's

    def forward(self, ws: torch.Tensor, noises: list[torch.Tensor | None]) -> torch.Tensor:
        """ws: B x num_ws x w_dim; noises: one B x 1 x H x W tensor (or None) per conv -> B x C x side x side."""
        x = self.const.expand(len(ws), -1, -1, -1)
        x = self.convs[0](x, ws[:, 0], noises[0])
        img = self.to_rgb[0](x, ws[:, 1], None)
        for level in range(1, len(self.to_rgb)):
            i = 2 * level - 1
            x = self.convs[i](x, ws[:, i], noises[i])
            x = self.convs[i + 1](x, ws[:, i + 1], noises[i + 1])
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False) + \
                self.to_rgb[level](x, ws[:, i + 2], None)  # skip architecture: the image sums every level's RGB
        return img

    def noise_shapes(self) -> list[int]:
        """The side of each conv's noise input."""
        return [4] + [4 * 2 ** (1 + i // 2) for i in range(len(self.convs) - 1)]


@register("stylegan", StyleGANConfig, STYLEGAN_DEFAULTS, earlier={"output": "linear"})
class StyleGAN(nn.Module):
    """StyleGAN: mapping network, styled convolutions (StyleGAN2 modulation or AdaIN), noise, mixing, truncation, R1."""

    def __init__(self, cfg: StyleGANConfig, info):
        super().__init__()
        self.cfg, self.info = cfg, info
        self.canvas = Canvas(info.height, info.width, *RANGES[info.range])
        self.side, levels = self.canvas.side, self.canvas.levels
        channels = self.canvas.channels(cfg.fmap_base, cfg.fmap_max)
        d = cfg.latent_dim
        self.mapping = nn.Sequential(*[m for _ in range(cfg.mapping_layers)
                                       for m in (EqualizedLinear(d, d, lr_mul=cfg.mapping_lr_mul), nn.LeakyReLU(0.2))])
        self.synthesis = Synthesis(d, channels, info.channels, cfg.style)
        self.D = Discriminator(channels, info.channels, cfg.mbstd_group, grow=False)
        self.top = levels - 1
        self.register_buffer("w_avg", torch.zeros(d))
        self.register_buffer("pl_mean", torch.zeros(()))
        self.register_buffer("g_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_r1", torch.zeros(()), persistent=False)  # logged again between lazy steps

    # ------------------------------------------------------------ mapping, truncation, synthesis
    def prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.cfg.latent_dim, generator=generator, device=self.w_avg.device)

    def map(self, z: torch.Tensor, psi: float = 1.0) -> torch.Tensor:
        """w = f(z), truncated towards the tracked mean by psi; B x latent -> B x latent."""
        w = self.mapping(pixel_norm(z))
        return torch.lerp(self.w_avg, w, psi) if psi != 1 else w

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        return w[:, None].expand(-1, self.synthesis.num_ws, -1)  # B x num_ws x d

    def noise(self, n: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        dev = self.w_avg.device
        return [torch.randn(n, 1, s, s, generator=generator, device=dev) for s in self.synthesis.noise_shapes()]

    def synthesize(self, ws: torch.Tensor, noises: list[torch.Tensor | None] | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Images at the padded side, before the crop (D sees them so): tanh mapped onto the data's range, or linear."""
        img = self.synthesis(ws, self.noise(len(ws), generator) if noises is None else noises)
        if self.cfg.output == "linear":
            return img
        lo, hi = self.canvas.lo, self.canvas.hi
        return lo + (hi - lo) * (torch.tanh(img) + 1) / 2

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Canvas-sized output -> the data's size, clamped to its range."""
        return self.canvas.crop(x)

    # ------------------------------------------------------------ capabilities
    def decode(self, z: torch.Tensor, truncation: float | None = None) -> torch.Tensor:
        """G(z) at truncation psi (the config's by default), with fresh noise."""
        psi = self.cfg.truncation if truncation is None else truncation
        return self.finish(self.synthesize(self.broadcast(self.map(z, psi))))

    def sample(self, n: int, generator: torch.Generator | None = None, truncation: float | None = None) -> torch.Tensor:
        if truncation is not None and not 0 <= truncation <= 1:
            raise UserError(f"--truncation is psi in [0, 1], got {truncation}")
        psi = self.cfg.truncation if truncation is None else truncation
        z = self.prior(n, generator)
        return self.finish(self.synthesize(self.broadcast(self.map(z, psi)), generator=generator))

    def figures(self, out_dir: str | Path, generator: torch.Generator | None = None) -> list[Path]:
        """The papers' figures: style_mixing.png, truncation.png, noise.png (stylegan_figures in viz)."""
        from ..viz import stylegan_figures

        return stylegan_figures(self, Path(out_dir), generator)

    # ------------------------------------------------------------ training
    def mix(self, w1: torch.Tensor, w2: torch.Tensor, cut: torch.Tensor) -> torch.Tensor:
        """ws taking w1 on the layers before each image's crossover `cut` and w2 from it on; -> B x num_ws x d."""
        after = torch.arange(self.synthesis.num_ws, device=w1.device)[None] >= cut[:, None]  # B x num_ws
        return torch.where(after[..., None], w2[:, None], w1[:, None])

    def mixed_ws(self, n: int) -> torch.Tensor:
        """Training ws: with probability `mixing` an image mixes two latents at a random crossover."""
        w1, w2 = self.map(self.prior(n)), self.map(self.prior(n))
        k = self.synthesis.num_ws
        cut = torch.randint(1, k, (n,), device=w1.device)
        return self.mix(w1, w2, torch.where(torch.rand(n, device=w1.device) < self.cfg.mixing, cut,
                                            torch.full_like(cut, k)))

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """D's logit per image (images of the data's size, or already padded); -> B."""
        return self.D(self.canvas.pad(x), self.top, 1.0)

    def configure_optimizers(self, cfg) -> dict[str, torch.optim.Optimizer]:
        g = [*self.mapping.parameters(), *self.synthesis.parameters()]
        return {"d": make_optimizer(self.D.parameters(), cfg), "g": make_optimizer(g, cfg)}

    def d_loss_ns_r1(self, real, fake, step: int):
        """Logistic loss, lazy R1 on the real images; -> (loss, D(x), D(G(z)), logged terms)."""
        cfg = self.cfg
        lazy_r1 = cfg.r1_gamma > 0 and step % cfg.r1_every == 0
        real.requires_grad_(lazy_r1)
        d_real, d_fake = self.critic(real), self.critic(fake)
        loss = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
        if lazy_r1:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            r1 = grad.pow(2).flatten(1).sum(1).mean()
            loss = loss + cfg.r1_every * cfg.r1_gamma / 2 * r1
            self.last_r1 = r1.detach()
        return loss, d_real, d_fake, {"r1": self.last_r1}

    def d_loss_wgan_gp(self, real, fake, step: int):
        """WGAN-GP with the drift term (ProGAN's); -> (loss, D(x), D(G(z)), logged terms)."""
        loss, d_real, d_fake, gp = wgan_gp_drift(self.critic, real, fake, self.cfg.gp_weight, self.cfg.drift)
        return loss, d_real, d_fake, {"gp": gp.detach()}

    D_LOSSES = {"ns-r1": d_loss_ns_r1, "wgan-gp": d_loss_wgan_gp}
    G_LOSSES = {"ns-r1": lambda d_fake: F.softplus(-d_fake).mean(), "wgan-gp": lambda d_fake: -d_fake.mean()}

    def train_step(self, batch, opts, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        real = self.canvas.pad(batch[0])
        n = len(real)
        with torch.no_grad():
            fake = self.synthesize(self.mixed_ws(n))
        loss_d, d_real, d_fake, terms = self.D_LOSSES[cfg.loss](self, real, fake, step)
        opts["d"].step(loss_d)
        # G: the loss's generator side, the running mean of w, optionally the path length regulariser
        with frozen(self.D):
            ws = self.mixed_ws(n)
            loss_g = self.G_LOSSES[cfg.loss](self.critic(self.synthesize(ws)))
            if cfg.pl_weight and int(self.g_steps) % cfg.pl_every == 0:
                pl = self.path_length_penalty(max(1, n // 2))
                loss_g = loss_g + cfg.pl_every * cfg.pl_weight * pl
            opts["g"].step(loss_g)
        if cfg.pl_weight:
            terms["path_length"] = self.pl_mean.clone()
        with torch.no_grad():
            self.w_avg.lerp_(ws[:, 0].mean(0), 1 - cfg.w_avg_beta)
        self.g_steps += 1
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "d_real": d_real.detach().mean(),
                "d_fake": d_fake.detach().mean(), **terms, "grad_norm_d": grad_norm(opts["d"].params),
                "grad_norm_g": grad_norm(opts["g"].params)}

    def path_length_penalty(self, n: int) -> torch.Tensor:
        """(||J_w^T y|| - a)^2 with y ~ N(0, I) / sqrt(H W); a tracks the lengths' mean (decay 0.99)."""
        ws = self.broadcast(self.map(self.prior(n))).detach().requires_grad_(True)
        img = self.synthesize(ws)
        y = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
        lengths = grad.pow(2).sum(2).mean(1).sqrt()  # B
        with torch.no_grad():
            self.pl_mean.lerp_(lengths.mean(), 0.01)
        return (lengths - self.pl_mean).pow(2).mean()
