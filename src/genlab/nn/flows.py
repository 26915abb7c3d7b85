"""Invertible layers for normalising flows (NICE, RealNVP, Glow).

    log p(x) = log p(z) + sum_k log|det dh_k / dh_{k-1}|,   z = f_K o ... o f_1 (x)       (change of variables)

Every layer maps `forward(x) -> (y, logdet)`, logdet = log|det dy/dx| per image (shape B), and back with
`inverse(y) -> x`; `out_shape` says how it changes a C x H x W shape. The layers and their log-determinants:

    AdditiveCoupling (NICE)   y_a = x_a,  y_b = x_b + m(x_a)                            log|det| = 0
    AffineCoupling (RealNVP)  y_a = x_a,  y_b = x_b * exp(s) + t,  s = c tanh(h(x_a))   log|det| = sum s
      Glow's scale                        s = log sigmoid(h(x_a) + 2)                   log|det| = sum s
    ActNorm (Glow)            y = (x + b) * exp(log_s), per channel                     log|det| = HW sum log_s
    InvConv1x1 (Glow)         y = W x per pixel, W = P L (U + diag(sign_s exp(log_s)))  log|det| = HW sum log_s
    BatchNormFlow (RealNVP)   y = (x - mu) / sqrt(var + eps) * exp(log_g) + beta
                                                        log|det| = HW sum (log_g - log(var + eps) / 2)
    DiagonalScale (NICE)      y = x * exp(S), or (x + b) * exp(S)                       log|det| = sum S
    Squeeze                   C x H x W -> 4C x H/2 x W/2, 2x2 blocks into channels     log|det| = 0
    Logit (RealNVP)           y = logit(p),  p = alpha + (1 - 2 alpha) (x - lo) / (hi - lo)
                                                        log|det| = sum log((1 - 2 alpha) / ((hi - lo) p (1 - p)))
    Centre (Glow)             y = (x - lo) / (hi - lo) - 1/2                            log|det| = -D log(hi - lo)
    MultiScale (RealNVP)      after each scale but the last, half the channels leave as latents; Glow's
                              learned prior standardises them, eps = (z - mu(h)) / sigma(h),
                                                        log|det| = -sum log sigma
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .blocks import mlp


def per_image(t: torch.Tensor) -> torch.Tensor:
    """Sum over every axis but the batch: B x ... -> B."""
    return t.flatten(1).sum(1)


class Flow(nn.Module):
    """An invertible map: forward(x) -> (y, logdet B), inverse(y) -> x."""

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape


class FlowSequence(Flow):
    """f_K o ... o f_1: log-determinants add up; the inverse runs the layers backwards."""

    def __init__(self, *layers: Flow):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        logdet = x.new_zeros(len(x))
        for f in self.layers:
            x, ld = f(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y):
        for f in reversed(self.layers):
            y = f.inverse(y)
        return y

    def out_shape(self, shape):
        for f in self.layers:
            shape = f.out_shape(shape)
        return shape


# ---------------------------------------------------------------------------------------------- couplings
class IndexMask(nn.Module):
    """Partition along dim 1 by index: x_a = x[:, a], x_b = x[:, b] (channel halves, or odd/even entries)."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.register_buffer("a", a, persistent=False)
        self.register_buffer("b", b, persistent=False)
        self.register_buffer("order", torch.argsort(torch.cat([a, b])), persistent=False)  # cat(x_a, x_b) -> x
        self.sizes = (len(a), len(b))  # entries along dim 1 the net reads and writes

    @classmethod
    def halves(cls, n: int, flip: bool = False) -> IndexMask:
        first, second = torch.arange(n // 2), torch.arange(n // 2, n)
        return cls(second, first) if flip else cls(first, second)

    @classmethod
    def alternate(cls, n: int, parity: int) -> IndexMask:
        """x_a = entries parity, parity + 2, ...; x_b = the others (NICE's odd/even split)."""
        return cls(torch.arange(parity, n, 2), torch.arange(1 - parity, n, 2))

    def split(self, x):
        return x[:, self.a], x[:, self.b]

    def merge(self, xa, yb):
        return torch.cat([xa, yb], 1)[:, self.order]

    def total(self, t):
        """Sum of a per-entry map of x_b (a log-determinant) per image."""
        return per_image(t)


class CheckerboardMask(nn.Module):
    """x_a = the pixels with (i + j) % 2 == parity, every channel; the net sees x with the x_b pixels zeroed."""

    def __init__(self, channels: int, parity: int):
        super().__init__()
        self.parity = parity
        self.sizes = (channels, channels)

    def mask(self, x):
        i = torch.arange(x.shape[-2], device=x.device)[:, None]
        j = torch.arange(x.shape[-1], device=x.device)
        return ((i + j) % 2 == self.parity).to(x.dtype)  # H x W, 1 on x_a

    def split(self, x):
        return x * self.mask(x), x  # x_b stays full-size; merge keeps only its pixels

    def merge(self, xa, yb):
        return xa + (1 - self.mask(xa)) * yb

    def total(self, t):
        return per_image((1 - self.mask(t)) * t)


class AdditiveCoupling(Flow):
    """NICE: y_a = x_a, y_b = x_b + m(x_a); volume preserving. `net` maps sizes[0] -> sizes[1] along dim 1."""

    def __init__(self, mask: nn.Module, net: nn.Module):
        super().__init__()
        self.mask, self.net = mask, net

    def forward(self, x):
        xa, xb = self.mask.split(x)
        return self.mask.merge(xa, xb + self.net(xa)), x.new_zeros(len(x))

    def inverse(self, y):
        ya, yb = self.mask.split(y)
        return self.mask.merge(ya, yb - self.net(ya))


class AffineCoupling(Flow):
    """y_a = x_a, y_b = x_b * exp(s) + t with (h, t) = net(x_a); log-det = sum over x_b of s.

    scale="tanh" (RealNVP): s = scale * tanh(h), a learned per-channel bound;
    scale="sigmoid" (Glow): s = log sigmoid(h + 2), so exp(s) in (0, 1) starts near 0.88 (Glow writes
    y_b = (x_b + t') * sigmoid(h + 2), the same map with t = t' * sigmoid(h + 2)).
    `net` maps sizes[0] -> 2 * sizes[1] channels: h first, then t.
    """

    def __init__(self, mask: nn.Module, net: nn.Module, scale: str = "tanh"):
        super().__init__()
        self.mask, self.net, self.scale = mask, net, scale
        if scale == "tanh":
            self.tanh_scale = nn.Parameter(torch.ones(mask.sizes[1]))

    def _log_scale_shift(self, xa):
        h, t = self.net(xa).chunk(2, 1)
        if self.scale == "tanh":
            bound = self.tanh_scale.view(1, -1, *[1] * (h.dim() - 2))
            return bound * torch.tanh(h), t
        return F.logsigmoid(h + 2.0), t

    def forward(self, x):
        xa, xb = self.mask.split(x)
        s, t = self._log_scale_shift(xa)
        return self.mask.merge(xa, xb * torch.exp(s) + t), self.mask.total(s)

    def inverse(self, y):
        ya, yb = self.mask.split(y)
        s, t = self._log_scale_shift(ya)
        return self.mask.merge(ya, (yb - t) * torch.exp(-s))


def nice_net(n_in: int, n_out: int, width: int, layers: int) -> nn.Sequential:
    """NICE's coupling function: a ReLU MLP with `layers` hidden layers of `width` units, its last layer
    starting near zero (as glow_net's) so that each coupling starts near the identity."""
    net = mlp([n_in, *[width] * layers, n_out])
    nn.init.normal_(net[-1].weight, std=1e-3)
    nn.init.zeros_(net[-1].bias)
    return net


def glow_net(c_in: int, c_out: int, width: int) -> nn.Sequential:
    """Glow's coupling network: 3x3 conv, ReLU, 1x1 conv, ReLU, 3x3 conv that starts near zero.

    Glow initialises the last conv to exactly zero so each coupling starts as the identity; a zero there
    would also zero the gradients of the two convs before it until it moved, so it starts at 1e-3 scale
    instead: the coupling is the identity to within ~1e-3 and every weight learns from the first step.
    """
    last = nn.Conv2d(width, c_out, 3, padding=1)
    nn.init.normal_(last.weight, std=1e-3)
    nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, width, 1), nn.ReLU(), last)


