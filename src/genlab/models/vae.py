"""Variational autoencoders (Kingma & Welling 2014), beta-VAE (Higgins et al. 2017) and the conditional VAE
(Sohn et al. 2015).

    z = mu(x) + sigma(x) * eps,  eps ~ N(0, I)                                  (reparametrisation)
    -ELBO(x) = E_q[-log p(x | z)] + beta * KL(q(z | x) || N(0, I))              (nats per image)
    KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)                     (closed form)

Likelihoods: Bernoulli on [0, 1] data (the cross-entropy when the data are not binary), or Gaussian with
one learned (or fixed) standard deviation. With `recon=perceptual` the training loss replaces -log p(x | z) by a
weighted perceptual distance of the decoded mean (Hou et al. 2017's feature-consistent VAE; models/perceptual.py):

    loss = w * d_perceptual(x, mean(p(x | z))) + beta * KL

which is no longer a bound; the logged neg_elbo is still the likelihood's (a bound, just not the one optimised).
The conditional VAE feeds the one-hot label to the encoder's head and to the decoder: q(z | x, y), p(x | z, y).

Sampling draws z from N(0, I), or from an estimate of the codes' distribution fitted to the posteriors of
`prior_fit_images` training images at every epoch's end (models/latent_prior.py): `prior=mixture`, a Gaussian
mixture on the posterior means (Ghosh et al. 2020's ex-post density estimation), or `prior=two-stage`, Dai & Wipf
(2019)'s second VAE on draws from the posteriors, trained `prior_epochs` passes further at each fit. Training and the
likelihood (ELBO, IWAE) keep N(0, I): the fitted prior only moves where samples are drawn. `genlab fit-prior` fits
one to a finished run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_choice, check_positive
from ..data.transforms import as_unit
from ..errors import UserError
from ..losses import bernoulli_nll, gaussian_kl_dims, gaussian_nll, output_link
from ..nn import ARCHS, Decoder, Encoder
from .common import SingleLoss
from .latent_prior import LATENT_PRIORS
from .perceptual import NETWORKS as PERCEPTUAL_NETS
from .perceptual import PerceptualDistance
from .registry import register

LIKELIHOODS = ("bernoulli", "gaussian")
RECONS = ("likelihood", "perceptual")
PRIORS = ("normal", *LATENT_PRIORS)
# Adam at 2e-3: at 1e-3 (the common examples' rate) the first epoch's samples on MNIST are blurred strokes that the
# classifier reads as 8 (53% of them: the collapse warning); at 2e-3 the largest class takes 26-30% after epoch 1 (two
# seeds, vae and cvae) and the test loss after 3 epochs is 2-3 nats lower (BENCHMARKS.md, issue 10)
VAE_DEFAULTS = {"train": {"lr": 2e-3}}


@dataclass
class VAEConfig:
    arch: str = "auto"  # mlp | conv | dcgan (the GANs' networks, nn/blocks.py) | auto (conv from 32 px)
    hidden: tuple[int, ...] = (512,)
    channels: tuple[int, ...] = ()  # conv widths; () = sized to the image (28 px: 32, 64; 64 px: 32 ... 256)
    latent_dim: int = 16
    likelihood: str = "bernoulli"  # bernoulli | gaussian
    sigma: float = 0.0  # gaussian std; 0 = one learned scalar
    beta: float = 1.0  # weight of the KL term (beta-VAE)
    recon: str = "likelihood"  # likelihood | perceptual (train on w x the perceptual distance instead of -log p(x|z))
    # w: 200 would put the MNIST classifier's distance on the scale of the pixels' nats (a 3x3 blur costs 34 nats of
    # cross-entropy above the image's own and 0.127 in that distance; the mean image 149 and 0.94), but the distance
    # sits at the mean image's ~1.0 for the first ~350 steps, and at 200 the KL collapsed to 0 meanwhile; at 2000
    # the code kept 21 nats through that plateau (BENCHMARKS.md, issue 14)
    perceptual_weight: float = 2000.0
    perceptual_net: str = "auto"  # auto (the MNIST classifier for 1x28x28, else efficientnet-lite0) | mnist | ...
    prior: str = "normal"  # the sampling prior: normal (N(0, I)) | mixture | two-stage (fitted to the codes; docstring)
    prior_components: int = 10  # mixture components
    prior_fit_images: int = 10000  # training images whose codes fit the prior (0 = all)
    prior_width: int = 1024  # two-stage: the second VAE's hidden width (Dai & Wipf's 1024)
    prior_depth: int = 3  # two-stage: hidden layers of each of its MLPs (Dai & Wipf's 3)
    prior_epochs: int = 1  # two-stage: Adam passes over the codes at each fit (continuing from the last fit)
    # two-stage: Adam's rate at batch 64. Dai & Wipf use 1e-4 for 800 epochs; at 1e-3 a second stage on the
    # learned-sigma conv VAE's MNIST codes took its decoded draws' domain FID-5k from 488 (N(0, I)) to 221 in 8 epochs
    prior_lr: float = 1e-3

    def validate(self) -> None:
        check_choice("model.arch", self.arch, ARCHS)
        check_choice("model.likelihood", self.likelihood, LIKELIHOODS)
        check_choice("model.recon", self.recon, RECONS)
        check_choice("model.perceptual_net", self.perceptual_net, PERCEPTUAL_NETS)
        check_choice("model.prior", self.prior, PRIORS)
        check_positive("model.prior_components", self.prior_components)
        check_positive("model.prior_fit_images", self.prior_fit_images, allow_zero=True)
        for name in ("prior_width", "prior_depth", "prior_epochs", "prior_lr"):
            check_positive(f"model.{name}", getattr(self, name))
        check_positive("model.perceptual_weight", self.perceptual_weight)
        check_positive("model.latent_dim", self.latent_dim)
        check_positive("model.sigma", self.sigma, allow_zero=True)
        check_positive("model.beta", self.beta, allow_zero=True)


ACTIVE_KL = 0.01  # nats: a latent dimension with more KL than this carries information about x
COLLAPSE_MIN_STEPS = 200


@register("vae", VAEConfig, VAE_DEFAULTS)
class VAE(SingleLoss, nn.Module):
    """Variational autoencoder: Gaussian posterior, reparametrisation, closed-form KL, beta weight."""

    conditional = False

    def __init__(self, cfg: VAEConfig, info):
        super().__init__()
        self.cfg, self.info = cfg, info
        if cfg.likelihood == "bernoulli" and info.range != "01":
            raise UserError("a Bernoulli likelihood needs data in [0, 1]: --set data.range=01, or model.likelihood=gaussian")
        k = self.label_dim
        self.encoder = Encoder(info.shape, cfg.arch, cfg.hidden, cfg.channels)
        self.posterior_head = nn.Linear(self.encoder.out_features + k, 2 * cfg.latent_dim)
        self.decoder = Decoder(info.shape, cfg.arch, cfg.hidden, cfg.channels, cfg.latent_dim + k)
        if cfg.likelihood == "gaussian":
            init = math.log(cfg.sigma) if cfg.sigma else 0.0
            self.log_sigma = nn.Parameter(torch.tensor(init), requires_grad=not cfg.sigma)
        self.link = output_link(info.range)
        self.perceptual = PerceptualDistance(info.shape, cfg.perceptual_net) if cfg.recon == "perceptual" else None
        if cfg.prior in LATENT_PRIORS:  # under its own name (mixture, second_stage), which checkpoints keep
            prior = LATENT_PRIORS[cfg.prior].from_config(cfg)
            self.add_module(prior.slot, prior)

    @property
    def fitted_prior(self) -> nn.Module | None:
        """The estimator of q(z) that model.prior names (None for normal)."""
        return getattr(self, LATENT_PRIORS[self.cfg.prior].slot) if self.cfg.prior in LATENT_PRIORS else None

    @property
    def label_dim(self) -> int:
        return 0

    def _cond(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return h  # the unconditional VAE ignores labels

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x): x B x C x H x W -> (mu, logvar), each B x latent_dim."""
        mu, logvar = self.posterior_head(self._cond(self.encoder(x), y)).chunk(2, dim=1)
        return mu, logvar

    def decoder_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z: B x latent_dim -> pre-activation B x C x H x W."""
        return self.decoder(self._cond(z, y))

    def encode(self, x, y=None):
        """The posterior mean, the usual code for downstream use."""
        return self.posterior(x, y)[0]

    def decode(self, z, y=None):
        """The mean of p(x | z) in the data range."""
        return self.link(self.decoder_logits(z, y))

    def reconstruct(self, x, y=None):
        return self.decode(self.encode(x, y), y)

    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None,
               prior: str | None = None) -> torch.Tensor:
        """n images decoded from z ~ N(0, I), or from the fitted prior (the likelihood's mean, as papers show).
        `prior` overrides model.prior for these samples: a fitted prior's run also samples from N(0, I)."""
        device = next(self.parameters()).device
        prior = prior or self.cfg.prior
        check_choice("the sampling prior", prior, PRIORS)
        if prior == "normal":
            z = torch.randn(n, self.cfg.latent_dim, generator=generator, device=device)
        elif prior == self.cfg.prior:
            z = self.fitted_prior.sample(n, generator)
        else:
            raise UserError(f"this VAE has no fitted {LATENT_PRIORS[prior].title}: train it with model.prior={prior}, "
                            f"or fit one with genlab fit-prior RUN --prior {prior}")
        return self.decode(z, self._sample_labels(n, y, device))

    @torch.no_grad()
    def posteriors(self, batches, limit: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x) of the first `limit` images (0 = all) in `batches` (an iterator of (x, y)), in eval mode:
        (means, standard deviations), each N x latent_dim."""
        means, sds, seen = [], [], 0
        was_training = self.training
        self.eval()
        for x, y in batches:
            mu, logvar = self.posterior(x, y)  # B x d each
            means.append(mu)
            sds.append(torch.exp(0.5 * logvar))
            seen += len(x)
            if limit and seen >= limit:
                break
        self.train(was_training)
        keep = slice(0, limit or None)
        return torch.cat(means)[keep], torch.cat(sds)[keep]

    def fit_to_data(self, batches, seed: int = 0) -> None:
        """With a fitted prior (model.prior mixture or two-stage): fit it to the posteriors of the first
        prior_fit_images training images in `batches`; the trainer calls it at every epoch's end, before the
        samples."""
        if self.fitted_prior is not None:
            self.fitted_prior.fit(*self.posteriors(batches, self.cfg.prior_fit_images), seed=seed)

    def _sample_labels(self, n, y, device):
        return None

    def nll(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x | z) per image; -> B."""
        if self.cfg.likelihood == "bernoulli":
            return bernoulli_nll(logits, x)
        return gaussian_nll(self.link(logits), x, self.log_sigma)

    def elbo_terms(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One-sample ELBO terms per image: recon = -log p(x | z), kl (each B), the KL of each latent
        dimension averaged over the batch (d), and the decoder's pre-activations (B x C x H x W)."""
        mu, logvar = self.posterior(x, y)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # reparametrisation
        kl_dims = gaussian_kl_dims(mu, logvar)  # B x d
        logits = self.decoder_logits(z, y)
        return {"recon": self.nll(logits, x), "kl": kl_dims.sum(1), "kl_dims": kl_dims.mean(0), "logits": logits}

    def elbo(self, x, y=None) -> torch.Tensor:
        """ELBO(x) in nats per image (beta = 1, the bound itself); -> B."""
        t = self.elbo_terms(x, y)
        return -(t["recon"] + t["kl"])

    @torch.no_grad()
    def iwae(self, x: torch.Tensor, y: torch.Tensor | None = None, k: int = 5000, chunk: int = 100) -> torch.Tensor:
        """Importance-weighted estimate of log p(x) in nats per image (Burda et al. 2016); -> B.

            log p(x) ~= log 1/k sum_i p(x | z_i) p(z_i) / q(z_i | x),   z_i ~ q(z | x)

        It is a lower bound that tightens as k grows (k = 1 is the ELBO). Samples are drawn `chunk` at a
        time and folded into a running logsumexp, so memory stays O(B * chunk * D) for any k.
        """
        mu, logvar = self.posterior(x, y)  # B x d each
        std = torch.exp(0.5 * logvar)
        b, d = mu.shape
        log2pi = math.log(2 * math.pi)
        total = torch.full((b,), -math.inf, device=x.device)
        for start in range(0, k, chunk):
            m = min(chunk, k - start)
            eps = torch.randn(m, b, d, device=x.device)
            z = mu + std * eps  # m x B x d
            ym = None if y is None else y.repeat(m)
            logits = self.decoder_logits(z.flatten(0, 1), ym)  # (m B) x C x H x W
            log_px = -self.nll(logits, x.repeat(m, *([1] * (x.dim() - 1)))).view(m, b)
            log_pz = -0.5 * (z.pow(2) + log2pi).sum(-1)  # log N(z; 0, I)
            log_qz = -0.5 * (eps.pow(2) + log2pi + logvar).sum(-1)  # log N(z; mu, std^2)
            total = torch.logaddexp(total, torch.logsumexp(log_px + log_pz - log_qz, 0))
        return total - math.log(k)

    def losses(self, x, y=None):
        t = self.elbo_terms(x, y)
        recon, kl = t["recon"].mean(), t["kl"].mean()
        if self.training:
            self._kl_dims, self._kl_steps = t["kl_dims"].detach(), getattr(self, "_kl_steps", 0) + 1
        out = {"recon": recon, "kl": kl, "neg_elbo": recon + kl}
        fit = recon
        if self.perceptual is not None:
            r = self.info.range
            out["perceptual"] = self.perceptual(as_unit(self.link(t["logits"]), r), as_unit(x, r)).mean()
            fit = self.cfg.perceptual_weight * out["perceptual"]
        return {"loss": fit + self.cfg.beta * kl, **out}

    def health(self) -> str | None:
        """Posterior collapse: from step 200 on, warn when fewer than max(1, d / 8) latent dimensions carry more
        than 0.01 nats of KL (the active units of Burda et al. 2016): the decoder is ignoring the code."""
        if getattr(self, "_kl_steps", 0) < COLLAPSE_MIN_STEPS:
            return None
        d = self.cfg.latent_dim
        active = int((self._kl_dims > ACTIVE_KL).sum())
        if active >= max(1, d // 8):
            return None
        return (f"posterior collapse: fewer than {max(1, d // 8)} of {d} latent dimensions carry more than "
                f"{ACTIVE_KL} nats of KL (KL {float(self._kl_dims.sum()):.2g} nats per image); the decoder ignores "
                f"the code: try a lower model.beta, a smaller decoder, or a KL warm-up")


@dataclass
class CVAEConfig(VAEConfig):
    num_classes: int = 0  # 0 = take it from the data


@register("cvae", CVAEConfig, VAE_DEFAULTS)
class CVAE(VAE):
    """Conditional VAE: encoder head and decoder see the one-hot class label; samples per chosen class."""

    conditional = True

    def __init__(self, cfg: CVAEConfig, info):
        self._k = cfg.num_classes or info.num_classes
        if self._k < 2:
            raise UserError("cvae needs labelled data with at least 2 classes (this dataset has no labels)")
        super().__init__(cfg, info)

    @property
    def label_dim(self) -> int:
        return self._k

    def _cond(self, h, y):
        if y is None:
            raise UserError("cvae needs the class labels of its inputs")
        return torch.cat([h, F.one_hot(y, self._k).to(h.dtype)], dim=1)  # B x (d + K)

    def _sample_labels(self, n, y, device):
        # default: classes in turn 0, 1, ..., K-1, 0, ... so a grid shows rows of each class
        return torch.arange(n, device=device) % self._k if y is None else y.to(device)
