"""Generative adversarial networks: the original minimax game (Goodfellow et al. 2014) with MLPs, and DCGAN
(Radford et al. 2016) with the WGAN, WGAN-GP, LSGAN and hinge losses, spectral normalisation and two
time-scale learning rates.

    min_G max_D  E_x log D(x) + E_z log(1 - D(G(z)))

The discriminator (critic) takes one step per batch; the generator one every `n_critic` batches, so
k = n_critic discriminator steps precede each generator step, each on fresh data. The loss formulas
are in `genlab.losses` (d_loss, g_loss, gradient_penalty).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import check_choice, check_positive
from ..errors import UserError
from ..losses import ADVERSARIAL, d_loss, g_loss, gradient_penalty, output_link
from ..nn import DCDiscriminator, DCGenerator, MLPDiscriminator, MLPGenerator, dcgan_init
from ..optim import make_optimizer
from .common import DiscriminatorHealth, frozen
from .registry import register

SIGMOID_LOSSES = ("minimax", "nonsaturating")
GAN_DEFAULTS = {"data": {"range": "-11"},
                "train": {"lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "batch_size": 64, "monitor_modes": True}}
# the MLP game learns slowly per step: batch 32 gives it 1875 steps an epoch, enough to cover the ten digits
# (8 of 10, none above 36%) after one epoch of MNIST where batch 64 covered 5 and warned (BENCHMARKS.md)
MLP_GAN_DEFAULTS = {**GAN_DEFAULTS, "train": {**GAN_DEFAULTS["train"], "batch_size": 32}}
# each loss's own paper: WGAN (Arjovsky et al. 2017, Algorithm 1) RMSprop 5e-5 and 5 critic steps;
# WGAN-GP (Gulrajani et al. 2017, Algorithm 1) Adam 1e-4, betas (0, 0.9), 5 critic steps, on the conv networks
# with a fully connected 1024 layer (InfoGAN's, as Lucic et al. benchmark it) and EMA 0.999 weights: the plain
# DCGAN generator under the critic kept a lattice of saturated pixels every 4 px that read as "8" (1 / 1 / 3
# classes in 3 epochs of MNIST), these networks cover 1 / 9 / 10 (BENCHMARKS.md)
LOSS_DEFAULTS = ("loss", {
    "wgan": {"model": {"n_critic": 5}, "train": {"optimizer": "rmsprop", "lr": 5e-5}},
    "wgan-gp": {"model": {"n_critic": 5, "fc": 1024}, "train": {"lr": 1e-4, "beta1": 0.0, "beta2": 0.9, "ema": 0.999}},
})


@dataclass
class GANConfig:
    arch: str = "mlp"  # mlp | conv
    latent_dim: int = 64  # z ~ N(0, I) of this size
    hidden: tuple[int, ...] = (256, 512, 1024)  # MLP generator widths; the discriminator uses them reversed
    batch_norm: bool = True  # MLP generator: Linear -> BatchNorm -> ReLU
    dropout: float = 0.3  # MLP discriminator: dropout after each hidden layer
    width: int = 64  # conv: channels at full resolution, doubling with depth
    fc: int = 0  # conv: a fully connected layer of this width after z in G and before D's head (InfoGAN's 1024); 0 = none
    loss: str = "nonsaturating"  # minimax | nonsaturating | wgan | wgan-gp | lsgan | hinge
    n_critic: int = 1  # discriminator steps per generator step
    clip: float = 0.01  # wgan: critic weights clipped to [-clip, clip]
    gp_weight: float = 10.0  # wgan-gp: lambda
    norm: str = "auto"  # discriminator normalisation: auto (batch; layer for wgan-gp; none with sn) | batch | layer | none
    spectral_norm: bool = False  # discriminator weights divided by their largest singular value (Miyato 2018)
    lr_g: float = 0.0  # two time-scale rates; 0 = train.lr
    lr_d: float = 0.0  # (TTUR: Heusel et al. 2017)
    # weights of G, D and D's head: dcgan (Radford et al.'s N(0, 0.02)) | torch (PyTorch's layer defaults) | auto
    # (dcgan for the conv networks: with PyTorch's, a 64 px DCGAN's pixels stuck at the tanh's rails and it collapsed;
    # torch for the MLPs, as the original GAN's reference implementations)
    init: str = "auto"

    def validate(self) -> None:
        check_choice("model.arch", self.arch, ("mlp", "conv"))
        check_choice("model.loss", self.loss, ADVERSARIAL)
        check_choice("model.norm", self.norm, ("auto", "batch", "layer", "none"))
        check_choice("model.init", self.init, ("auto", "torch", "dcgan"))
        check_positive("model.latent_dim", self.latent_dim)
        check_positive("model.n_critic", self.n_critic)
        check_positive("model.fc", self.fc, allow_zero=True)
        for name in ("clip", "gp_weight", "lr_g", "lr_d"):
            check_positive(f"model.{name}", getattr(self, name), allow_zero=True)
        if not 0 <= self.dropout < 1:
            raise UserError(f"model.dropout is a rate in [0, 1), got {self.dropout}")
        if self.norm == "batch" and self.loss == "wgan-gp":
            raise UserError("wgan-gp penalises per-sample gradients, which batch norm mixes: use model.norm=layer or none")


@register("gan", GANConfig, MLP_GAN_DEFAULTS, LOSS_DEFAULTS)
class GAN(DiscriminatorHealth, nn.Module):
    """The original GAN: MLP generator and discriminator, minimax or non-saturating loss, k D steps per G step."""

    d_rate_setting = "model.lr_d"

    def __init__(self, cfg: GANConfig, info):
        super().__init__()
        self.cfg, self.info = cfg, info
        self.G, self.D = self.build_networks(cfg, info)
        self.d_out = self.D.head(1)  # features -> logit (critic value)
        if cfg.init == "dcgan" or (cfg.init == "auto" and cfg.arch == "conv"):
            for net in (self.G, self.D, self.d_out):
                net.apply(dcgan_init)
        self.link = output_link(info.range)
        self.register_buffer("last_g_loss", torch.zeros(()), persistent=False)
        self.tracks_d_probs = cfg.loss in SIGMOID_LOSSES  # D(x), D(G(z)) are probabilities

    def d_norm(self) -> str:
        if self.cfg.norm != "auto":
            return self.cfg.norm
        if self.cfg.spectral_norm:
            return "none"
        return "layer" if self.cfg.loss == "wgan-gp" else "batch"

    def build_networks(self, cfg, info) -> tuple[nn.Module, nn.Module]:
        if cfg.arch == "conv":
            return (DCGenerator(info.shape, cfg.latent_dim, cfg.width, cfg.fc),
                    DCDiscriminator(info.shape, cfg.width, self.d_norm(), cfg.spectral_norm, cfg.fc))
        return (MLPGenerator(info.shape, cfg.latent_dim, cfg.hidden, cfg.batch_norm),
                MLPDiscriminator(info.shape, tuple(reversed(cfg.hidden)), cfg.spectral_norm, cfg.dropout))

    # ------------------------------------------------------------ capabilities
    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """D's logit (or critic value) per image; B x C x H x W -> B."""
        return self.d_out(self.D(x)).squeeze(1)

    def prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.cfg.latent_dim, generator=generator, device=next(self.G.parameters()).device)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) in the data range; z: B x latent_dim."""
        return self.link(self.G(z))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode(self.prior(n, generator))

    # ------------------------------------------------------------ training
    def d_modules(self) -> list[nn.Module]:
        """What D's optimizer trains: the discriminator body and its heads."""
        return [self.D, self.d_out]

    def g_modules(self) -> list[nn.Module]:
        """What G's optimizer trains."""
        return [self.G]

    def configure_optimizers(self, cfg) -> dict[str, torch.optim.Optimizer]:
        def params(mods):
            return [p for m in mods for p in m.parameters()]

        return {"d": make_optimizer(params(self.d_modules()), cfg, self.cfg.lr_d or None),
                "g": make_optimizer(params(self.g_modules()), cfg, self.cfg.lr_g or None)}

    def discriminator_step(self, x, opt) -> dict[str, torch.Tensor]:
        kind = self.cfg.loss
        with torch.no_grad():
            fake = self.link(self.G(self.prior(len(x))))
        real_out, fake_out = self.critic(x), self.critic(fake)
        loss = d_loss(kind, real_out, fake_out)
        terms = {}
        if kind == "wgan-gp":
            gp = gradient_penalty(self.critic, x, fake)
            loss = loss + self.cfg.gp_weight * gp
            terms["gp"] = gp.detach()
        opt.step(loss)
        if kind == "wgan":  # Lipschitz by weight clipping: every critic weight in [-c, c]
            with torch.no_grad():
                for p in opt.params:
                    p.clamp_(-self.cfg.clip, self.cfg.clip)
        return {"loss_d": loss.detach(), **self.d_outputs(real_out, fake_out), **terms}

    def d_outputs(self, real_out, fake_out) -> dict[str, torch.Tensor]:
        """D(x) and D(G(z)): probabilities for the sigmoid losses, raw critic values otherwise."""
        if self.cfg.loss in SIGMOID_LOSSES:
            real_out, fake_out = torch.sigmoid(real_out), torch.sigmoid(fake_out)
        return {"d_real": real_out.detach().mean(), "d_fake": fake_out.detach().mean()}

    def generator_step(self, n: int, opt) -> torch.Tensor:
        with frozen(*self.d_modules()):  # no gradient work for D's parameters during G's step
            loss = g_loss(self.cfg.loss, self.critic(self.link(self.G(self.prior(n)))))
            opt.step(loss)
        return loss.detach()

    def train_step(self, batch, opts, step: int) -> dict[str, torch.Tensor]:
        x, _ = batch
        terms = self.discriminator_step(x, opts["d"])
        if step % self.cfg.n_critic == 0:
            self.last_g_loss = self.generator_step(len(x), opts["g"])
        terms["loss_g"] = self.last_g_loss
        terms["grad_norm_d"] = grad_norm(opts["d"].params)
        terms["grad_norm_g"] = grad_norm(opts["g"].params)
        self._track_health(terms)
        return terms



def grad_norm(params) -> torch.Tensor:
    """The global L2 norm of the parameters' current gradients (0 when none has one yet)."""
    grads = [p.grad for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) if grads \
        else torch.zeros(())


@dataclass
class DCGANConfig(GANConfig):
    arch: str = "conv"
    latent_dim: int = 100


@register("dcgan", DCGANConfig, GAN_DEFAULTS, LOSS_DEFAULTS)
class DCGAN(GAN):
    """DCGAN: strided and transposed convolutions, batch norm, ReLU/Tanh generator, LeakyReLU discriminator; any GAN loss."""
