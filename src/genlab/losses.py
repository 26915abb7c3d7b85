"""Loss terms shared across model families, each a per-image quantity (summed over pixels).

Per-image sums keep the units of the papers: nats per image for likelihoods, so an ELBO reads
directly against published NLL tables.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp logvar)) || N(0, I)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2); B x d -> B."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


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


def output_link(range_: str):
    """The output non-linearity that maps a decoder's pre-activation into the data range."""
    return torch.sigmoid if range_ == "01" else torch.tanh
