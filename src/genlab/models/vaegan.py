"""VAE-GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity metric"): a VAE whose
reconstruction error is measured in a GAN discriminator's feature space, trained jointly with that GAN.

    z ~ q(z | x) = N(mu(x), sigma(x)^2),  x~ = Dec(z),  z_p ~ N(0, I),  x_p = Dec(z_p)
    L_prior = KL(q(z | x) || N(0, I))                                         (closed form, nats per image)
    L_llike = -E_q log N(Dis_l(x); Dis_l(x~), I) = 1/2 ||Dis_l(x) - Dis_l(x~)||^2  (+ const, per image)
    L_GAN   = log Dis(x) + log(1 - Dis(x~)) + log(1 - Dis(x_p))

Updates (Algorithm 1), each with its own optimizer ("enc", "dec", "dis"):

    theta_Enc <- -grad (L_prior + L_llike)
    theta_Dec <- -grad (gamma L_llike + L_G),   L_G = -log Dis(x~) - log Dis(x_p)
    theta_Dis <- +grad L_GAN                    (ascent: the usual discriminator loss is minimised)

The decoder plays the generator's side of L_GAN in the non-saturating form: -log Dis(.) instead of
log(1 - Dis(.)), the same fixed point with useful gradients early on. The discriminator is trained by
L_GAN only (never by L_llike), and the encoder does not see L_GAN.

Dis_l is the discriminator's last convolutional stage (its flattened features, the input of the logit
head; for arch=mlp the last hidden layer). Dis runs once on the concatenated batch [x, x~, x_p], so
batch normalisation compares x and x~ under the same statistics.

Algorithm 1 takes the three gradients at one point and then updates; here the three updates alternate
on the same batch and the same noise (eps, z_p): Dis, then Enc, then Dec, each with its own forward pass
and with the other networks frozen, the way the GANs here alternate D and G. Each optimizer thus only
ever receives the gradient of its own loss.

gamma weighs content against style in the decoder's loss; the paper leaves it to tuning. Here L_llike is a
per-image sum over Dis_l's features (6272 of them for 28x28 images at width 64) while L_G is O(1); the
default gamma = 1e-2 brings the two within an order of magnitude (MNIST, width 16, first 50 steps:
gamma L_llike ~ 7, L_G ~ 2.7). Larger widths have more features: lower gamma with them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_choice, check_positive
from ..losses import gaussian_kl, output_link, squared_error
from ..nn import DCDiscriminator, DCGenerator, MLPDiscriminator, MLPGenerator, crop_to, even_shape, pad_even
from ..optim import make_optimizer
from .common import DiscriminatorHealth, frozen
from .gan import GAN_DEFAULTS, grad_norm
from .registry import register


@dataclass
class VAEGANConfig:
    arch: str = "conv"  # conv (DCGAN stacks) | mlp
    latent_dim: int = 128
    hidden: tuple[int, ...] = (256, 512)  # mlp: the decoder's widths; encoder and discriminator use them reversed
    width: int = 64  # conv: channels at full resolution, doubling with depth
    gamma: float = 1e-2  # weight of L_llike against L_GAN in the decoder's loss
    norm: str = "batch"  # encoder and discriminator normalisation: batch | layer | none
    lr_enc: float = 0.0  # 0 = train.lr
    lr_dec: float = 0.0
    lr_dis: float = 0.0

    def validate(self) -> None:
        check_choice("model.arch", self.arch, ("mlp", "conv"))
        check_choice("model.norm", self.norm, ("batch", "layer", "none"))
        check_positive("model.latent_dim", self.latent_dim)
        check_positive("model.width", self.width)
        for name in ("gamma", "lr_enc", "lr_dec", "lr_dis"):
            check_positive(f"model.{name}", getattr(self, name), allow_zero=True)


# samples from averaged weights (EMA 0.999, as ProGAN's and StyleGAN's generators): on MNIST the last weights' samples
# covered 10 / 10 / 9 digits after epochs 1-3 (the 1s at 1% of the samples), the average's 10 / 10 / 10 (BENCHMARKS.md)
VAEGAN_DEFAULTS = {**GAN_DEFAULTS, "train": {**GAN_DEFAULTS["train"], "ema": 0.999}}


@register("vaegan", VAEGANConfig, VAEGAN_DEFAULTS)
class VAEGAN(DiscriminatorHealth, nn.Module):
    """VAE-GAN: a VAE whose reconstruction is judged in a discriminator's features; encoder, decoder, discriminator."""

    d_rate_setting = "model.lr_dis"

    def __init__(self, cfg: VAEGANConfig, info):
        super().__init__()
        self.cfg, self.info = cfg, info
        d = cfg.latent_dim
        if cfg.arch == "conv":
            shape = even_shape(info.shape)
            enc = DCDiscriminator(shape, cfg.width, cfg.norm)
            self.decoder = DCGenerator(shape, d, cfg.width)
            self.dis = DCDiscriminator(shape, cfg.width, cfg.norm)
        else:
            rev = tuple(reversed(cfg.hidden))
            enc = MLPDiscriminator(info.shape, rev)
            self.decoder = MLPGenerator(info.shape, d, cfg.hidden)
            self.dis = MLPDiscriminator(info.shape, rev)
        self.encoder = nn.Sequential(enc, enc.head(2 * d))  # x -> (mu, logvar)
        self.dis_out = self.dis.head(1)
        self.link = output_link(info.range)

    def _in(self, x: torch.Tensor) -> torch.Tensor:
        return pad_even(x) if self.cfg.arch == "conv" else x

    # ------------------------------------------------------------ capabilities
    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x): (mu, logvar), each B x latent_dim."""
        mu, logvar = self.encoder(self._in(x)).chunk(2, dim=1)
        return mu, logvar

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean."""
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.link(crop_to(self.decoder(z), self.info.shape))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.cfg.latent_dim, generator=generator, device=next(self.decoder.parameters()).device)
        return self.decode(z)

    def dis_features(self, x: torch.Tensor) -> torch.Tensor:
        """Dis_l(x): the discriminator's last-stage features, B x out_features."""
        return self.dis(self._in(x))

    # ------------------------------------------------------------ training
    def configure_optimizers(self, cfg) -> dict[str, torch.optim.Optimizer]:
        c = self.cfg
        return {"enc": make_optimizer(self.encoder.parameters(), cfg, c.lr_enc or None),
                "dec": make_optimizer(self.decoder.parameters(), cfg, c.lr_dec or None),
                "dis": make_optimizer([*self.dis.parameters(), *self.dis_out.parameters()], cfg, c.lr_dis or None)}

    def terms(self, x: torch.Tensor, eps: torch.Tensor, z_p: torch.Tensor) -> dict[str, torch.Tensor]:
        """Algorithm 1's quantities for a batch and fixed noise eps (reparametrisation), z_p (prior codes):
        kl and llike per image (B), and Dis's logits for x, x~ and x_p (B each)."""
        mu, logvar = self.posterior(x)
        x_tilde = self.decode(mu + torch.exp(0.5 * logvar) * eps)  # reparametrisation
        x_p = self.decode(z_p)
        f = self.dis_features(torch.cat([x, x_tilde, x_p]))  # one pass: shared normalisation statistics
        logits = self.dis_out(f).squeeze(1)
        f_real, f_tilde, _ = f.chunk(3)
        real, tilde, prior = logits.chunk(3)
        return {"kl": gaussian_kl(mu, logvar), "llike": 0.5 * squared_error(f_tilde, f_real),
                "real": real, "tilde": tilde, "prior": prior}

    def discriminator_step(self, x, eps, z_p, opt) -> dict[str, torch.Tensor]:
        """Minimise -L_GAN = -log Dis(x) - log(1 - Dis(x~)) - log(1 - Dis(x_p))."""
        with frozen(self.encoder, self.decoder):
            t = self.terms(x, eps, z_p)
            loss = F.softplus(-t["real"]).mean() + F.softplus(t["tilde"]).mean() + F.softplus(t["prior"]).mean()
            opt.step(loss)
        return {"loss_dis": loss.detach(), "d_real": torch.sigmoid(t["real"]).detach().mean(),
                "d_fake": torch.sigmoid(torch.cat([t["tilde"], t["prior"]])).detach().mean()}

    def encoder_step(self, x, eps, z_p, opt) -> dict[str, torch.Tensor]:
        """Minimise L_prior + L_llike (through the frozen decoder and discriminator)."""
        with frozen(self.decoder, self.dis, self.dis_out):
            t = self.terms(x, eps, z_p)
            kl, llike = t["kl"].mean(), t["llike"].mean()
            opt.step(kl + llike)
        return {"loss_enc": (kl + llike).detach(), "kl": kl.detach(), "llike": llike.detach()}

    def decoder_step(self, x, eps, z_p, opt) -> dict[str, torch.Tensor]:
        """Minimise gamma L_llike - log Dis(x~) - log Dis(x_p) (non-saturating generator side of L_GAN)."""
        with frozen(self.encoder, self.dis, self.dis_out):
            t = self.terms(x, eps, z_p)
            gan = F.softplus(-t["tilde"]).mean() + F.softplus(-t["prior"]).mean()
            loss = self.cfg.gamma * t["llike"].mean() + gan
            opt.step(loss)
        return {"loss_dec": loss.detach(), "loss_gan_dec": gan.detach()}

    def train_step(self, batch, opts, step: int) -> dict[str, torch.Tensor]:
        x = batch[0]
        d = self.cfg.latent_dim
        eps = torch.randn(len(x), d, device=x.device)  # one draw of the noise for all three updates
        z_p = torch.randn(len(x), d, device=x.device)
        out = self.discriminator_step(x, eps, z_p, opts["dis"])
        out.update(self.encoder_step(x, eps, z_p, opts["enc"]))
        out.update(self.decoder_step(x, eps, z_p, opts["dec"]))
        for name in ("enc", "dec", "dis"):
            out[f"grad_norm_{name}"] = grad_norm(opts[name].params)
        self._track_health(out)
        return out
