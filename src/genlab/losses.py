"""Loss terms shared across model families, each a per-image quantity (summed over pixels).

Per-image sums keep the units of the papers: nats per image for likelihoods, so an ELBO reads
directly against published NLL tables.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kl_dims(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Each latent dimension's KL(N(mu_j, exp logvar_j) || N(0, 1)) = 1/2 (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2);
    B x d -> B x d."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp logvar)) || N(0, I)), the sum over dimensions of `gaussian_kl_dims`; B x d -> B."""
    return gaussian_kl_dims(mu, logvar).sum(1)


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x | logits) = -sum_i [x_i log p_i + (1 - x_i) log(1 - p_i)], p = sigmoid(logits); B x ... -> B.

    For x in (0, 1) rather than {0, 1} this is the cross-entropy, not a normalised likelihood.
    """
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def gaussian_nll(mean: torch.Tensor, x: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """-log N(x; mean, sigma^2 I) = sum_i [(x_i - mean_i)^2 / (2 sigma^2) + log sigma + 1/2 log 2 pi]; B x ... -> B."""
    d = x[0].numel()
    sq = (x - mean).pow(2).flatten(1).sum(1)
    return 0.5 * sq * torch.exp(-2 * log_sigma) + d * (log_sigma + 0.5 * math.log(2 * math.pi))


def squared_error(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum_i (x_hat_i - x_i)^2 per image; B x ... -> B."""
    return (x_hat - x).pow(2).flatten(1).sum(1)


def discrete_nll(density_nll, dim: int, range_: str):
    """NLL of 8-bit data from the NLL of a density on uniformly dequantised data in the given range:
    P(8-bit image) >= density x bin volume, so NLL_discrete = NLL_density + D log(256 / range width)."""
    width = 1.0 if range_ == "01" else 2.0
    return density_nll + dim * math.log(256 / width)


def output_link(range_: str):
    """The output non-linearity that maps a decoder's pre-activation into the data range."""
    return torch.sigmoid if range_ == "01" else torch.tanh


# ---------------------------------------------------------------- adversarial (logits / critic values, B -> scalar)
ADVERSARIAL = ("minimax", "nonsaturating", "wgan", "wgan-gp", "lsgan", "hinge")


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's (critic's) loss on real and fake outputs.

    minimax, nonsaturating: -log D(x) - log(1 - D(G(z))),  D = sigmoid(logit)   (Goodfellow et al. 2014)
    wgan, wgan-gp:          E f(G(z)) - E f(x)                                    (Arjovsky et al. 2017)
    lsgan:                  1/2 (D(x) - 1)^2 + 1/2 D(G(z))^2                      (Mao et al. 2017)
    hinge:                  max(0, 1 - D(x)) + max(0, 1 + D(G(z)))                 (Lim & Ye 2017)
    """
    if kind in ("minimax", "nonsaturating"):
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind in ("wgan", "wgan-gp"):
        return fake.mean() - real.mean()
    if kind == "lsgan":
        return 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    raise ValueError(kind)


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss on the discriminator's outputs for its samples.

    minimax:        log(1 - D(G(z)))  = -softplus(logit)   (saturates: no gradient when D rejects fakes)
    nonsaturating:  -log D(G(z))      =  softplus(-logit)  (the same fixed point, strong early gradients)
    wgan, wgan-gp, hinge: -E f(G(z))    lsgan: 1/2 (D(G(z)) - 1)^2
    """
    if kind == "minimax":
        return -F.softplus(fake).mean()
    if kind == "nonsaturating":
        return F.softplus(-fake).mean()
    if kind in ("wgan", "wgan-gp", "hinge"):
        return -fake.mean()
    if kind == "lsgan":
        return 0.5 * (fake - 1).pow(2).mean()
    raise ValueError(kind)


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E (||grad_x f(x_hat)||_2 - 1)^2 at x_hat = eps x + (1 - eps) G(z), eps ~ U(0, 1) per sample (Gulrajani et al. 2017)."""
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def wgan_gp_drift(critic, real: torch.Tensor, fake: torch.Tensor, gp_weight: float, drift: float):
    """ProGAN's critic loss (Karras et al. 2018): WGAN-GP with the drift term that keeps D(x) near 0,

        L_D = E D(G(z)) - E D(x) + lambda E (||grad D(x^)|| - 1)^2 + eps_drift E D(x)^2

    -> (L_D, D(x), D(G(z)), the gradient penalty)."""
    d_real, d_fake = critic(real), critic(fake)
    gp = gradient_penalty(critic, real, fake)
    return d_fake.mean() - d_real.mean() + gp_weight * gp + drift * d_real.pow(2).mean(), d_real, d_fake, gp
