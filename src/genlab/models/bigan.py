"""BiGAN (Donahue et al. 2017, "Adversarial Feature Learning"; the same model as ALI, Dumoulin et al. 2017):
a generator G, an encoder E and a discriminator D on joint (image, code) pairs.

    min_{G,E} max_D  V(D, E, G) = E_x log D(x, E(x)) + E_z log(1 - D(G(z), z)),   z ~ N(0, I)

Real pairs are (x, E(x)), fake pairs (G(z), z). At the optimum E and G invert each other (E = G^-1 almost
everywhere), so E learns features without labels. D takes one step on V; then G and E take one joint
step on the non-saturating form, the labels flipped (Goodfellow et al.'s trick for the generator):

    L_D  = -log D(x, E(x)) - log(1 - D(G(z), z))
    L_GE = -log D(G(z), z) - log(1 - D(x, E(x)))            (loss=nonsaturating, the default)
    L_GE = -L_D                                              (loss=minimax, the game as written)

Networks: G is the DCGAN (or MLP) generator; E is a DCGAN (or MLP) discriminator body with a linear head
to latent_dim (a deterministic encoder); D's x path is a DCGAN (or MLP) discriminator body, its z path a
two-layer LeakyReLU MLP, and the concatenated features go through a LeakyReLU MLP to one logit (the z path
and joint MLP with dropout 0.2, as in ALI's discriminator). The prior is N(0, I), like the library's
other generators, with latent_dim = 50 as in the paper's MNIST experiments.

The DCGAN stacks halve the side exactly, so the conv networks run on images whose odd sides are padded
(replicate, bottom/right) to the next even size, and G's output is cropped back; the helpers for this
(`genlab.nn.even_shape`, `pad_even`), as the VAE-GAN and GLO families do.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import check_choice, check_positive
from ..errors import UserError
from ..losses import d_loss, output_link
from ..nn import DCDiscriminator, DCGenerator, MLPDiscriminator, MLPGenerator, crop_to, even_shape, pad_even
from ..optim import make_optimizer
from .common import DiscriminatorHealth, frozen
from .gan import GAN_DEFAULTS, grad_norm
from .registry import register

BIGAN_LOSSES = ("minimax", "nonsaturating")


# ---------------------------------------------------------------------------------------------- helpers
# ---------------------------------------------------------------------------------------------- model
@dataclass
class BiGANConfig:
    arch: str = "conv"  # conv (DCGAN stacks) | mlp
    latent_dim: int = 50
    hidden: tuple[int, ...] = (1024, 1024)  # mlp: G's widths; E and D's x path use them reversed
    width: int = 64  # conv: channels at full resolution, doubling with depth (G, E and D's x path)
    joint_width: int = 512  # D's z path and joint MLP widths
    dropout: float = 0.2  # in D's z path and joint MLP (ALI's discriminator uses dropout 0.2); 0 = off
    loss: str = "nonsaturating"  # nonsaturating (G and E minimise with flipped labels) | minimax
    norm: str = "batch"  # D's x path and E: batch | layer | none
    lr_ge: float = 0.0  # 0 = train.lr
    lr_d: float = 0.0

    def validate(self) -> None:
        check_choice("model.arch", self.arch, ("mlp", "conv"))
        check_choice("model.loss", self.loss, BIGAN_LOSSES)
        check_choice("model.norm", self.norm, ("batch", "layer", "none"))
        for name in ("latent_dim", "width", "joint_width"):
            check_positive(f"model.{name}", getattr(self, name))
        for name in ("lr_ge", "lr_d"):
            check_positive(f"model.{name}", getattr(self, name), allow_zero=True)
        if not 0 <= self.dropout < 1:
            raise UserError(f"model.dropout is a probability in [0, 1), got {self.dropout}")


@register("bigan", BiGANConfig, GAN_DEFAULTS)
class BiGAN(DiscriminatorHealth, nn.Module):
    """BiGAN / ALI: generator, encoder and a discriminator on (x, z) pairs; (x, E(x)) real vs (G(z), z) fake."""

    d_rate_setting = "model.lr_d"

    def __init__(self, cfg: BiGANConfig, info):
        super().__init__()
        self.cfg, self.info = cfg, info
        d, jw = cfg.latent_dim, cfg.joint_width
        if cfg.arch == "conv":
            shape = even_shape(info.shape)
            self.G = DCGenerator(shape, d, cfg.width)
            enc = DCDiscriminator(shape, cfg.width, cfg.norm)
            dx = DCDiscriminator(shape, cfg.width, cfg.norm)
        else:
            self.G = MLPGenerator(info.shape, d, cfg.hidden)
            enc = MLPDiscriminator(info.shape, tuple(reversed(cfg.hidden)))
            dx = MLPDiscriminator(info.shape, tuple(reversed(cfg.hidden)))
        self.E = nn.Sequential(enc, enc.head(d))  # x -> features -> z (deterministic)
        def act() -> nn.Module:
            return nn.Sequential(nn.LeakyReLU(0.2), nn.Dropout(cfg.dropout)) if cfg.dropout else nn.LeakyReLU(0.2)

        self.D = nn.ModuleDict({
            "x": dx,
            "z": nn.Sequential(nn.Linear(d, jw), act(), nn.Linear(jw, jw), act()),
            "joint": nn.Sequential(nn.Linear(dx.out_features + jw, jw), act(), nn.Linear(jw, 1)),
        })
        self.link = output_link(info.range)

    def _in(self, x: torch.Tensor) -> torch.Tensor:
        return pad_even(x) if self.cfg.arch == "conv" else x

    # ------------------------------------------------------------ capabilities
    def joint_logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """D's logit for pairs (x, z): B x C x H x W, B x latent_dim -> B."""
        h = torch.cat([self.D["x"](self._in(x)), self.D["z"](z)], dim=1)
        return self.D["joint"](h).squeeze(1)

    def prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.cfg.latent_dim, generator=generator, device=next(self.G.parameters()).device)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """E(x): B x C x H x W -> B x latent_dim."""
        return self.E(self._in(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) in the data range."""
        return self.link(crop_to(self.G(z), self.info.shape))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """G(E(x))."""
        return self.decode(self.encode(x))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode(self.prior(n, generator))

    # ------------------------------------------------------------ training
    def configure_optimizers(self, cfg) -> dict[str, torch.optim.Optimizer]:
        return {"d": make_optimizer(self.D.parameters(), cfg, self.cfg.lr_d or None),
                "ge": make_optimizer([*self.G.parameters(), *self.E.parameters()], cfg, self.cfg.lr_ge or None)}

    def discriminator_step(self, x: torch.Tensor, z: torch.Tensor, opt) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            ex, gz = self.encode(x), self.decode(z)
        real, fake = self.joint_logits(x, ex), self.joint_logits(gz, z)
        loss = d_loss("minimax", real, fake)  # -log D(x, E(x)) - log(1 - D(G(z), z))
        opt.step(loss)
        return {"loss_d": loss.detach(), "d_real": torch.sigmoid(real).detach().mean(),
                "d_fake": torch.sigmoid(fake).detach().mean()}

    def generator_encoder_step(self, x: torch.Tensor, z: torch.Tensor, opt) -> torch.Tensor:
        with frozen(self.D):  # no gradient work for D's parameters during G and E's step
            real, fake = self.joint_logits(x, self.encode(x)), self.joint_logits(self.decode(z), z)
            if self.cfg.loss == "nonsaturating":
                loss = d_loss("minimax", fake, real)  # labels flipped: -log D(G(z), z) - log(1 - D(x, E(x)))
            else:
                loss = -d_loss("minimax", real, fake)
            opt.step(loss)
        return loss.detach()

    def train_step(self, batch, opts, step: int) -> dict[str, torch.Tensor]:
        x = batch[0]
        z = self.prior(len(x))  # one draw for both steps
        terms = self.discriminator_step(x, z, opts["d"])
        terms["loss_ge"] = self.generator_encoder_step(x, z, opts["ge"])
        terms["grad_norm_d"] = grad_norm(opts["d"].params)
        terms["grad_norm_ge"] = grad_norm(opts["ge"].params)
        self._track_health(terms)
        return terms
