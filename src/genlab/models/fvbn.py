"""Fully visible belief networks on binary images: NADE (Larochelle & Murray 2011) and MADE (Germain et al. 2015).

Both factorise the image's D = C H W binary pixels in an ordering o, each conditional a Bernoulli, so that
log p(x) is exact and costs one network pass:

    log p(x) = sum_d log p(x_o(d) | x_o(<d))

    NADE (eq. 2-3, weights W shared across the conditionals):
        a_1 = c,   a_(d+1) = a_d + W[:, o(d)] x_o(d),   h_d = sigmoid(a_d)
        p(x_o(d) = 1 | x_o(<d)) = sigmoid(b_o(d) + V[o(d)] . h_d)
    MADE (eq. 12-13): an MLP autoencoder with masked weights. Input pixel o(d) has degree d (1..D); each hidden
        unit k of layer l draws a degree m_l(k) in [min m_(l-1), D - 1]; a hidden weight from j to k is kept when
        m_l(k) >= m_(l-1)(j), an output weight to pixel i when m_in(i) > m_L(k): output i sees earlier pixels only.
        With `masks` > 1 training cycles through that many masks (connectivity-agnostic training; with
        `order_agnostic` each also draws its own ordering), and the test likelihood is that of their ensemble,
        log (1/K) sum_k p_k(x), which the sampler draws from exactly (a mask per image, then its chain).

Sampling is sequential: D steps, one pixel each (NADE: O(H) per step, carrying a_d; MADE: one MLP pass per step).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_choice, check_positive
from ..errors import UserError
from .autoregressive import AR_DEFAULTS
from .common import BinaryImages, SingleLoss, require_binary
from .registry import register

ORDERINGS = ("raster", "random")
NADE_BLOCK = 28  # positions per block of NADE's prefix sums (8-28 measured equally fast; 112 is 35% slower)


def _ordering(kind: str, dim: int, seed: int) -> torch.Tensor:
    """Position -> pixel index (flattened C, H, W): raster order or a fixed random permutation."""
    if kind == "raster":
        return torch.arange(dim)
    return torch.randperm(dim, generator=torch.Generator().manual_seed(seed))


class BinaryFVBN(BinaryImages, SingleLoss):
    """What NADE and MADE share: the likelihood's loss in nats and bits/dim."""

    def losses(self, x, y=None):
        return self._terms(-self.log_prob(x).mean())

    def _terms(self, nll: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": nll, "bits_per_dim": nll / (self.info.dim * math.log(2))}


def bernoulli_log_prob(logits: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """sum_d log Bernoulli(v_d; sigmoid(l_d)), B x D -> B."""
    return -F.binary_cross_entropy_with_logits(logits, v, reduction="none").sum(1)


# ---------------------------------------------------------------------------------------------- NADE
@dataclass
class NADEConfig:
    units: int = 500  # H, the hidden units every conditional shares (the paper's 500)
    ordering: str = "raster"  # raster | random (a fixed permutation of the pixels)
    order_seed: int = 0  # the random ordering's seed

    def validate(self) -> None:
        check_positive("model.units", self.units)
        check_choice("model.ordering", self.ordering, ORDERINGS)


@register("nade", NADEConfig, AR_DEFAULTS)
class NADE(BinaryFVBN, nn.Module):
    """NADE: one hidden layer shared by all D conditionals, exact log-likelihood in O(HD)."""

    def __init__(self, cfg: NADEConfig, info):
        super().__init__()
        require_binary("nade", info)
        self.cfg, self.info = cfg, info
        d, h = info.dim, cfg.units
        self.register_buffer("order", _ordering(cfg.ordering, d, cfg.order_seed), persistent=False)
        self.W = nn.Parameter(torch.empty(h, d).uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d)))
        self.c = nn.Parameter(torch.zeros(h))
        self.V = nn.Parameter(torch.empty(d, h).uniform_(-1 / math.sqrt(h), 1 / math.sqrt(h)))
        self.b = nn.Parameter(torch.zeros(d))

    def conditional_logits(self, v: torch.Tensor) -> torch.Tensor:
        """Binary pixels B x D -> the logit of each conditional p(v_i = 1 | pixels before i), B x D (pixel order).

        a_d = c + sum_(d' < d) W[:, o(d')] x_o(d') is computed a block of S positions at a time: the sum over
        earlier blocks is carried (one B x S by S x H product a block), the one within the block is a product with
        the strictly lower-triangular S x S mask. The same O(BDH) values as a cumulative sum over a B x D x H
        tensor, but each block stays in cache: 4x faster than that cumsum on a CPU, forward and backward."""
        vo = v[:, self.order]  # B x D, in the ordering
        w, u, b = self.W[:, self.order].t(), self.V[self.order], self.b[self.order]  # D x H, D x H, D
        below = torch.tril(torch.ones(NADE_BLOCK, NADE_BLOCK, device=v.device, dtype=v.dtype), -1)
        carried = self.c.expand(len(v), -1)  # B x H: c + the pixels of earlier blocks
        logits = []
        for start in range(0, vo.shape[1], NADE_BLOCK):
            vb, wb = vo[:, start : start + NADE_BLOCK], w[start : start + NADE_BLOCK]  # B x S, S x H
            s = vb.shape[1]
            a = carried.unsqueeze(1) + (below[:s, :s] * vb.unsqueeze(1)) @ wb  # B x S x H
            logits.append((torch.sigmoid(a) * u[start : start + s]).sum(2))  # V[o(d)] . h_d -> B x S
            carried = carried + vb @ wb
        lo = torch.cat(logits, 1) + b  # B x D, in the ordering
        return torch.empty_like(lo).index_copy_(1, self.order, lo)  # back to pixel order

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x) in nats of the binary image; -> B."""
        v = self._bits(x)
        return bernoulli_log_prob(self.conditional_logits(v), v)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images drawn pixel by pixel in the ordering, carrying a_d (O(H) a step)."""
        device = self.W.device
        v = torch.zeros(n, self.info.dim, device=device)
        a = self.c.expand(n, -1).clone()  # n x H
        for i in self.order.tolist():
            p = torch.sigmoid(torch.sigmoid(a) @ self.V[i] + self.b[i])  # n
            v[:, i] = torch.bernoulli(p, generator=generator)
            a += v[:, i : i + 1] * self.W[:, i]
        return self._images(v)


