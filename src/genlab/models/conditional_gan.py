"""GANs with codes: the conditional GAN (Mirza & Osindero 2014), AC-GAN (Odena et al. 2017) and InfoGAN
(Chen et al. 2016), on the DCGAN (or MLP) networks and any loss of `genlab.losses.ADVERSARIAL`.

cGAN: G and D both see the class label y.

    min_G max_D  E_{x,y} log D(x | y) + E_{z,y} log(1 - D(G(z, y) | y))

    G's input is concat(z, one-hot(y)). D is a projection discriminator (Miyato & Koyama 2018):
    logit(x, y) = psi(phi(x)) + <embed(y), phi(x)>, phi the conv (or MLP) body, psi a linear head,
    embed a learned K x features table (spectrally normalised with the body when spectral_norm is on).

AC-GAN: G sees y; D does not, but predicts it with an auxiliary classifier on its shared features.

    L_S = E log P(S = real | x_real) + E log P(S = fake | x_fake)       (the adversarial game)
    L_C = E log P(C = y | x_real)   + E log P(C = y | x_fake)           (the class log-likelihood)
    D maximises L_S + L_C;  G maximises L_C - L_S

    so D's loss = adversarial + aux_weight * (CE(real, y) + CE(fake, y)), G's = adversarial + aux_weight * CE(fake, y).

InfoGAN: latent (z, c), c = (c_cat ~ Cat(1/n_cat), c_cont ~ U(-1, 1)^n_cont); Q(c | x) shares D's body.

    min_{G,Q} max_D  V(D, G) - lambda I(c; G(z, c)),    I(c; G(z, c)) >= L_I = H(c) + E log Q(c | G(z, c))

    log Q(c | x) = log softmax(q_cat(x))[c_cat] + sum_j log N(c_cont_j; mu_j(x), sigma_j^2)
    (lambda_cat = 1, lambda_cont = 0.1; sigma fixed at q_std = 1 as in the reference code, or learned)

In every model fakes in the discriminator's step carry the batch's labels, y ~ p_data(y), and the generator's
step reuses them. Optimizers: "d" holds D's body and heads (psi, embed, the class head), "g" holds G and, for
InfoGAN, Q's head: the -lambda L_I term is added to G's loss (updating G and Q's head, with D's body frozen)
and to D's loss on its fakes (updating the shared body, with Q's head frozen), as the reference implementation
adds it to both players' losses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..config import check_positive
from ..errors import UserError
from ..losses import d_loss, g_loss, gradient_penalty
from .common import class_count, frozen
from .gan import DCGAN, GAN_DEFAULTS, LOSS_DEFAULTS, DCGANConfig, grad_norm
from .registry import register

CODES = ("cat", "cont")


def d_update(model, opt, real_out, fake_out, x, fake, critic, extra: torch.Tensor | float = 0.0) -> dict:
    """Finish a discriminator step as `GAN.discriminator_step` does: adversarial loss + `extra` (+ the gradient
    penalty of `critic` for wgan-gp), one optimizer step, weight clipping for wgan; -> the logged terms."""
    cfg = model.cfg
    loss = d_loss(cfg.loss, real_out, fake_out) + extra
    terms = {}
    if cfg.loss == "wgan-gp":
        gp = gradient_penalty(critic, x, fake)
        loss = loss + cfg.gp_weight * gp
        terms["gp"] = gp.detach()
    opt.step(loss)
    if cfg.loss == "wgan":  # Lipschitz by weight clipping: every critic weight in [-c, c]
        with torch.no_grad():
            for p in opt.params:
                p.clamp_(-cfg.clip, cfg.clip)
    return {"loss_d": loss.detach(), **model.d_outputs(real_out, fake_out), **terms}


# ---------------------------------------------------------------------------------------------- class labels
class _Labelled:
    """Class labels for G: concat(z, one-hot(y)); default labels 0, 1, ..., K-1, 0, ...; labels required to train."""

    conditional = True

    def __init__(self, cfg, info):
        self.num_classes = class_count(self.registry_name, cfg.num_classes, info)
        super().__init__(cfg, info)

    def build_networks(self, cfg, info):  # G's input: z and the one-hot label
        return super().build_networks(replace(cfg, latent_dim=cfg.latent_dim + self.num_classes), info)

    def labels(self, n: int, y: torch.Tensor | None, device) -> torch.Tensor:
        # default: classes in turn 0, 1, ..., K-1, 0, ... so a grid shows rows of each class
        return torch.arange(n, device=device) % self.num_classes if y is None else y.to(device)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """G(z, y) in the data range; z: B x latent_dim, y: B class indices (default: the classes in turn)."""
        y = self.labels(len(z), y, z.device)
        return self.link(self.G(torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], 1)))

    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.prior(n, generator), y)

    def _need_labels(self, y):
        if y is None:
            raise UserError(f"{self.registry_name} needs the class labels of its training images")
        return y

    def train_step(self, batch, opts, step: int) -> dict[str, torch.Tensor]:
        x, y = batch
        y = self._need_labels(y)
        terms = self.discriminator_step(x, y, opts["d"])
        if step % self.cfg.n_critic == 0:
            self.last_g_loss = self.generator_step(y, opts["g"])
        terms["loss_g"] = self.last_g_loss
        terms["grad_norm_d"] = grad_norm(opts["d"].params)
        terms["grad_norm_g"] = grad_norm(opts["g"].params)
        self._track_health(terms)
        return terms


@dataclass
class CGANConfig(DCGANConfig):
    num_classes: int = 0  # 0 = take it from the data

    def validate(self) -> None:
        super().validate()
        check_positive("model.num_classes", self.num_classes, allow_zero=True)


@register("cgan", CGANConfig, GAN_DEFAULTS, LOSS_DEFAULTS)
class CGAN(_Labelled, DCGAN):
    """Conditional GAN: G(z, one-hot y) and a projection discriminator D(x, y); samples per chosen class."""

    def __init__(self, cfg: CGANConfig, info):
        super().__init__(cfg, info)
        embed = nn.Embedding(self.num_classes, self.D.out_features)
        nn.init.xavier_uniform_(embed.weight)  # N(0, 1) rows would swamp psi(phi(x)) at the start
        self.embed = spectral_norm(embed) if cfg.spectral_norm else embed

    def critic(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """psi(phi(x)) + <embed(y), phi(x)>: D's logit (or critic value) per image and label; -> B."""
        h = self.D(x)
        return self.d_out(h).squeeze(1) + (self.embed(self._need_labels(y)) * h).sum(1)

    def d_modules(self) -> list[nn.Module]:
        return [self.D, self.d_out, self.embed]

    def discriminator_step(self, x, y, opt) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake = self.decode(self.prior(len(x)), y)
        return d_update(self, opt, self.critic(x, y), self.critic(fake, y), x, fake, lambda t: self.critic(t, y))

    def generator_step(self, y, opt) -> torch.Tensor:
        with frozen(*self.d_modules()):
            loss = g_loss(self.cfg.loss, self.critic(self.decode(self.prior(len(y)), y), y))
            opt.step(loss)
        return loss.detach()