class ResidualBlock(nn.Module):
    """x + conv3x3(ReLU(conv3x3(ReLU(x)))) at a fixed width."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                                  nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


def resnet(c_in: int, c_out: int, width: int, blocks: int) -> nn.Sequential:
    """RealNVP's coupling network: 3x3 conv to `width`, `blocks` residual blocks, ReLU, 3x3 conv out."""
    return nn.Sequential(nn.Conv2d(c_in, width, 3, padding=1), *[ResidualBlock(width) for _ in range(blocks)],
                         nn.ReLU(), nn.Conv2d(width, c_out, 3, padding=1))


# ---------------------------------------------------------------------------------------------- normalisation
def batch_moments(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (biased) variance of x along `dim`, averaged over the ranks under torch.distributed."""
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    mean = x.mean(dim)
    if world > 1:
        dist.all_reduce(mean)
        mean /= world
    var = (x - mean.unsqueeze(dim)).pow(2).mean(dim)
    if world > 1:
        dist.all_reduce(var)
        var /= world
    return mean, var


class ActNorm(Flow):
    """Glow's activation normalisation: y = (x + b) * exp(log_s) per channel.

    Data-dependent init: the first training batch sets b = -mean, log_s = -log(std + 1e-6) per channel,
    so that batch leaves with zero mean and unit variance. The statistics are averaged over all ranks
    under torch.distributed, and the `initialized` buffer keeps a loaded model from initialising again.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x):
        mean, var = batch_moments(x.transpose(0, 1).flatten(1), 1)  # per channel, over B H W
        self.bias.copy_(-mean.view_as(self.bias))
        self.log_scale.copy_(-torch.log(var.sqrt() + 1e-6).view_as(self.log_scale))
        self.initialized.fill_(True)

    def forward(self, x):
        if self.training and not self.initialized:
            self._initialize(x)
        hw = x.shape[2] * x.shape[3]
        return (x + self.bias) * torch.exp(self.log_scale), (hw * self.log_scale.sum()).expand(len(x))

    def inverse(self, y):
        return y * torch.exp(-self.log_scale) - self.bias