# ---------------------------------------------------------------------------------------------- MADE
@dataclass
class MADEConfig:
    # hidden layer widths: one of 8,000, the paper's MNIST width (500 units reach only ~97 nats: BENCHMARKS.md)
    hidden: tuple[int, ...] = (8000,)
    masks: int = 1  # connectivity masks cycled in training; the test likelihood is their ensemble's
    order_agnostic: bool = False  # each mask also draws its own pixel ordering (else raster, or model.ordering)
    ordering: str = "raster"  # raster | random: the ordering of every mask when not order-agnostic
    mask_seed: int = 0  # the degrees' and orderings' seed

    def validate(self) -> None:
        if not self.hidden:
            raise UserError("model.hidden needs at least one layer: MADE's masks live in its hidden layers")
        for width in self.hidden:
            check_positive("model.hidden", width)
        check_positive("model.masks", self.masks)
        check_choice("model.ordering", self.ordering, ORDERINGS)


def made_masks(dim: int, hidden: tuple[int, ...], order: torch.Tensor, generator: torch.Generator) -> list:
    """One connectivity: the 0/1 masks of each layer (out x in), hidden layers first, then the output's."""
    degrees = [torch.empty(dim, dtype=torch.long)]
    degrees[0][order] = torch.arange(1, dim + 1)  # pixel o(d) has degree d
    for width in hidden:
        low = int(degrees[-1].min())
        degrees.append(torch.randint(low, max(low, dim - 1) + 1, (width,), generator=generator))
    masks = [(d_out.view(-1, 1) >= d_in.view(1, -1)).float() for d_in, d_out in zip(degrees, degrees[1:])]
    masks.append((degrees[0].view(-1, 1) > degrees[-1].view(1, -1)).float())  # output i sees degrees < m(i)
    return masks


