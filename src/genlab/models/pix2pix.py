"""pix2pix (Isola et al. 2017): a conditional GAN that maps an input image a to an output image b, trained on
pairs (a, b), with a U-Net generator and a PatchGAN discriminator that sees (input, output) pairs.

    G* = arg min_G max_D  L_cGAN(G, D) + lambda L_L1(G)
    L_cGAN = E_{a,b} log D(a, b) + E_a log(1 - D(a, G(a)))          (per patch logit, averaged)
    L_L1   = E_{a,b} ||b - G(a)||_1                                (per pixel, averaged; lambda = 100)

G maximises log D(a, G(a)) (the non-saturating form) and D's objective is halved, as in the paper. The noise z
of a conditional GAN is the dropout of G's innermost decoder layers, which the paper keeps at test time:
`translate(a, noise=True)` does the same; by default `translate` is deterministic (PyTorch's eval mode).

Pairs: from the data (model.pair = source), a paired source such as `pairs:DIR` (side-by-side input|target
images, the pix2pix datasets' format) or `pairs:A_DIR,B_DIR` (model.reverse translates target -> input); or
made from any source: every training image is the target b, and the input a is made from it by one of the
corruptions of `genlab.data.corruptions`: edges -> image, gray -> colour (colourisation), block -> image
(inpainting), downsample -> image (super-resolution), blur -> image (deblurring), or the noises (denoising).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import check_choice, check_positive
from ..data.corruptions import CORRUPTIONS, LEVELS, corrupt
from ..errors import UserError, unknown
from ..losses import d_loss, g_loss, output_link
from ..nn.image2image import PatchDiscriminator, UNetGenerator, auto_patch_layers, check_patch_fits
from ..optim import make_optimizer
from .common import DiscriminatorHealth, frozen
from .registry import register

PAIR_LOSSES = ("nonsaturating", "lsgan", "hinge")  # patch losses without a Lipschitz constraint to keep
# the paper's Adam 2e-4, beta1 0.5, constant rate then linear decay to zero; batch 1 at 256 px is 65,536 pixels a
# batch, which batch 64 gives at 32 px
PIX2PIX_DEFAULTS = {"data": {"range": "-11"},
                    "train": {"lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "batch_size": 64, "schedule": "half-linear"}}


@dataclass
class Pix2PixConfig:
    pair: str = "edges"  # source (the data's pairs, pairs:DIR) or the corruption that makes a from b (edges, gray, ...)
    reverse: bool = False  # with pair=source: translate target -> input (the pix2pix datasets' BtoA)
    level: float = 0.0  # the corruption's knob in (0, 1]; 0 = its default (edges 0.25, downsample 0.75: 4x, ...)
    width: int = 64  # channels of G's and D's first layer, doubling per level up to 8 x
    patch_layers: int = 0  # D's stride-2 layers (patch side 16, 34, 70, ... px); 0 = patches of at most half the image
    l1_weight: float = 100.0  # lambda
    dropout: float = 0.5  # on G's three innermost decoder layers (the paper's noise)
    loss: str = "nonsaturating"  # nonsaturating | lsgan | hinge
    norm: str = "batch"  # batch | instance | none, in G and D

    def validate(self) -> None:
        if self.pair != "source" and self.pair not in CORRUPTIONS:
            raise unknown("pair (model.pair)", self.pair, ["source", *CORRUPTIONS])
        if not 0 <= self.level <= 1:
            raise UserError(f"model.level must lie in [0, 1] (0 = the corruption's default), got {self.level}")
        check_positive("model.width", self.width)
        check_positive("model.patch_layers", self.patch_layers, allow_zero=True)
        check_positive("model.l1_weight", self.l1_weight, allow_zero=True)
        if not 0 <= self.dropout < 1:
            raise UserError(f"model.dropout is a rate in [0, 1), got {self.dropout}")
        check_choice("model.loss", self.loss, PAIR_LOSSES)
        check_choice("model.norm", self.norm, ("batch", "instance", "none"))


@register("pix2pix", Pix2PixConfig, PIX2PIX_DEFAULTS)
class Pix2Pix(DiscriminatorHealth, nn.Module):
    """pix2pix: U-Net generator, PatchGAN on (input, output) pairs, cGAN + 100 L1; pairs from data or a corruption."""

    takes_pairs = True

    def __init__(self, cfg: Pix2PixConfig, info):
        super().__init__()
        self.cfg, self.info = cfg, info
        if info.paired != (cfg.pair == "source"):
            raise UserError("the data are (input, target) pairs: set model.pair=source" if info.paired else
                            "model.pair=source takes a paired source (pairs:DIR or pairs:A_DIR,B_DIR)")
        c, h, w = info.shape
        c = c // 2 if info.paired else c  # a pair stacks input and target on the channels
        if cfg.pair == "gray" and c < 2:
            raise UserError("model.pair=gray (colourisation) needs colour images, and these have one channel")
        self.channels = c
        self.level = cfg.level or LEVELS.get(cfg.pair, 0.0)
        self.G = UNetGenerator(c, c, h, w, cfg.width, cfg.dropout, cfg.norm)
        layers = cfg.patch_layers or auto_patch_layers(min(h, w))
        check_patch_fits("pix2pix", h, w, layers)
        self.D = PatchDiscriminator(2 * c, cfg.width, layers, cfg.norm)
        self.link = output_link(info.range)
        self.tracks_d_probs = cfg.loss == "nonsaturating"

    # ------------------------------------------------------------ capabilities
    def make_input(self, b: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The input a of each target image b: the model's corruption at its level; B x C x H x W, same shape."""
        if self.cfg.pair == "source":
            raise UserError("this pix2pix learnt pairs from its data, not a corruption: give it inputs "
                            "(genlab translate --as-input) or a paired source")
        return corrupt(self.cfg.pair, b, self.level, self.info.range, generator)

    def pair_of(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(input a, target b) of a batch: the halves of stacked pairs, or the images and their corruption."""
        if not self.info.paired:
            return self.make_input(x, generator), x
        a, b = x[:, : self.channels], x[:, self.channels :]
        return (b, a) if self.cfg.reverse else (a, b)

    def translate(self, a: torch.Tensor, noise: bool = False) -> torch.Tensor:
        """G(a) in the data range; with `noise` the dropout stays on, as the paper samples."""
        drops = [m for m in self.G.modules() if isinstance(m, nn.Dropout)]
        modes = [m.training for m in drops]
        for m in drops:
            m.train(noise or m.training)
        try:
            return self.link(self.G(a))
        finally:
            for m, mode in zip(drops, modes):
                m.train(mode)

    def preview_count(self, samples: int) -> int:
        return max(1, samples // 3)

    def preview_grid(self, x: torch.Tensor, y, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        """The trainer's epoch grid: input, output and target side by side, about as many rows as columns."""
        a, b = self.pair_of(x, generator)
        return torch.stack([a, self.translate(a), b], 1).flatten(0, 1), 3 * max(1, round((len(b) / 3) ** 0.5))

    def patch_logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """D's patch logits for the pair (a, b): B x 1 x G x G."""
        return self.D(torch.cat([a, b], 1))

    # ------------------------------------------------------------ training
    def configure_optimizers(self, cfg) -> dict[str, torch.optim.Optimizer]:
        return {"d": make_optimizer(self.D.parameters(), cfg), "g": make_optimizer(self.G.parameters(), cfg)}

    def generator_terms(self, a: torch.Tensor, b: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """G's objective: adversarial term + lambda * mean |b - G(a)|."""
        adv = g_loss(self.cfg.loss, self.patch_logits(a, fake))
        l1 = (fake - b).abs().mean()
        return {"loss": adv + self.cfg.l1_weight * l1, "loss_g_adv": adv, "l1": l1}

    def losses(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """G's objective on a batch of pairs (or of targets, their inputs made here), for the test curve."""
        a, b = self.pair_of(x)
        return self.generator_terms(a, b, self.link(self.G(a)))

    def train_step(self, batch, opts, step: int) -> dict[str, torch.Tensor]:
        a, b = self.pair_of(batch[0])
        fake = self.link(self.G(a))
        real_out, fake_out = self.patch_logits(a, b), self.patch_logits(a, fake.detach())
        loss_d = 0.5 * d_loss(self.cfg.loss, real_out, fake_out)  # the paper halves D's objective
        opts["d"].step(loss_d)
        with frozen(self.D):
            terms = self.generator_terms(a, b, fake)
            opts["g"].step(terms["loss"])
        probs = self.cfg.loss == "nonsaturating"
        real_p, fake_p = (torch.sigmoid(real_out), torch.sigmoid(fake_out)) if probs else (real_out, fake_out)
        out = {"loss_d": loss_d.detach(), "d_real": real_p.detach().mean(), "d_fake": fake_p.detach().mean(),
               **{k: v.detach() for k, v in terms.items()}}
        self._track_health(out)
        return out
