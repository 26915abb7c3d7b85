"""Encoder and decoder bodies that fit any image size, from 8x8 digits to 64x64.

- MLP: flatten -> Linear/act layers.
- Conv: 3x3 stride-2 convolutions, each halving the side with ceiling (28 -> 14 -> 7 -> 4); the decoder
  mirrors them with 3x3 stride-2 transposed convolutions whose output_padding restores the exact sizes
  (4 -> 7 -> 14 -> 28), so no size needs special-casing.
- DCGAN: the GAN family's networks (nn/dcgan.py), which Lucic et al. (2018) use for every model they compare,
  VAE included: 4x4 stride-2 convolutions with batch norm and LeakyReLU in the encoder (the discriminator's body),
  transposed ones with batch norm and ReLU in the decoder (the generator), `channels[0]` the first width (64 by
  default, doubling per stage), `hidden` at most one fully connected layer on both sides (InfoGAN's 1024). Image
  sides must halve evenly (8, 28, 32, 64, ...).

Sized to the data: `channels=()` asks for as many stages as bring both sides to 7 or less (widths 32, 64, ...,
at most 256): 28 px gets (32, 64), 32 px (32, 64, 128), 64 px (32, 64, 128, 256), so that no image size ends in a
huge dense layer; `arch="auto"` picks conv for images of 32 px and more, the MLP below.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError
from .dcgan import DCDiscriminator, DCGenerator


def mlp(sizes: list[int], act: type[nn.Module] = nn.ReLU, last_act: bool = False) -> nn.Sequential:
    """Linear layers sizes[0] -> sizes[1] -> ... with `act` between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_act:
            layers.append(act())
    return nn.Sequential(*layers)


def conv_sizes(side: int, n: int) -> list[int]:
    """Spatial side after each of n stride-2 convolutions with kernel 3, padding 1: ceil halving."""
    sizes = [side]
    for _ in range(n):
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


AUTO_CONV_SIDE = 32  # arch=auto: conv from this side on
CONV_TARGET_SIDE = 7  # channels=(): stages are added until both sides are at most this
FIRST_WIDTH, MAX_WIDTH = 32, 256
DCGAN_WIDTH = 64  # arch=dcgan with channels=(): the first stage's width (Radford et al., Lucic et al.)


def conv_plan(shape: tuple[int, int, int], arch: str, channels: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """(arch, channels) with "auto" and () resolved for images of `shape` (see the module docstring)."""
    _, h, w = shape
    if arch == "auto":
        arch = "conv" if min(h, w) >= AUTO_CONV_SIDE else "mlp"
    if arch == "conv" and not channels:
        widths = []
        while max(h, w) > CONV_TARGET_SIDE or not widths:
            widths.append(min(MAX_WIDTH, FIRST_WIDTH * 2 ** len(widths)))
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        channels = tuple(widths)
    if arch == "dcgan" and not channels:
        channels = (DCGAN_WIDTH,)
    return arch, channels


def _mlp_encoder(shape, hidden, channels, act):
    d = math.prod(shape)
    return nn.Sequential(nn.Flatten(), mlp([d, *hidden], act, last_act=True)), hidden[-1] if hidden else d


def _conv_encoder(shape, hidden, channels, act):
    c, h, w = shape
    layers: list[nn.Module] = []
    for c_in, c_out in zip((c, *channels[:-1]), channels):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), act()]
    hs, ws = conv_sizes(h, len(channels)), conv_sizes(w, len(channels))
    flat = channels[-1] * hs[-1] * ws[-1]
    layers.append(nn.Flatten())  # B x C' x h' x w' -> B x C'h'w'
    if hidden:
        layers.append(mlp([flat, *hidden], act, last_act=True))
    return nn.Sequential(*layers), hidden[-1] if hidden else flat


def _dcgan_encoder(shape, hidden, channels, act):
    body = DCDiscriminator(shape, width=channels[0], norm="batch", fc=dcgan_fc(hidden))
    return body, body.out_features


def _mlp_decoder(shape, hidden, channels, in_dim, act):
    c, h, w = shape
    return mlp([in_dim, *reversed(hidden), c * h * w], act)


def _conv_decoder(shape, hidden, channels, in_dim, act):
    c, h, w = shape
    hs, ws = conv_sizes(h, len(channels)), conv_sizes(w, len(channels))
    rev = tuple(reversed(channels))  # deepest first
    start = (rev[0], hs[-1], ws[-1])
    layers: list[nn.Module] = [mlp([in_dim, *reversed(hidden), math.prod(start)], act, last_act=True),
                               nn.Unflatten(1, start)]  # B x C'h'w' -> B x C' x h' x w'
    outs = (*rev[1:], c)
    for i, (c_in, c_out) in enumerate(zip(rev, outs)):
        # target side is hs[L-1-i]; transposed conv gives 2*in - 1 + output_padding
        th, tw = hs[-2 - i], ws[-2 - i]
        pad = (th - (2 * hs[-1 - i] - 1), tw - (2 * ws[-1 - i] - 1))
        layers.append(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=pad))
        if i < len(channels) - 1:
            layers.append(act())
    return nn.Sequential(*layers)


def _dcgan_decoder(shape, hidden, channels, in_dim, act):
    return DCGenerator(shape, in_dim, width=channels[0], fc=dcgan_fc(hidden))


def dcgan_fc(hidden: tuple[int, ...]) -> int:
    """arch=dcgan takes at most one fully connected layer (InfoGAN's 1024); () = none."""
    if len(hidden) > 1:
        raise UserError(f"model.arch=dcgan has at most one fully connected layer (model.hidden=[1024], as InfoGAN's "
                        f"networks), got hidden={list(hidden)}")
    return hidden[0] if hidden else 0


ENCODERS = {"mlp": _mlp_encoder, "conv": _conv_encoder, "dcgan": _dcgan_encoder}
DECODERS = {"mlp": _mlp_decoder, "conv": _conv_decoder, "dcgan": _dcgan_decoder}
BODIES = tuple(ENCODERS)  # the architectures a model may name outright
ARCHS = (*BODIES, "auto")


class Encoder(nn.Module):
    """x: B x C x H x W -> features: B x out_features (the last hidden layer, activated)."""

    def __init__(self, shape: tuple[int, int, int], arch: str, hidden: tuple[int, ...], channels: tuple[int, ...],
                 act: type[nn.Module] = nn.ReLU):
        super().__init__()
        arch, channels = conv_plan(shape, arch, channels)
        self.body, self.out_features = ENCODERS[arch](shape, tuple(hidden), tuple(channels), act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Decoder(nn.Module):
    """z: B x in_dim -> pre-activation image B x C x H x W (the model applies its output link)."""

    def __init__(self, shape: tuple[int, int, int], arch: str, hidden: tuple[int, ...], channels: tuple[int, ...],
                 in_dim: int, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.shape = shape
        arch, channels = conv_plan(shape, arch, channels)
        self.body = DECODERS[arch](shape, tuple(hidden), tuple(channels), in_dim, act)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).view(z.shape[0], *self.shape)