@register("made", MADEConfig, AR_DEFAULTS)
class MADE(BinaryFVBN, nn.Module):
    """MADE: a masked MLP autoencoder, connectivity-agnostic training, an ensemble of masks at test time."""

    def __init__(self, cfg: MADEConfig, info):
        super().__init__()
        require_binary("made", info)
        self.cfg, self.info = cfg, info
        d = info.dim
        sizes = [d, *cfg.hidden, d]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes, sizes[1:]))
        g = torch.Generator().manual_seed(cfg.mask_seed)
        for k in range(cfg.masks):
            kind = "random" if cfg.order_agnostic else cfg.ordering
            order = _ordering(kind, d, cfg.mask_seed + k) if kind == "random" else torch.arange(d)
            self.register_buffer(f"order_{k}", order, persistent=False)
            for layer, mask in enumerate(made_masks(d, cfg.hidden, order, g)):
                self.register_buffer(f"mask_{k}_{layer}", mask, persistent=False)
        # which mask the next training batch uses: saved with the weights, so a resumed run continues the cycle
        self.register_buffer("next_mask", torch.zeros((), dtype=torch.long))

    def masked_weights(self, k: int) -> list[torch.Tensor]:
        """Each layer's weights under mask k (out x in)."""
        return [lin.weight * getattr(self, f"mask_{k}_{layer}") for layer, lin in enumerate(self.layers)]

    def conditional_logits(self, v: torch.Tensor, k: int) -> torch.Tensor:
        """Binary pixels B x D -> each conditional's logit under mask k, B x D (pixel order)."""
        h = v
        for layer, (lin, w) in enumerate(zip(self.layers, self.masked_weights(k))):
            h = F.linear(h, w, lin.bias)
            if layer < len(self.layers) - 1:
                h = F.relu(h)
        return h

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x) of the ensemble, log (1/K) sum_k p_k(x), in nats of the binary image; -> B."""
        v = self._bits(x)
        per_mask = torch.stack([bernoulli_log_prob(self.conditional_logits(v, k), v)
                                for k in range(self.cfg.masks)])  # K x B
        return torch.logsumexp(per_mask, 0) - math.log(self.cfg.masks)

    def losses(self, x, y=None):
        if not self.training:  # evaluation: the ensemble's exact likelihood
            return super().losses(x, y)
        k = int(self.next_mask)  # training: one mask per batch, in turn
        self.next_mask.fill_((k + 1) % self.cfg.masks)
        v = self._bits(x)
        return self._terms(-bernoulli_log_prob(self.conditional_logits(v, k), v).mean())

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images from the ensemble: a mask per image (uniformly), then its chain, pixel by pixel in the mask's
        order; each step updates the first layer by the drawn pixel's column and computes that pixel's output only."""
        device = self.layers[0].weight.device
        v = torch.zeros(n, self.info.dim, device=device)
        pick = torch.randint(self.cfg.masks, (n,), generator=generator, device=device)
        for k in range(self.cfg.masks):
            rows = (pick == k).nonzero().flatten()
            if len(rows) == 0:
                continue
            vk, weights = v[rows], self.masked_weights(k)  # masked once, not once per pixel
            (first, w_first), *middle, (last, w_last) = zip(self.layers, weights)
            a = F.linear(vk, w_first, first.bias)  # first layer's pre-activations, kept up to date: n x H1
            for i in getattr(self, f"order_{k}").tolist():
                h = F.relu(a)
                for lin, w in middle:
                    h = F.relu(F.linear(h, w, lin.bias))
                p = torch.sigmoid(h @ w_last[i] + last.bias[i])  # only pixel i's output: n
                vk[:, i] = torch.bernoulli(p, generator=generator)
                a += vk[:, i : i + 1] * w_first[:, i]  # v changed in pixel i only: a rank-one update, as NADE's
            v[rows] = vk
        return self._images(v)
