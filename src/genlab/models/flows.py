"""Normalising flows: NICE (Dinh et al. 2015), RealNVP (Dinh et al. 2017) and Glow (Kingma & Dhariwal 2018).

    z = f(x), f invertible;  log p(x) = log p(z) + log|det dz/dx|                    (change of variables, exact)
    NICE:    4 additive couplings on the flattened image, y_b = x_b + m(x_a), then z = y * exp(S)
             (optionally after RealNVP's logit, model.alpha > 0)
    RealNVP: logit(alpha + (1 - 2 alpha) x), then per scale: 3 checkerboard affine couplings, squeeze,
             3 channel-wise couplings, factor out half; a last scale of 4 checkerboard couplings
    Glow:    per level: squeeze, K x (actnorm, invertible 1x1 conv, affine coupling), split with a learned prior

The loss is the mean negative log-density of the data on its own range (nats per image); every
pre-processing Jacobian is in it, so the `nll` metric only adds D log(256 / range width) for 8-bit data.

Latents: `encode(x)` gives B x D (D = C H W), z = [eps_1, ..., eps_L], the latent factored out at each
scale in turn and then the last scale's, each flattened in C, H, W order. Glow standardises each by its
learned prior, eps = (z - mu) / sigma, so every model's latents have a fixed prior (N(0, I), or NICE's
logistic) and `sample` decodes T * prior draws: z ~ N(mu, (T sigma)^2), T = 0 giving the prior mean.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_choice, check_positive
from ..data.transforms import RANGES
from ..errors import UserError
from ..losses import discrete_nll
from ..nn.flows import (ActNorm, AdditiveCoupling, AffineCoupling, BatchNormFlow, Centre, CheckerboardMask,
                        DiagonalScale, Flatten, FlowSequence, IndexMask, InvConv1x1, LearnedPrior, Logit, MultiScale,
                        Split, Squeeze, glow_net, nice_net, resnet)
from .common import SingleLoss
from .registry import register

LOG_2PI = math.log(2 * math.pi)
REDRAWS = 10  # sample(): rounds of redrawing the prior draws whose inverse left the float range
# densities on dequantised 8-bit data, trained with Adam at the papers' learning rate
DEFAULTS = {"data": {"dequantize": True}, "train": {"lr": 1e-3}}
# NICE with its standardised input trains steadily at the paper's Adam 1e-3 (raw logits swung: 2.39, 4.00, 2.38 test
# bits/dim over 3 epochs of MNIST; standardised 2.09, 2.00, 1.95), at batch 64: twice the steps of an epoch at 128,
# 7-8 digits covered after the first epoch, none above the warning's 50% (48% and 49.8% read as 8 at seeds 0 and 1),
# where 128 covered 7 with 70% read as 8 (BENCHMARKS.md)
NICE_DEFAULTS = {**DEFAULTS, "train": {**DEFAULTS["train"], "batch_size": 64}}


def check_alpha(alpha: float, allow_zero: bool = False) -> None:
    """The logit input map's alpha: positive (or 0 = no logit, where allowed) and below 1/2."""
    check_positive("model.alpha", alpha, allow_zero=allow_zero)
    if alpha >= 0.5:
        raise UserError(f"model.alpha must be below 0.5 (the logit squeezes [0, 1] into [alpha, 1 - alpha]), "
                        f"got {alpha}")


def squeeze_levels(model: str, levels: int, info, min_levels: int, top_pixels: int) -> int:
    """How many 2x2 squeezes: `levels`, or for 0 as many as both sides allow, at most 3.

    Each squeeze needs both sides even; the last scale must keep at least `top_pixels` pixels.
    """
    h, w = info.height, info.width

    def fits(n: int) -> bool:
        return h % 2**n == 0 and w % 2**n == 0 and (h >> n) * (w >> n) >= top_pixels

    if levels == 0:
        levels = max((n for n in range(4) if fits(n)), default=-1)
        if levels < min_levels:
            need = "even sides" if min_levels else f"at least {top_pixels} pixels"
            raise UserError(f"{model} needs images with {need}, got {h}x{w}: set data.resize to such a side")
    elif not fits(levels):
        raise UserError(f"{model} with model.levels={levels} needs image sides divisible by {2**levels} "
                        f"(and at least {top_pixels} pixels left at the last scale), got {h}x{w}: "
                        f"lower model.levels (0 picks the most that fit) or set data.resize")
    return levels


