"""CycleGAN (Zhu et al. 2017): unpaired translation between two domains A and B with two generators,
G: A -> B and F: B -> A, and two PatchGAN discriminators D_B (on B) and D_A (on A).

    L = L_GAN(G, D_B) + L_GAN(F, D_A) + lambda L_cyc + 0.5 lambda L_id

    L_GAN(G, D_B) = E_b (D_B(b) - 1)^2 + E_a D_B(G(a))^2           (least squares: G minimises E (D_B(G(a)) - 1)^2)
    L_cyc = E_a ||F(G(a)) - a||_1 + E_b ||G(F(b)) - b||_1           (lambda = 10)
    L_id  = E_b ||G(b) - b||_1 + E_a ||F(a) - a||_1                 (weight 0.5 lambda)

Each discriminator's objective is halved and sees the generators' outputs through a history of the last 50
(Shrivastava et al. 2017): once the pool is full, each new image is returned with probability 1/2, or else a
stored one is returned and replaced by it. The pools are buffers of the model, so a resumed run repeats exactly.
Adam 2e-4 with beta1 0.5, constant for the first half and decaying linearly to zero.

Domains: the labels of the data, 0 = A and 1 = B (`data.target` makes such a set from two sources, say
`--data mnist --set data.target=digits`), or two class sets of one labelled source (`model.domains="3|8"`).
Images of other classes are left out of the step, and a batch without an image of either domain updates nothing
(logged as `skipped`, whose mean is the share of such steps).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import check_positive
from ..errors import UserError
from ..losses import output_link
from ..nn.image2image import PatchDiscriminator, ResnetGenerator, auto_patch_layers, check_patch_fits
from ..optim import make_optimizer
from .common import frozen
from .gan import grad_norm
from .registry import register

CYCLEGAN_DEFAULTS = {"data": {"range": "-11"},
                     "train": {"lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "batch_size": 16, "schedule": "half-linear"}}


def parse_domains(spec: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """'3|8' or '0,1,2|5,6' -> the class sets of A and B; '' -> labels 0 and 1."""
    if not spec:
        return (0,), (1,)
    parts = spec.split("|")
    try:
        sets = [tuple(int(c) for c in part.split(",") if c.strip()) for part in parts]
    except ValueError:
        sets = []
    if len(parts) != 2 or len(sets) != 2 or not all(sets) or set(sets[0]) & set(sets[1]) or \
            any(c < 0 for s in sets for c in s):
        raise UserError(f"model.domains takes two disjoint lists of class numbers split by '|', e.g. '3|8' or "
                        f"'0,1,2|7,8,9'; got '{spec}'")
    return sets[0], sets[1]


class HistoryPool(nn.Module):
    """The last `size` generated images (Shrivastava et al. 2017), kept as buffers; `query(x)` returns what the
    discriminator sees: while the pool fills, x itself (stored); then for each image, with probability 1/2 the
    image, else a random stored one, which the new image replaces."""

    def __init__(self, size: int, shape: tuple[int, int, int]):
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(size, *shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, x: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return x
        out = x.clone()
        for i in range(len(x)):
            n = int(self.count)
            if n < self.size:  # filling: store and return the new image
                self.images[n] = x[i]
                self.count += 1
            elif torch.rand(()) < 0.5:  # swap: return a stored image, keep the new one in its place
                j = int(torch.randint(0, self.size, ()))
                out[i] = self.images[j]
                self.images[j] = x[i]
        return out


def cycle_terms(G, F, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
    """L_cyc and L_id (mean absolute errors) of generators G: A -> B and F: B -> A on images a and b."""
    fake_b, fake_a = G(a), F(b)
    return {"cycle": (F(fake_b) - a).abs().mean() + (G(fake_a) - b).abs().mean(),
            "identity": (G(b) - b).abs().mean() + (F(a) - a).abs().mean(), "fake_a": fake_a, "fake_b": fake_b}


@dataclass
class CycleGANConfig:
    width: int = 64  # channels of the generators' first layer and of the discriminators'
    blocks: int = 0  # residual blocks in each generator; 0 = the paper's (9 from 256 px, 6 below)
    patch_layers: int = 0  # discriminators' stride-2 layers; 0 = patches of at most half the image (70 px at 256)
    cycle_weight: float = 10.0  # lambda
    identity_weight: float = 0.5  # times lambda
    pool: int = 50  # generated images each discriminator's history keeps; 0 = none
    domains: str = ""  # "" = labels 0 (A) and 1 (B); or two class sets of the source, e.g. "3|8" or "0,1,2|7,8,9"

    def validate(self) -> None:
        check_positive("model.width", self.width)
        for name in ("blocks", "patch_layers", "pool", "cycle_weight", "identity_weight"):
            check_positive(f"model.{name}", getattr(self, name), allow_zero=True)
        parse_domains(self.domains)


@register("cyclegan", CycleGANConfig, CYCLEGAN_DEFAULTS)
class CycleGAN(nn.Module):
    """CycleGAN: two ResNet generators and two PatchGANs, least squares, cycle and identity losses, a history pool."""

    num_domains = 2

    def __init__(self, cfg: CycleGANConfig, info):
        super().__init__()
        self.cfg, self.info = cfg, info
        self.domain_a, self.domain_b = parse_domains(cfg.domains)
        top = max(self.domain_a + self.domain_b)
        if info.num_classes < 2 or top >= info.num_classes:
            have = f"{info.num_classes} classes" if info.num_classes else "no labels"
            raise UserError(f"cyclegan translates between two labelled domains (classes {self.describe()}), and this "
                            f"dataset has {have}: set data.target to a second source, or model.domains")
        c, h, w = info.shape
        blocks = cfg.blocks or (9 if min(h, w) >= 256 else 6)
        self.G = ResnetGenerator(c, c, cfg.width, blocks, "instance", kernel=3)  # A -> B
        self.F = ResnetGenerator(c, c, cfg.width, blocks, "instance", kernel=3)  # B -> A
        layers = cfg.patch_layers or auto_patch_layers(min(h, w))
        check_patch_fits("cyclegan", h, w, layers)
        self.D_A = PatchDiscriminator(c, cfg.width, layers, "instance")
        self.D_B = PatchDiscriminator(c, cfg.width, layers, "instance")
        self.pool_a, self.pool_b = HistoryPool(cfg.pool, info.shape), HistoryPool(cfg.pool, info.shape)
        self.link = output_link(info.range)
        self.register_buffer("last_terms", torch.zeros(7), persistent=False)  # logged again by skipped steps

    def describe(self) -> str:
        return f"{','.join(map(str, self.domain_a))} as A, {','.join(map(str, self.domain_b))} as B"

    # ------------------------------------------------------------ capabilities
    def to_b(self, a: torch.Tensor) -> torch.Tensor:
        return self.link(self.G(a))

    def to_a(self, b: torch.Tensor) -> torch.Tensor:
        return self.link(self.F(b))

    def translate(self, x: torch.Tensor, target: torch.Tensor | int | None = None) -> torch.Tensor:
        """Into domain B (target 1, the default: G) or A (target 0: F); a tensor picks per image."""
        if target is None or isinstance(target, int):
            if target not in (None, 0, 1):
                raise UserError("target domains must lie in 0..1 (0 = A, 1 = B)")
            return self.to_a(x) if target == 0 else self.to_b(x)
        to_b = (target == 1).view(-1, 1, 1, 1)
        return torch.where(to_b, self.to_b(x), self.to_a(x))

    def split(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's images of A and of B."""
        if y is None:
            raise UserError("cyclegan needs the domain labels of its training images (data.target or model.domains)")
        in_a = torch.isin(y, torch.tensor(self.domain_a, device=y.device))
        in_b = torch.isin(y, torch.tensor(self.domain_b, device=y.device))
        return x[in_a], x[in_b]

    def preview_count(self, samples: int) -> int:
        return max(2, samples // 3)

    def preview_grid(self, x: torch.Tensor, y, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        """The trainer's epoch grid: each test image of A or B, its translation, and the cycle back, in threes."""
        a, b = self.split(x, y)
        triples = [torch.stack([v, there(v), back(there(v))], 1)
                   for v, there, back in ((a, self.to_b, self.to_a), (b, self.to_a, self.to_b)) if len(v)]
        images = torch.cat(triples).flatten(0, 1) if triples else x[:0]
        return images, 3 * max(1, round((len(images) / 9) ** 0.5))

    # ------------------------------------------------------------ training
    def configure_optimizers(self, cfg) -> dict[str, torch.optim.Optimizer]:
        gens = [*self.G.parameters(), *self.F.parameters()]
        return {"g": make_optimizer(gens, cfg), "d": make_optimizer([*self.D_A.parameters(), *self.D_B.parameters()],
                                                                      cfg)}

    def train_step(self, batch, opts, step: int) -> dict[str, torch.Tensor]:
        a, b = self.split(batch[0], batch[1])
        skipped = not (len(a) and len(b))  # a batch without one of the domains (class sets): no update
        if not skipped:
            cfg = self.cfg
            # generators: least squares towards "real", cycle and identity terms
            with frozen(self.D_A, self.D_B):
                t = cycle_terms(self.to_b, self.to_a, a, b)
                adv = (self.D_B(t["fake_b"]) - 1).pow(2).mean() + (self.D_A(t["fake_a"]) - 1).pow(2).mean()
                loss_g = adv + cfg.cycle_weight * (t["cycle"] + cfg.identity_weight * t["identity"])
                opts["g"].step(loss_g)
            # discriminators: halved least squares, fakes from the history pools
            fake_b, fake_a = self.pool_b.query(t["fake_b"].detach()), self.pool_a.query(t["fake_a"].detach())
            real_b, real_a = self.D_B(b), self.D_A(a)
            loss_d = 0.5 * ((real_b - 1).pow(2).mean() + self.D_B(fake_b).pow(2).mean()) + \
                0.5 * ((real_a - 1).pow(2).mean() + self.D_A(fake_a).pow(2).mean())
            opts["d"].step(loss_d)
            self.last_terms = torch.stack([loss_g, adv, t["cycle"], t["identity"], loss_d, real_a.mean(),
                                           real_b.mean()]).detach()
        names = ("loss_g", "g_adv", "cycle", "identity", "loss_d", "d_real_a", "d_real_b")
        return {**dict(zip(names, self.last_terms)), "skipped": torch.tensor(float(skipped)),
                "grad_norm_g": grad_norm(opts["g"].params), "grad_norm_d": grad_norm(opts["d"].params)}