@dataclass
class ACGANConfig(DCGANConfig):
    num_classes: int = 0  # 0 = take it from the data
    aux_weight: float = 1.0  # weight of the auxiliary classifier's cross-entropy in both losses

    def validate(self) -> None:
        super().validate()
        check_positive("model.num_classes", self.num_classes, allow_zero=True)
        check_positive("model.aux_weight", self.aux_weight, allow_zero=True)


@register("acgan", ACGANConfig, GAN_DEFAULTS, LOSS_DEFAULTS)
class ACGAN(_Labelled, DCGAN):
    """AC-GAN: G(z, one-hot y); D's shared features feed a real/fake head and an auxiliary K-way classifier."""

    def __init__(self, cfg: ACGANConfig, info):
        super().__init__(cfg, info)
        self.cls = self.D.head(self.num_classes)

    def critic(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """D's real/fake logit per image; y is accepted for the conditional interface and ignored. -> B."""
        return self.d_out(self.D(x)).squeeze(1)

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The auxiliary classifier's logits; B x C x H x W -> B x K."""
        return self.cls(self.D(x))

    def d_modules(self) -> list[nn.Module]:
        return [self.D, self.d_out, self.cls]

    def discriminator_step(self, x, y, opt) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake = self.decode(self.prior(len(x)), y)
        h_real, h_fake = self.D(x), self.D(fake)
        cls_real = self.cls(h_real)
        ce_real, ce_fake = F.cross_entropy(cls_real, y), F.cross_entropy(self.cls(h_fake), y)
        terms = d_update(self, opt, self.d_out(h_real).squeeze(1), self.d_out(h_fake).squeeze(1), x, fake,
                         self.critic, self.cfg.aux_weight * (ce_real + ce_fake))
        return {**terms, "aux_acc": (cls_real.argmax(1) == y).float().mean().detach(),
                "aux_ce_real": ce_real.detach(), "aux_ce_fake": ce_fake.detach()}

    def generator_step(self, y, opt) -> torch.Tensor:
        with frozen(*self.d_modules()):
            h = self.D(self.decode(self.prior(len(y)), y))
            ce = F.cross_entropy(self.cls(h), y)
            loss = g_loss(self.cfg.loss, self.d_out(h).squeeze(1)) + self.cfg.aux_weight * ce
            opt.step(loss)
        return loss.detach()


# ---------------------------------------------------------------------------------------------- InfoGAN
@dataclass
class InfoGANConfig(DCGANConfig):
    latent_dim: int = 62  # incompressible noise z (the paper's MNIST setting: 62 + 10 + 2)
    n_cat: int = 10  # categories of the one categorical code (0 = none)
    n_cont: int = 2  # continuous codes, each U(-1, 1)
    lambda_cat: float = 1.0
    lambda_cont: float = 0.1
    q_std: float = 1.0  # std of Q's Gaussian over each continuous code; 0 = learned (a log-std output per code)

    def validate(self) -> None:
        super().validate()
        for name in ("n_cont", "lambda_cat", "lambda_cont", "q_std"):
            check_positive(f"model.{name}", getattr(self, name), allow_zero=True)
        if self.n_cat == 1 or self.n_cat < 0:
            raise UserError(f"model.n_cat must be 0 or at least 2, got {self.n_cat}")
        if not self.n_cat and not self.n_cont:
            raise UserError("infogan needs at least one code: model.n_cat >= 2 or model.n_cont >= 1")


@register("infogan", InfoGANConfig, GAN_DEFAULTS, LOSS_DEFAULTS)
class InfoGAN(DCGAN):
    """InfoGAN: G(z, c) with categorical and continuous codes; Q(c | x) on D's features maximises a bound on I(c; x)."""

    conditional = False

    def __init__(self, cfg: InfoGANConfig, info):
        super().__init__(cfg, info)
        self.q = self.D.head(cfg.n_cat + (1 if cfg.q_std else 2) * cfg.n_cont)

    def build_networks(self, cfg, info):  # G's input: z and the codes
        return super().build_networks(replace(cfg, latent_dim=cfg.latent_dim + cfg.n_cat + cfg.n_cont), info)

    # ------------------------------------------------------------ codes and sampling
    def codes(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """c_cat ~ uniform over n_cat categories (B, long), c_cont ~ U(-1, 1) (B x n_cont)."""
        device = next(self.G.parameters()).device
        cat = (torch.randint(self.cfg.n_cat, (n,), generator=generator, device=device) if self.cfg.n_cat
               else torch.zeros(n, dtype=torch.long, device=device))
        cont = torch.rand(n, self.cfg.n_cont, generator=generator, device=device) * 2 - 1
        return cat, cont

    def decode(self, z: torch.Tensor, cat: torch.Tensor | None = None, cont: torch.Tensor | None = None) -> torch.Tensor:
        """G(z, c) in the data range; by default the categories in turn (0, 1, ..., n_cat-1, 0, ...) and c_cont = 0."""
        n = len(z)
        if cat is None:
            cat = torch.arange(n, device=z.device) % max(self.cfg.n_cat, 1)
        if cont is None:
            cont = z.new_zeros(n, self.cfg.n_cont)
        one_hot = F.one_hot(cat.to(z.device), self.cfg.n_cat).to(z.dtype) if self.cfg.n_cat else z.new_zeros(n, 0)
        return self.link(self.G(torch.cat([z, one_hot, cont.to(z)], 1)))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images with noise and every code drawn from the prior."""
        z = self.prior(n, generator)
        return self.decode(z, *self.codes(n, generator))

    def sweep_codes(self, code: str, index: int = 0, steps: int = 10, rows: int = 10,
                    generator: torch.Generator | None = None):
        """(z, cat, cont) for `code_sweep`, each with rows * steps entries in row-major order."""
        cfg = self.cfg
        if code not in CODES:
            raise UserError(f"code must be one of {', '.join(CODES)}, got '{code}'")
        if code == "cat" and (not cfg.n_cat or index != 0):
            raise UserError(f"this InfoGAN has {'one categorical code (index 0)' if cfg.n_cat else 'no categorical code'}"
                            f", got index {index}")
        if code == "cont" and not 0 <= index < cfg.n_cont:
            raise UserError(f"continuous code index must be in 0..{cfg.n_cont - 1}, got {index}")
        z = self.prior(rows, generator).repeat_interleave(steps, 0)  # one noise per row
        col = torch.arange(steps, device=z.device).repeat(rows)
        row = torch.arange(rows, device=z.device).repeat_interleave(steps)
        cont = z.new_zeros(rows * steps, cfg.n_cont)
        if code == "cat":  # columns: the categories in turn
            cat = col % cfg.n_cat
        else:  # columns: code `index` from -2 to 2 (beyond the prior's [-1, 1]); rows: the categories in turn
            cat = row % max(cfg.n_cat, 1)
            cont[:, index] = torch.linspace(-2, 2, steps, device=z.device)[col]
        return z, cat, cont

    def code_sweep(self, code: str, index: int = 0, steps: int = 10, rows: int = 10,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """The paper's figure: each row one fixed noise, the columns varying one code, the others fixed
        (categorical: each category in turn, continuous codes 0; continuous code `index`: -2 .. 2, the
        category fixed per row, the other continuous codes 0). -> rows x steps x C x H x W, in the data range."""
        x = self.decode(*self.sweep_codes(code, index, steps, rows, generator))
        return x.view(rows, steps, *x.shape[1:])

    def figures(self, out_dir: str | Path, generator: torch.Generator | None = None) -> list[Path]:
        """The paper's code figures: one grid per code (codes_cat.png, codes_cont0.png, ...)."""
        out = Path(out_dir)
        paths = [save_code_sweep(self, out / "codes_cat.png", "cat", generator=generator)] if self.cfg.n_cat else []
        for j in range(self.cfg.n_cont):
            paths.append(save_code_sweep(self, out / f"codes_cont{j}.png", "cont", j, generator=generator))
        return paths

    # ------------------------------------------------------------ Q and the mutual-information bound
    def q_params(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q(c | x) from D's features: categorical logits B x n_cat, Gaussian mean and log-std B x n_cont."""
        k, m = self.cfg.n_cat, self.cfg.n_cont
        out = self.q(h)
        logits, mean = out[:, :k], out[:, k : k + m]
        log_std = out[:, k + m :] if not self.cfg.q_std else torch.full_like(mean, math.log(self.cfg.q_std))
        return logits, mean, log_std

    def log_q(self, h: torch.Tensor, cat: torch.Tensor, cont: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log Q(c_cat | x) and sum_j log N(c_cont_j; mu_j, sigma_j^2), per image; -> (B, B)."""
        logits, mean, log_std = self.q_params(h)
        log_cat = -F.cross_entropy(logits, cat, reduction="none") if self.cfg.n_cat else h.new_zeros(len(h))
        log_cont = (-0.5 * ((cont - mean) * torch.exp(-log_std)).pow(2) - log_std
                    - 0.5 * math.log(2 * math.pi)).sum(1)
        return log_cat, log_cont

    def info_terms(self, h: torch.Tensor, cat: torch.Tensor, cont: torch.Tensor) -> dict[str, torch.Tensor]:
        """loss_info = -(lambda_cat E log Q(c_cat | x) + lambda_cont E log Q(c_cont | x)), and the bounds
        L_I = H(c) + E log Q(c | x) <= I(c; x) in nats: mi_cat (H = log n_cat), mi_cont (H = n_cont log 2)."""
        log_cat, log_cont = (t.mean() for t in self.log_q(h, cat, cont))
        cfg = self.cfg
        return {"loss_info": -(cfg.lambda_cat * log_cat + cfg.lambda_cont * log_cont),
                "mi_cat": log_cat + math.log(max(cfg.n_cat, 1)), "mi_cont": log_cont + cfg.n_cont * math.log(2)}

    # ------------------------------------------------------------ training
    def g_modules(self) -> list[nn.Module]:
        return [self.G, self.q]  # Q's head moves with G; the body it shares with D is D's

    def discriminator_step(self, x, opt) -> dict[str, torch.Tensor]:
        n = len(x)
        z, (cat, cont) = self.prior(n), self.codes(n)
        with torch.no_grad():
            fake = self.decode(z, cat, cont)
        h_real, h_fake = self.D(x), self.D(fake)
        with frozen(self.q):  # the body learns Q's features here; Q's head moves with G's optimizer
            info = self.info_terms(h_fake, cat, cont)
            terms = d_update(self, opt, self.d_out(h_real).squeeze(1), self.d_out(h_fake).squeeze(1), x, fake,
                             self.critic, info["loss_info"])
        return {**terms, **{k: v.detach() for k, v in info.items()}}

    def generator_step(self, n: int, opt) -> torch.Tensor:
        z, (cat, cont) = self.prior(n), self.codes(n)
        with frozen(*self.d_modules()):
            h = self.D(self.decode(z, cat, cont))
            loss = g_loss(self.cfg.loss, self.d_out(h).squeeze(1)) + self.info_terms(h, cat, cont)["loss_info"]
            opt.step(loss)
        return loss.detach()


def save_code_sweep(model: InfoGAN, path: str | Path, code: str, index: int = 0, steps: int = 10, rows: int = 10,
                    generator: torch.Generator | None = None) -> Path:
    """Write `model.code_sweep(...)` as a PNG grid (one row per noise), with the model in eval mode."""
    from ..data import to_unit
    from ..viz import save_grid, upscale_for_display

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            images = model.code_sweep(code, index, steps, rows, generator)
    finally:
        model.train(was_training)
    images = to_unit(images.flatten(0, 1).float(), model.info)
    return save_grid(images, path, nrow=steps, scale=upscale_for_display(model.info.height))
