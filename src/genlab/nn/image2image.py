"""Networks of the image-to-image GANs: pix2pix's U-Net generator and PatchGAN discriminator (Isola et al. 2017),
the residual generator of StarGAN and CycleGAN, and StarGAN's two-headed discriminator (Choi et al. 2018).

pix2pix's networks: Ck = Conv(4 x 4, stride 2) - norm - activation with k filters, CDk the same with dropout 0.5.

U-Net, n = log2(side) stride-2 levels (side padded up to a power of two: 8 levels and a 1 x 1 bottleneck at 256 px):

    encoder  C64 - C128 - C256 - C512 - C512 ... (width doubling per level, capped at 8 x width; LeakyReLU 0.2;
             no norm on the first level or at the 1 x 1 bottleneck)
    decoder  CD512 - CD512 - CD512 - C512 - C256 - C128 - C64 (transposed convs, ReLU), the output of each
             level concatenated with the encoder's activation of the same size (the skips), then a last
             transposed conv to the output channels (the model applies tanh or sigmoid)

PatchGAN with L stride-2 layers: C64 - C128 ... (L of them, no norm on the first) - Ck (stride 1) - conv to one
logit (stride 1); each logit judges one patch of the input, the receptive field

    RF(L) = 9 * 2^L - 2:  16, 34, 70, 142 px for L = 1, 2, 3, 4

(L = 3: the paper's 70 x 70 patches). The logits form a grid of floor(side / 2^L) - 2 per side.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError


def patch_receptive_field(layers: int) -> int:
    """Side of the input patch one PatchGAN logit sees: back through the two stride-1 and the `layers`
    stride-2 convolutions (kernel 4), rf <- (rf - 1) * stride + 4."""
    rf = 1
    for stride in [1, 1] + [2] * layers:
        rf = (rf - 1) * stride + 4
    return rf


def patch_grid(side: int, layers: int) -> int:
    """Logits per side of the PatchGAN output for inputs of this side."""
    for _ in range(layers):
        side = (side + 2 - 4) // 2 + 1  # kernel 4, stride 2, padding 1
    return side - 2  # two kernel-4, stride-1, padding-1 convolutions


def auto_patch_layers(side: int) -> int:
    """The most stride-2 layers whose patch is at most half the image side (the paper's ratio: 70 px of 256),
    at least 1: 3 at 256 px, 1 at 28-64 px."""
    layers = 1
    while patch_receptive_field(layers + 1) <= side / 2:
        layers += 1
    return layers


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "instance":  # with a learned scale and shift, as StarGAN's
        return nn.InstanceNorm2d(c, affine=True)
    return nn.BatchNorm2d(c) if kind == "batch" else nn.Identity()


class UNetGenerator(nn.Module):
    """Input image B x C_in x H x W -> pre-activation output B x C_out x H x W (module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, height: int, width_px: int, width: int = 64,
                 dropout: float = 0.5, norm: str = "batch"):
        super().__init__()
        self.levels = max(1, math.ceil(math.log2(max(height, width_px))))
        self.side = 2 ** self.levels  # inputs are zero-padded up to this square
        chans = [width * min(2 ** i, 8) for i in range(self.levels)]
        inner = self.levels - 1
        self.down = nn.ModuleList([nn.Conv2d(in_channels, chans[0], 4, 2, 1)])
        for i in range(1, self.levels):
            self.down.append(nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(chans[i - 1], chans[i], 4, 2, 1),
                                           _norm("none" if i == inner else norm, chans[i])))
        # up[i] maps level i's output (concatenated with the skip below the innermost) to level i - 1's size
        self.up = nn.ModuleList()
        for i in range(self.levels):
            c_in = chans[i] * (1 if i == inner else 2)
            if i == 0:
                self.up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(c_in, out_channels, 4, 2, 1)))
                continue
            drop = [nn.Dropout(dropout)] if dropout and i >= self.levels - 3 else []  # the 3 innermost: CD
            self.up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(c_in, chans[i - 1], 4, 2, 1),
                                         _norm(norm, chans[i - 1]), *drop))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, self.side - w, 0, self.side - h))  # B x C x S x S, S = 2^levels
        skips = []
        for down in self.down:
            x = down(x)  # side halves
            skips.append(x)
        x = self.up[-1](skips.pop())  # the bottleneck, 1 x 1, back to 2 x 2
        for up in reversed(self.up[:-1]):
            x = up(torch.cat([x, skips.pop()], 1))  # skip: B x 2c x s x s -> B x c' x 2s x 2s
        return x[..., :h, :w]  # crop the padding


