"""Output heads of autoregressive image models: how a network's outputs at one sub-pixel score and draw its value.

A network emits `params` numbers per sub-pixel, channel-major (B x C * params x H x W: channel c's numbers come
from colour group c of the masked features). Values live on [0, 1]; the model maps them to its data range.

    bernoulli         p(x = 1) = sigma(l)                                  binarised data
    categorical       p(x = v) = softmax(l)_v, v = 0..255                  8-bit data (van den Oord et al. 2016a)
    logistic_mixture  sum_k pi_k [sigma((x + b - mu_k)/s_k) - sigma((x - b - mu_k)/s_k)]
                                                                           8-bit data (Salimans et al. 2017)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LEVELS = 256


def discretized_logistic_mixture_log_prob(x: torch.Tensor, logit_pi: torch.Tensor, mu: torch.Tensor,
                                          log_s: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """log P(x) of 8-bit values under a mixture of discretised logistics (Salimans et al. 2017, eq. 2).

        P(x) = sum_k pi_k [sigma((x + b - mu_k) / s_k) - sigma((x - b - mu_k) / s_k)],   b = 1 / (levels - 1)

    x holds the levels mapped to [-1, 1] (x = 2 v / (levels - 1) - 1); the lowest bin extends to -inf and the
    highest to +inf, so the `levels` probabilities sum to 1 exactly. x: B x ..., mixture params: B x K x ...
    (the same trailing shape) -> log P, B x ....
    """
    x = x.unsqueeze(1)  # B x 1 x ...
    b = 1.0 / (levels - 1)
    inv_s = torch.exp(-log_s)
    plus, minus = inv_s * (x - mu + b), inv_s * (x - mu - b)
    log_cdf_plus = F.logsigmoid(plus)  # log sigma(plus): the lowest bin's mass
    log_one_minus_cdf_minus = -F.softplus(minus)  # log (1 - sigma(minus)): the highest bin's mass
    # interior bins: log(sigma(plus) - sigma(minus)), computed as sigma(plus) (1 - exp(-(plus - minus))) ... in logs:
    # log sigma(plus) + log(1 - sigma(minus)) + log(1 - exp(minus - plus)) is exact: sigma(p) - sigma(m) =
    # sigma(p) (1 - sigma(m)) (1 - e^(m - p)); with p - m = 2 b / s > 0 every term is finite
    log_mid = log_cdf_plus + log_one_minus_cdf_minus + torch.log(-torch.expm1(minus - plus))
    log_bin = torch.where(x < -1 + b / 2, log_cdf_plus, torch.where(x > 1 - b / 2, log_one_minus_cdf_minus, log_mid))
    return torch.logsumexp(F.log_softmax(logit_pi, dim=1) + log_bin, dim=1)


class Bernoulli:
    params = 1

    def target(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 > 0.5).to(x01.dtype)

    def unit(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def log_prob(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """out: B x C x H x W logits, t: B x C x H x W in {0, 1} -> log p per sub-pixel, B x C x H x W."""
        return -F.binary_cross_entropy_with_logits(out, t, reduction="none")

    def sample(self, p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """p: B x 1 logits -> B values in {0, 1}."""
        return (torch.rand(p.shape[0], generator=generator, device=p.device) < torch.sigmoid(p[:, 0])).float()


class Categorical:
    params = LEVELS

    def target(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 * (LEVELS - 1)).round().long()

    def unit(self, t: torch.Tensor) -> torch.Tensor:
        return t.float() / (LEVELS - 1)

    def log_prob(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b, _, h, w = out.shape
        logits = out.view(b, -1, LEVELS, h, w)  # B x C x 256 x H x W
        return F.log_softmax(logits, dim=2).gather(2, t.unsqueeze(2)).squeeze(2)

    def sample(self, p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """p: B x 256 logits -> B values v / 255."""
        return torch.multinomial(F.softmax(p, dim=1), 1, generator=generator)[:, 0].float() / (LEVELS - 1)


class LogisticMixture:
    """K discretised logistics per sub-pixel; colour channels depend on each other through the channel masks
    (PixelCNN++ instead shares the mixture over a pixel and adds linear terms in the earlier channels)."""

    LOG_S_MIN = -7.0  # PixelCNN++'s floor on the log scale, which keeps the bin differences representable

    def __init__(self, mixtures: int):
        self.k = mixtures
        self.params = 3 * mixtures

    def target(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 * (LEVELS - 1)).round() / (LEVELS - 1) * 2 - 1  # the level's centre on [-1, 1]

    def unit(self, t: torch.Tensor) -> torch.Tensor:
        return (t + 1) / 2

    def _split(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logit_pi, mu, log_s = p.chunk(3, dim=1)  # each B x K x ...
        return logit_pi, mu, log_s.clamp_min(self.LOG_S_MIN)

    def log_prob(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b, c, h, w = t.shape
        p = out.view(b, c, self.params, h, w).transpose(1, 2)  # B x 3K x C x H x W
        return discretized_logistic_mixture_log_prob(t, *self._split(p), levels=LEVELS)

    def sample(self, p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """p: B x 3K -> B values v / 255: pick a component, draw a logistic, round to the nearest level."""
        logit_pi, mu, log_s = self._split(p)
        k = torch.multinomial(F.softmax(logit_pi, dim=1), 1, generator=generator)  # B x 1
        u = torch.rand(p.shape[0], generator=generator, device=p.device).clamp(1e-5, 1 - 1e-5)
        x = mu.gather(1, k)[:, 0] + log_s.gather(1, k)[:, 0].exp() * (torch.log(u) - torch.log1p(-u))
        return ((x.clamp(-1, 1) + 1) / 2 * (LEVELS - 1)).round() / (LEVELS - 1)


HEADS = {
    "bernoulli": lambda cfg: Bernoulli(),
    "categorical": lambda cfg: Categorical(),
    "logistic_mixture": lambda cfg: LogisticMixture(cfg.mixtures),
}