class BatchNormFlow(Flow):
    """RealNVP's batch normalisation as a flow layer, per channel.

    Training: the batch's mean and (biased) variance, folded into running averages; eval: the running
    averages, which makes the layer a fixed affine map per image. The inverse always uses the running
    averages, so it inverts the eval-mode forward exactly.
    """

    def __init__(self, channels: int, momentum: float = 0.05, eps: float = 1e-4):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.log_gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("running_mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("running_var", torch.ones(1, channels, 1, 1))

    def forward(self, x):
        if self.training:
            mean = x.mean((0, 2, 3), keepdim=True)
            var = x.var((0, 2, 3), unbiased=False, keepdim=True)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var, self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean) * torch.rsqrt(var + self.eps) * torch.exp(self.log_gamma) + self.beta
        hw = x.shape[2] * x.shape[3]
        return y, (hw * (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum()).expand(len(x))

    def inverse(self, y):
        std = torch.sqrt(self.running_var + self.eps)
        return (y - self.beta) * torch.exp(-self.log_gamma) * std + self.running_mean


class DiagonalScale(Flow):
    """NICE's final scaling layer: y = x * exp(S), one S per dimension of the flattened image; with
    `centre`, y = (x + b) * exp(S), a per-dimension standardisation (ActNorm on the flat vector).

    Data-dependent init (as ActNorm's): the first training batch sets S = log(target_std / std(x)) per
    dimension (and b = -mean(x)), so that batch leaves with the prior's spread. NICE's paper starts S at 0; Adam
    then moves it about the learning rate a step, and the background pixels' S (log(1.81 / 0.0011) = 7.4 on
    dequantised MNIST) takes thousands of steps to get there: until it does, samples are covered in speckle.
    """

    def __init__(self, dim: int, target_std: float = 1.0, centre: bool = False):
        super().__init__()
        self.target_std = target_std
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if centre else None
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x):
        mean, var = batch_moments(x, 0)
        self.log_scale.copy_(math.log(self.target_std) - torch.log(var.sqrt() + 1e-6))
        if self.bias is not None:
            self.bias.copy_(-mean)
        self.initialized.fill_(True)

    def forward(self, x):
        if self.training and not self.initialized:
            self._initialize(x)
        if self.bias is not None:
            x = x + self.bias
        return x * torch.exp(self.log_scale), self.log_scale.sum().expand(len(x))

    def inverse(self, y):
        x = y * torch.exp(-self.log_scale)
        return x - self.bias if self.bias is not None else x