class PatchDiscriminator(nn.Module):
    """(B x C x H x W) -> patch logits B x 1 x G x G, G = patch_grid(side, layers) (module docstring)."""

    def __init__(self, in_channels: int, width: int = 64, layers: int = 3, norm: str = "batch"):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = width
        for i in range(1, layers + 1):  # layers - 1 more stride-2 convs, then one of stride 1
            c_out = width * min(2 ** i, 8)
            mods += [nn.Conv2d(c, c_out, 4, 2 if i < layers else 1, 1, bias=norm == "none"), _norm(norm, c_out),
                     nn.LeakyReLU(0.2)]
            c = c_out
        mods.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.body = nn.Sequential(*mods)
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def check_patch_fits(model: str, height: int, width: int, layers: int) -> None:
    """UserError when images are too small for the discriminator's patches."""
    if min(patch_grid(height, layers), patch_grid(width, layers)) < 1:
        raise UserError(f"{model}'s discriminator with {layers} stride-2 layers needs images of at least "
                        f"{2 ** layers * 3} px a side, and these are {height} x {width}: lower model.patch_layers "
                        f"or set data.resize")


# ---------------------------------------------------------------------------------------------- StarGAN, CycleGAN
class ResidualBlock(nn.Module):
    """x + conv3-norm-ReLU-conv3-norm(x), channels kept."""

    def __init__(self, c: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), _norm(norm, c), nn.ReLU(),
                                  nn.Conv2d(c, c, 3, 1, 1, bias=False), _norm(norm, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """The StarGAN / CycleGAN generator: c7s1-w, two stride-2 downsamplings (2w, 4w), `blocks` residual blocks at
    a quarter of the side, two transposed-conv upsamplings, c7s1 to the output channels (pre-activation).
    B x C_in x H x W -> B x C_out x H x W; sides are zero-padded up to multiples of 4 and the output cropped.
    `kernel` 4 is StarGAN's down/up convolution, 3 CycleGAN's."""

    def __init__(self, in_channels: int, out_channels: int, width: int = 64, blocks: int = 6, norm: str = "instance",
                 kernel: int = 4):
        super().__init__()
        op = 1 if kernel == 3 else 0  # output_padding so that a stride-2 transposed conv exactly doubles the side
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 7, 1, 3, bias=False), _norm(norm, width), nn.ReLU()]
        c = width
        for _ in range(2):  # side halves, channels double
            layers += [nn.Conv2d(c, 2 * c, kernel, 2, 1, bias=False), _norm(norm, 2 * c), nn.ReLU()]
            c *= 2
        layers += [ResidualBlock(c, norm) for _ in range(blocks)]
        for _ in range(2):  # side doubles, channels halve
            layers += [nn.ConvTranspose2d(c, c // 2, kernel, 2, 1, output_padding=op, bias=False),
                       _norm(norm, c // 2), nn.ReLU()]
            c //= 2
        layers.append(nn.Conv2d(c, out_channels, 7, 1, 3))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % 4, 0, -h % 4))  # B x C x H' x W', multiples of 4
        return self.body(x)[..., :h, :w]


def star_layers(side: int) -> int:
    """StarGAN's discriminator depth for this side: 6 stride-2 layers at 128 px (a 2 x 2 map), log2(side) - 1
    in general, at least 1."""
    return max(1, round(math.log2(side)) - 1)


class StarDiscriminator(nn.Module):
    """StarGAN's D: `layers` stride-2 4 x 4 convolutions (LeakyReLU 0.01, no norm, channels doubling from `width`),
    then two heads on the last map: D_src, a 3 x 3 conv to one critic value per patch (B x 1 x g x g), and D_cls,
    a conv as large as the map to one logit per domain (B x K)."""

    def __init__(self, in_channels: int, height: int, width_px: int, num_domains: int, width: int = 64):
        super().__init__()
        layers = star_layers(min(height, width_px))
        mods: list[nn.Module] = []
        c_in, c = in_channels, width
        for _ in range(layers):
            mods += [nn.Conv2d(c_in, c, 4, 2, 1), nn.LeakyReLU(0.01)]
            c_in, c = c, 2 * c
            height, width_px = height // 2, width_px // 2  # kernel 4, stride 2, padding 1: floor(side / 2)
        if min(height, width_px) < 1:
            raise UserError(f"the images are too small for StarGAN's discriminator ({layers} halvings)")
        self.body = nn.Sequential(*mods)
        self.src = nn.Conv2d(c_in, 1, 3, 1, 1, bias=False)
        self.cls = nn.Conv2d(c_in, num_domains, (height, width_px), bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.src(h), self.cls(h).flatten(1)  # B x 1 x g x g, B x K
