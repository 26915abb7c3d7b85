"""StarGAN (Choi et al. 2018): one generator translates an image x into any of K domains, G(x, c) with the
target domain c given as K constant label maps concatenated to the image; one discriminator D has a critic head
D_src (per patch) and a domain-classification head D_cls. The domains are the labels of any labelled source
(the ten digits of MNIST: change the digit, keep the writer's style).

    L_D = -L_adv + lambda_cls L_cls^r,       L_G = L_adv + lambda_cls L_cls^f + lambda_rec L_rec

    L_adv   = E_x D_src(x) - E_{x,c} D_src(G(x, c)) - lambda_gp E (||grad D_src(x^)||_2 - 1)^2   (WGAN-GP)
    L_cls^r = E_{x,c'} -log D_cls(c' | x)          (real images, their own domain c')
    L_cls^f = E_{x,c}  -log D_cls(c | G(x, c))     (translations, the target domain c)
    L_rec   = E_{x,c,c'} ||x - G(G(x, c), c')||_1   (the cycle back to the original domain)

lambda_cls = 1, lambda_rec = 10, lambda_gp = 10, five D steps per G step, Adam 1e-4 with betas (0.5, 0.999),
the rate constant and then decaying linearly to zero. The target domains of a batch are its own labels in a
random order, as in the reference code.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_positive
from ..errors import UserError
from ..losses import gradient_penalty, output_link
from ..nn.image2image import ResnetGenerator, StarDiscriminator
from ..optim import make_optimizer
from .common import class_count, frozen
from .gan import grad_norm
from .registry import register

# the paper's rates; batch 16 at 128 px is 262,144 pixels a batch, about what batch 64 at 64 px gives
STARGAN_DEFAULTS = {"data": {"range": "-11"},
                    "train": {"lr": 1e-4, "beta1": 0.5, "beta2": 0.999, "batch_size": 64, "schedule": "half-linear"}}


@dataclass
class StarGANConfig:
    width: int = 64  # channels of G's first layer (doubling twice) and of D's (doubling per layer)
    blocks: int = 6  # residual blocks at G's bottleneck
    cls_weight: float = 1.0  # lambda_cls
    rec_weight: float = 10.0  # lambda_rec
    gp_weight: float = 10.0  # lambda_gp
    n_critic: int = 5  # D steps per G step
    num_classes: int = 0  # domains; 0 = the data's classes

    def validate(self) -> None:
        for name in ("width", "n_critic"):
            check_positive(f"model.{name}", getattr(self, name))
        for name in ("blocks", "num_classes"):
            check_positive(f"model.{name}", getattr(self, name), allow_zero=True)
        for name in ("cls_weight", "rec_weight", "gp_weight"):
            check_positive(f"model.{name}", getattr(self, name), allow_zero=True)


@register("stargan", StarGANConfig, STARGAN_DEFAULTS)
class StarGAN(nn.Module):
    """StarGAN: one generator for every domain of a labelled source, WGAN-GP with a domain classifier, cycle loss."""

    def __init__(self, cfg: StarGANConfig, info):
        super().__init__()
        self.num_domains = class_count("stargan (its domains are the classes)", cfg.num_classes, info)
        self.cfg, self.info, k = cfg, info, self.num_domains
        c, h, w = info.shape
        self.G = ResnetGenerator(c + k, c, cfg.width, cfg.blocks, "instance", kernel=4)
        self.D = StarDiscriminator(c, h, w, k, cfg.width)
        self.link = output_link(info.range)
        self.register_buffer("last_g_terms", torch.zeros(4), persistent=False)  # loss_g, adv, cls, rec

    # ------------------------------------------------------------ capabilities
    def targets(self, n: int, target: torch.Tensor | int | None, device) -> torch.Tensor:
        """B target domains: an int for all, a tensor per image, or None for the domains in turn (0, 1, ...)."""
        if target is None:
            return torch.arange(n, device=device) % self.num_domains
        if isinstance(target, int):
            target = torch.full((n,), target, device=device)
        if len(target) and (target.min() < 0 or target.max() >= self.num_domains):
            raise UserError(f"target domains must lie in 0..{self.num_domains - 1}")
        return target.to(device)

    def generate(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """G(x, c) in the data range; c: B domain indices, given to G as K constant maps (one-hot)."""
        maps = F.one_hot(c, self.num_domains).to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        return self.link(self.G(torch.cat([x, maps], 1)))  # G sees B x (C + K) x H x W

    def translate(self, x: torch.Tensor, target: torch.Tensor | int | None = None) -> torch.Tensor:
        """x translated into the target domain(s) (module docstring of `targets`)."""
        return self.generate(x, self.targets(len(x), target, x.device))

    def domain_logits(self, x: torch.Tensor) -> torch.Tensor:
        """D_cls: B x K."""
        return self.D(x)[1]

    def preview_count(self, samples: int) -> int:
        return max(1, min(10, samples // (self.num_domains + 1)))

    def preview_grid(self, x: torch.Tensor, y, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        """The trainer's epoch grid: one row per input image, the input and then its translation to every domain."""
        cols = [x] + [self.translate(x, d) for d in range(self.num_domains)]
        return torch.stack(cols, 1).flatten(0, 1), self.num_domains + 1

    # ------------------------------------------------------------ training
    def configure_optimizers(self, cfg) -> dict[str, torch.optim.Optimizer]:
        return {"d": make_optimizer(self.D.parameters(), cfg), "g": make_optimizer(self.G.parameters(), cfg)}

    def train_step(self, batch, opts, step: int) -> dict[str, torch.Tensor]:
        x, y = batch[0], batch[1]
        if y is None:
            raise UserError("stargan needs the class labels of its training images: they are the domains")
        cfg = self.cfg
        c = y[torch.randperm(len(y), device=y.device)]  # target domains: the batch's labels shuffled

        # D: -L_adv + lambda_cls L_cls^r
        with torch.no_grad():
            fake = self.generate(x, c)
        real_src, real_cls = self.D(x)
        fake_src = self.D(fake)[0]
        gp = gradient_penalty(lambda v: self.D(v)[0], x, fake)
        d_cls = F.cross_entropy(real_cls, y)
        loss_d = fake_src.mean() - real_src.mean() + cfg.gp_weight * gp + cfg.cls_weight * d_cls
        opts["d"].step(loss_d)

        # G, every n_critic steps: L_adv + lambda_cls L_cls^f + lambda_rec L_rec
        if step % cfg.n_critic == 0:
            with frozen(self.D):
                fake = self.generate(x, c)
                src, cls = self.D(fake)
                adv, g_cls = -src.mean(), F.cross_entropy(cls, c)
                rec = (self.generate(fake, y) - x).abs().mean()
                loss_g = adv + cfg.cls_weight * g_cls + cfg.rec_weight * rec
                opts["g"].step(loss_g)
            self.last_g_terms = torch.stack([loss_g, adv, g_cls, rec]).detach()
        g = self.last_g_terms
        return {"loss_d": loss_d.detach(), "d_real": real_src.detach().mean(), "d_fake": fake_src.detach().mean(),
                "gp": gp.detach(), "d_cls": d_cls.detach(), "loss_g": g[0], "g_adv": g[1], "g_cls": g[2],
                "rec": g[3], "grad_norm_d": grad_norm(opts["d"].params), "grad_norm_g": grad_norm(opts["g"].params)}