# ---------------------------------------------------------------------------------------------- permutations, shapes
class InvConv1x1(Flow):
    """Glow's invertible 1x1 convolution, LU-decomposed so that log|det W| = sum log|s| costs O(C).

    W = P L (U + diag(sign_s * exp(log_s))): P a fixed permutation, L unit lower triangular, U strictly
    upper triangular (their free entries are the parameters), initialised from a random rotation.
    """

    def __init__(self, channels: int):
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        p, lower, upper = torch.linalg.lu(w)
        s = upper.diagonal()
        rows, cols = torch.tril_indices(channels, channels, -1)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", s.sign())
        self.lower = nn.Parameter(lower[rows, cols].clone())
        self.upper = nn.Parameter(upper[cols, rows].clone())
        self.log_s = nn.Parameter(s.abs().log())

    def weight(self) -> torch.Tensor:
        c = len(self.log_s)
        rows, cols = torch.tril_indices(c, c, -1, device=self.log_s.device)
        eye = torch.eye(c, dtype=self.log_s.dtype, device=self.log_s.device)
        lower = eye.index_put((rows, cols), self.lower)
        upper = torch.diag(self.sign_s * torch.exp(self.log_s)).index_put((cols, rows), self.upper)
        return self.perm @ lower @ upper  # C x C

    def forward(self, x):
        hw = x.shape[2] * x.shape[3]
        return F.conv2d(x, self.weight()[:, :, None, None]), (hw * self.log_s.sum()).expand(len(x))

    def inverse(self, y):
        return F.conv2d(y, torch.linalg.inv(self.weight())[:, :, None, None])


class Squeeze(Flow):
    """Space to depth: B x C x H x W -> B x 4C x H/2 x W/2, each 2x2 block into channels; a permutation."""

    def forward(self, x):
        return F.pixel_unshuffle(x, 2), x.new_zeros(len(x))

    def inverse(self, y):
        return F.pixel_shuffle(y, 2)

    def out_shape(self, shape):
        c, h, w = shape
        return (4 * c, h // 2, w // 2)


class Flatten(Flow):
    """B x C x H x W -> B x CHW (NICE models the image as a vector)."""

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.flatten(1), x.new_zeros(len(x))

    def inverse(self, y):
        return y.view(len(y), *self.shape)

    def out_shape(self, shape):
        return (math.prod(shape),)


# ---------------------------------------------------------------------------------------------- data pre-processing
class Logit(Flow):
    """RealNVP's pre-processing: data in [lo, hi] -> logit space, y = logit(alpha + (1 - 2 alpha) u).

    u = (x - lo) / (hi - lo) in [0, 1]; alpha keeps the logit finite at the ends (0.05 in the paper).
    """

    def __init__(self, alpha: float, lo: float, hi: float):
        super().__init__()
        self.alpha, self.lo, self.hi = alpha, lo, hi

    def forward(self, x):
        p = self.alpha + (1 - 2 * self.alpha) * (x - self.lo) / (self.hi - self.lo)
        log_p, log_q = torch.log(p), torch.log1p(-p)
        # dy/dx = (1 - 2 alpha) / ((hi - lo) p (1 - p))
        logdet = per_image(math.log(1 - 2 * self.alpha) - math.log(self.hi - self.lo) - log_p - log_q)
        return log_p - log_q, logdet

    def inverse(self, y):
        u = (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)
        return self.lo + (self.hi - self.lo) * u


class Centre(Flow):
    """Glow's input range: data in [lo, hi] -> [-1/2, 1/2], y = (x - lo) / (hi - lo) - 1/2."""

    def __init__(self, lo: float, hi: float):
        super().__init__()
        self.lo, self.hi = lo, hi

    def forward(self, x):
        d = x[0].numel()
        return (x - self.lo) / (self.hi - self.lo) - 0.5, x.new_full((len(x),), -d * math.log(self.hi - self.lo))

    def inverse(self, y):
        return self.lo + (self.hi - self.lo) * (y + 0.5)


# ---------------------------------------------------------------------------------------------- multi-scale
class Split(nn.Module):
    """Factor out half the channels: h -> (h_a kept, eps_b leaving as a latent).

    Without a learned prior (RealNVP) eps_b = h_b ~ N(0, I). With one (Glow), a zero-initialised 3x3 conv
    of h_a gives the mean and log-std of h_b: eps_b = (h_b - mu(h_a)) * exp(-log_std(h_a)),
    log-det -sum log_std, so eps_b ~ N(0, I) exactly when h_b ~ N(mu, std^2).
    """

    def __init__(self, channels: int, learned_prior: bool):
        super().__init__()
        self.keep = channels // 2  # h_a: the first channels // 2 channels; h_b: the rest
        self.prior = nn.Conv2d(self.keep, 2 * (channels - self.keep), 3, padding=1) if learned_prior else None
        if self.prior is not None:
            nn.init.zeros_(self.prior.weight)
            nn.init.zeros_(self.prior.bias)

    def forward(self, h):
        ha, hb = h[:, :self.keep], h[:, self.keep:]
        if self.prior is None:
            return ha, hb, h.new_zeros(len(h))
        mean, log_std = self.prior(ha).chunk(2, 1)
        return ha, (hb - mean) * torch.exp(-log_std), -per_image(log_std)

    def inverse(self, ha, eps):
        if self.prior is None:
            return torch.cat([ha, eps], 1)
        mean, log_std = self.prior(ha).chunk(2, 1)
        return torch.cat([ha, mean + torch.exp(log_std) * eps], 1)


class LearnedPrior(Flow):
    """Glow's learned top prior N(mu, std^2), one mean and log-std per channel, as the standardisation
    eps = (z - mu) * exp(-log_std), log-det -HW sum log_std; it starts at N(0, I)."""

    def __init__(self, channels: int):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_std = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, z):
        hw = z.shape[2] * z.shape[3]
        return (z - self.mean) * torch.exp(-self.log_std), (-hw * self.log_std.sum()).expand(len(z))

    def inverse(self, eps):
        return self.mean + torch.exp(self.log_std) * eps