class FlowModel(SingleLoss, nn.Module):
    """What the three flows share: `self.flow` maps images to latents B x D, with log|det dz/dx| per image."""

    invertible = True  # reconstruct(x) == x up to round-off: no reconstruction error to score anomalies by

    def __init__(self, cfg, info, prior: str = "gaussian"):
        super().__init__()
        self.cfg, self.info, self.prior = cfg, info, prior
        self.lo, self.hi = RANGES[info.range]

    @property
    def latent_dim(self) -> int:
        return self.info.dim  # a bijection keeps every dimension

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) per image under N(0, I) or the standard logistic; z: B x D -> B."""
        if self.prior == "logistic":
            return -(F.softplus(z) + F.softplus(-z)).sum(1)  # log sigmoid(z) + log sigmoid(-z)
        return -0.5 * (z.pow(2) + LOG_2PI).sum(1)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log-density of x on the data's range, nats per image: log p(z) + log|det dz/dx|; -> B."""
        z, logdet = self.flow(x)
        return self.prior_log_prob(z) + logdet

    def losses(self, x, y=None):
        nll = -self.log_prob(x).mean()  # the training loss: density nats per image
        # logged bits/dim: of the 8-bit images when dequantised (+ D log(256 / range width)), as genlab eval reports
        discrete = discrete_nll(nll.detach(), self.info.dim, self.info.range) if self.info.dequantized else nll.detach()
        return {"loss": nll, "bits_per_dim": discrete / (self.info.dim * math.log(2))}

    def encode(self, x, y=None):
        """x: B x C x H x W -> z: B x D, every latent (order in the module docstring)."""
        return self.flow(x)[0]

    def decode(self, z, y=None):
        """z: B x D -> images B x C x H x W, the exact inverse of encode, clamped to the data range."""
        return self.flow.inverse(z).clamp(self.lo, self.hi)

    def reconstruct(self, x, y=None):
        return self.decode(self.encode(x))

    def sample(self, n: int, generator: torch.Generator | None = None,
               temperature: float | None = None) -> torch.Tensor:
        """n images decoded from z = T * (a prior draw), T = cfg.temperature unless given.

        A draw far in the prior's tail can leave the float range on its way back: an affine coupling's inverse
        divides by its scale, and a scale near 0 there compounds over the layers (a 3-epoch Glow on MNIST: 43 of
        1000 draws at T = 1, none at 0.7; float64 overflows alike). Such draws are redrawn, up to REDRAWS times,
        so the samples follow the prior restricted to the draws the flow can invert.
        """
        t = self.cfg.temperature if temperature is None else temperature
        x = self.flow.inverse(t * self.prior_draw(n, generator))
        for _ in range(REDRAWS):
            bad = ~torch.isfinite(x.flatten(1)).all(1)
            if not bad.any():
                break
            x[bad] = self.flow.inverse(t * self.prior_draw(int(bad.sum()), generator))
        return x.clamp(self.lo, self.hi)

    def prior_draw(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws of z from the prior: B x D."""
        p = next(self.parameters())
        shape = (n, self.info.dim)
        if self.prior == "logistic":  # inverse CDF: z = log u - log(1 - u)
            u = torch.rand(shape, generator=generator, device=p.device, dtype=p.dtype)
            u = u.clamp_min(torch.finfo(p.dtype).tiny)
            return torch.log(u) - torch.log1p(-u)
        return torch.randn(shape, generator=generator, device=p.device, dtype=p.dtype)


# ---------------------------------------------------------------------------------------------- NICE
@dataclass
class NICEConfig:
    width: int = 1000  # hidden units of each coupling MLP
    layers: int = 5  # hidden layers of each coupling MLP
    prior: str = "logistic"  # logistic (the paper's MNIST choice) | gaussian
    # input map: > 0 = RealNVP's logit(alpha + (1 - 2 alpha) x), as Glow's (the default: on MNIST 1.87 bits/dim and
    # ten digits covered after 34 epochs, the paper's map 4.46 and seven; BENCHMARKS.md); 0 = the paper's pixels as is
    alpha: float = 1e-6
    # standardise each dimension before the couplings, (x - mean) / std from the first batch, then learned (ActNorm on
    # the flat vector; the paper whitens TFD, SVHN and CIFAR-10 but feeds MNIST as is): the MLPs' inputs, logits of up
    # to +-14, come to unit spread, and 3 epochs of MNIST reach 1.95 bits/dim and 10 digits where the raw logits
    # reached 2.13 and 6 (BENCHMARKS.md)
    standardize: bool = True
    temperature: float = 1.0  # sampling: z = T * (a prior draw)

    def validate(self) -> None:
        check_positive("model.width", self.width)
        check_positive("model.layers", self.layers, allow_zero=True)
        check_choice("model.prior", self.prior, ("logistic", "gaussian"))
        check_alpha(self.alpha, allow_zero=True)
        check_positive("model.temperature", self.temperature, allow_zero=True)


@register("nice", NICEConfig, NICE_DEFAULTS, earlier={"alpha": 0.0, "standardize": False})
class NICE(FlowModel):
    """NICE: four additive couplings on the flattened image, a diagonal scaling and a logistic prior."""

    def __init__(self, cfg: NICEConfig, info):
        super().__init__(cfg, info, prior=cfg.prior)
        d = info.dim
        couplings = []
        for i in range(4):  # x_a = even entries, then odd, then even, then odd
            mask = IndexMask.alternate(d, i % 2)
            couplings.append(AdditiveCoupling(mask, nice_net(*mask.sizes, cfg.width, cfg.layers)))
        # the scaling starts where the first batch has the prior's spread: logistic std pi / sqrt(3), Gaussian 1
        spread = math.pi / math.sqrt(3) if cfg.prior == "logistic" else 1.0
        first = [Logit(cfg.alpha, self.lo, self.hi)] if cfg.alpha else []
        standardize = [DiagonalScale(d, centre=True)] if cfg.standardize else []
        # B x C x H x W -> B x D
        self.flow = FlowSequence(*first, Flatten(info.shape), *standardize, *couplings, DiagonalScale(d, spread))


# ---------------------------------------------------------------------------------------------- RealNVP
@dataclass
class RealNVPConfig:
    width: int = 64  # feature maps of the coupling resnets
    layers: int = 4  # residual blocks per coupling resnet (the paper used 8; 4 keeps CPU runs light)
    levels: int = 0  # scales that squeeze and factor out half; 0 = as many as the sides allow (at most 3)
    alpha: float = 0.05  # logit pre-processing: logit(alpha + (1 - 2 alpha) x), the paper's value for 8-bit data
    norm: str = "batch"  # batch (the paper's batch-norm flow layer) | act (Glow's actnorm), after each coupling
    temperature: float = 1.0

    def validate(self) -> None:
        check_positive("model.width", self.width)
        check_positive("model.layers", self.layers, allow_zero=True)
        check_positive("model.levels", self.levels, allow_zero=True)
        check_alpha(self.alpha)
        check_choice("model.norm", self.norm, ("batch", "act"))
        check_positive("model.temperature", self.temperature, allow_zero=True)


@register("realnvp", RealNVPConfig, DEFAULTS)
class RealNVP(FlowModel):
    """RealNVP: logit pre-processing, checkerboard and channel-wise affine couplings, multi-scale."""

    def __init__(self, cfg: RealNVPConfig, info):
        super().__init__(cfg, info)
        # the last scale's checkerboard needs 2 pixels so that both halves exist
        levels = squeeze_levels("realnvp", cfg.levels, info, min_levels=0, top_pixels=2)
        norm = BatchNormFlow if cfg.norm == "batch" else ActNorm

        def coupling(mask, c):
            net = resnet(mask.sizes[0], 2 * mask.sizes[1], cfg.width, cfg.layers)
            return [AffineCoupling(mask, net, scale="tanh"), norm(c)]

        def checkerboard(c, parities):
            return [f for p in parities for f in coupling(CheckerboardMask(c, p), c)]

        c, scales, splits = info.channels, [], []
        for _ in range(levels):
            layers = [*checkerboard(c, (0, 1, 0)), Squeeze()]  # C x H x W -> 4C x H/2 x W/2
            c *= 4
            layers += [f for flip in (False, True, False) for f in coupling(IndexMask.halves(c, flip), c)]
            scales.append(FlowSequence(*layers))
            splits.append(Split(c, learned_prior=False))  # half the channels leave, N(0, I)
            c = splits[-1].keep
        scales.append(FlowSequence(*checkerboard(c, (0, 1, 0, 1))))
        self.flow = FlowSequence(Logit(cfg.alpha, self.lo, self.hi), MultiScale(scales, splits, info.shape))


# ---------------------------------------------------------------------------------------------- Glow
@dataclass
class GlowConfig:
    width: int = 128  # hidden channels of the coupling networks (the paper used 512; 128 for CPU runs)
    depth: int = 8  # K flow steps per level (the paper used 32; 8 for CPU runs)
    levels: int = 0  # L levels, each squeezing 2x2; 0 = as many as the sides allow (at most 3)
    coupling: str = "affine"  # affine | additive
    # input map: 0 = the paper's centring to [-1/2, 1/2]; > 0 = RealNVP's logit(alpha + (1 - 2 alpha) x), whose
    # Jacobian already concentrates the density where 8-bit data piles up at the ends of the range. The default
    # 1e-6 is MNIST's (Papamakarios et al. 2017): on MNIST the centred map left Glow at 3.7 bits/dim after an epoch
    # and its samples overflowed, the logit at 1.31 (BENCHMARKS.md, REPRODUCTION.md)
    alpha: float = 1e-6
    temperature: float = 1.0  # sampling: z ~ N(mu, (T sigma)^2) at every prior

    def validate(self) -> None:
        check_positive("model.width", self.width)
        check_positive("model.depth", self.depth)
        check_positive("model.levels", self.levels, allow_zero=True)
        check_choice("model.coupling", self.coupling, ("affine", "additive"))
        check_alpha(self.alpha, allow_zero=True)
        check_positive("model.temperature", self.temperature, allow_zero=True)


@register("glow", GlowConfig, DEFAULTS)
class Glow(FlowModel):
    """Glow: actnorm, invertible 1x1 convolutions and affine couplings, multi-scale with learned priors."""

    def __init__(self, cfg: GlowConfig, info):
        super().__init__(cfg, info)
        levels = squeeze_levels("glow", cfg.levels, info, min_levels=1, top_pixels=1)
        c, scales, splits = info.channels, [], []
        for level in range(levels):
            c *= 4  # squeeze: C x H x W -> 4C x H/2 x W/2
            steps = [f for _ in range(cfg.depth) for f in self.flow_step(c)]
            if level < levels - 1:
                scales.append(FlowSequence(Squeeze(), *steps))
                splits.append(Split(c, learned_prior=True))
                c = splits[-1].keep
            else:
                scales.append(FlowSequence(Squeeze(), *steps, LearnedPrior(c)))
        first = Logit(cfg.alpha, self.lo, self.hi) if cfg.alpha else Centre(self.lo, self.hi)
        self.flow = FlowSequence(first, MultiScale(scales, splits, info.shape))

    def flow_step(self, c: int) -> list[nn.Module]:
        """One flow step: actnorm, invertible 1x1 conv, coupling of the second channel half on the first."""
        mask = IndexMask.halves(c)
        a, b = mask.sizes
        if self.cfg.coupling == "additive":
            coupling = AdditiveCoupling(mask, glow_net(a, b, self.cfg.width))
        else:
            coupling = AffineCoupling(mask, glow_net(a, 2 * b, self.cfg.width), scale="sigmoid")
        return [ActNorm(c), InvConv1x1(c), coupling]