class MultiScale(Flow):
    """RealNVP's multi-scale architecture: after each scale but the last, half the channels leave.

        h_0 = x;  (h_i, eps_i) = split_i(scale_i(h_{i-1})) for i < L;  eps_L = scale_L(h_{L-1})
        z = [eps_1, eps_2, ..., eps_L], each flattened (C, H, W order), concatenated: B x C H W
    """

    def __init__(self, scales: list[Flow], splits: list[Split], shape: tuple[int, int, int]):
        super().__init__()
        if len(splits) != len(scales) - 1:
            raise ValueError("MultiScale needs one split between each two scales")
        self.scales, self.splits = nn.ModuleList(scales), nn.ModuleList(splits)
        self.shapes = []  # C x H x W of each latent, in the order of z
        for i, scale in enumerate(scales):
            shape = scale.out_shape(shape)
            if i < len(splits):
                c, h, w = shape
                self.shapes.append((c - splits[i].keep, h, w))
                shape = (splits[i].keep, h, w)
        self.shapes.append(shape)

    def forward(self, x):
        latents, logdet = [], x.new_zeros(len(x))
        h = x
        for i, scale in enumerate(self.scales):
            h, ld = scale(h)
            logdet = logdet + ld
            if i < len(self.splits):
                h, eps, ld = self.splits[i](h)
                latents.append(eps)
                logdet = logdet + ld
        latents.append(h)
        return torch.cat([z.flatten(1) for z in latents], 1), logdet  # B x D

    def inverse(self, z):
        sizes = [math.prod(s) for s in self.shapes]
        latents = [part.reshape(len(z), *s) for part, s in zip(z.split(sizes, 1), self.shapes)]
        h = latents[-1]
        for i in reversed(range(len(self.scales))):
            if i < len(self.splits):
                h = self.splits[i].inverse(h, latents[i])
            h = self.scales[i].inverse(h)
        return h

    def out_shape(self, shape):
        return (sum(math.prod(s) for s in self.shapes),)
