"""Generator and discriminator bodies following the DCGAN guidelines (Radford et al. 2016), for any
square-ish size whose side halves down to 4..7 (8, 28, 32, 64, ...), plus MLP versions for the original GAN.

    generator:     z -> 1x1 -> (transposed conv, stride 2, BN, ReLU)^n -> C x H x W   (no pooling, no FC hidden layers)
    discriminator: C x H x W -> (strided conv, norm, LeakyReLU 0.2)^n -> features -> heads

The side is halved while it stays even and above 4: 28 -> 14 -> 7 (n = 2), 32 -> 16 -> 8 -> 4 (n = 3),
64 -> 4 (n = 4), 8 -> 4 (n = 1). Widths double with depth from `width` at full resolution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ..errors import UserError


def downsampling_plan(height: int, width: int) -> tuple[int, int, int]:
    """(h0, w0, n): the smallest sides and the number of stride-2 stages between them and the image."""
    h, w, n = height, width, 0
    while h % 2 == 0 and w % 2 == 0 and min(h, w) > 4:
        h, w, n = h // 2, w // 2, n + 1
    if n == 0:
        raise UserError(f"the convolutional GAN networks need an even image side above 4 (8, 28, 32, 64, ...), "
                        f"got {height}x{width}; use --set data.pad=2 or data.resize=N, or arch=mlp")
    return h, w, n


def even_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """(C, H, W) with odd sides rounded up to even: the size the DCGAN stacks run at."""
    c, h, w = shape
    return c, h + h % 2, w + w % 2


def pad_even(x: torch.Tensor) -> torch.Tensor:
    """Replicate-pad odd sides of B x C x H x W images by one pixel (bottom/right); even sides pass unchanged."""
    ph, pw = x.shape[-2] % 2, x.shape[-1] % 2
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def crop_to(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Undo `pad_even` on generated images: keep the top-left H x W of B x C x H' x W'."""
    return x[..., : shape[1], : shape[2]]


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "layer":  # per-sample normalisation: keeps the gradient penalty per-sample (Gulrajani et al.)
        return nn.GroupNorm(1, c)
    return nn.Identity()


def _norm1d(kind: str, c: int) -> nn.Module:
    """`_norm` for B x c features: batch norm, layer norm (per sample) or none."""
    return {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}.get(kind, lambda _: nn.Identity())(c)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.'s initialisation, for `module.apply`: convolution and linear weights ~ N(0, 0.02^2),
    batch-norm scales ~ N(1, 0.02^2), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        # under spectral norm the stored weight is the parametrisation's original
        weight = module.parametrizations.weight.original if parametrize.is_parametrized(module, "weight") \
            else module.weight
        nn.init.normal_(weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGenerator(nn.Module):
    """z: B x in_dim -> pre-activation image B x C x H x W.

    `fc` > 0 opens with fully connected layers, z -> fc -> C' h0 w0 (each BN, ReLU), as in the InfoGAN MNIST
    networks that Lucic et al. (2018) benchmark; otherwise a transposed convolution maps z to C' x h0 x w0.
    """

    def __init__(self, shape: tuple[int, int, int], in_dim: int, width: int = 64, fc: int = 0):
        super().__init__()
        c, h, w = shape
        h0, w0, n = downsampling_plan(h, w)
        ch = width * 2 ** (n - 1)
        if fc:
            layers: list[nn.Module] = [
                nn.Flatten(), nn.Linear(in_dim, fc, bias=False), nn.BatchNorm1d(fc), nn.ReLU(),
                nn.Linear(fc, ch * h0 * w0, bias=False), nn.BatchNorm1d(ch * h0 * w0), nn.ReLU(),
                nn.Unflatten(1, (ch, h0, w0))]  # B x d x 1 x 1 -> B x C' x h0 x w0
        else:
            layers = [nn.ConvTranspose2d(in_dim, ch, (h0, w0), bias=False), nn.BatchNorm2d(ch), nn.ReLU()]
        for _ in range(n - 1):  # each stage doubles the side and halves the width
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU()]
            ch //= 2
        layers.append(nn.ConvTranspose2d(ch, c, 4, 2, 1))
        self.body = nn.Sequential(*layers)
        self.in_dim = in_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z.view(z.shape[0], self.in_dim, 1, 1))  # B x d -> B x d x 1 x 1 -> B x C x H x W


class DCDiscriminator(nn.Module):
    """x: B x C x H x W -> features B x out_features (the last conv stage, flattened, then with `fc` > 0 one
    fully connected layer of that width, normalised and LeakyReLU); heads live in the model."""

    def __init__(self, shape: tuple[int, int, int], width: int = 64, norm: str = "batch", sn: bool = False,
                 fc: int = 0):
        super().__init__()
        c, h, w = shape
        h0, w0, n = downsampling_plan(h, w)
        wrap = spectral_norm if sn else (lambda m: m)
        layers: list[nn.Module] = []
        ch_in, ch = c, width
        for i in range(n):  # no normalisation on the first layer (DCGAN)
            layers += [wrap(nn.Conv2d(ch_in, ch, 4, 2, 1, bias=i == 0 or norm == "none")),
                       _norm(norm if i else "none", ch), nn.LeakyReLU(0.2)]
            ch_in, ch = ch, ch * 2
        layers.append(nn.Flatten())  # B x C' x h0 x w0 -> B x C' h0 w0
        self.out_features = ch_in * h0 * w0
        if fc:
            layers += [wrap(nn.Linear(self.out_features, fc, bias=norm == "none")), _norm1d(norm, fc),
                       nn.LeakyReLU(0.2)]
            self.out_features = fc
        self.body = nn.Sequential(*layers)
        self.sn = sn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def head(self, out: int) -> nn.Module:
        """A linear head on the features (spectrally normalised like the body when sn is on)."""
        lin = nn.Linear(self.out_features, out)
        return spectral_norm(lin) if self.sn else lin


class MLPGenerator(nn.Module):
    """z: B x in_dim -> pre-activation image, through ReLU layers (the original GAN's generator); with
    `batch_norm`, each hidden layer is Linear -> BatchNorm -> ReLU, as the common reference implementations
    train it (without it the MLP game collapses to one or two digits on MNIST within an epoch)."""

    def __init__(self, shape: tuple[int, int, int], in_dim: int, hidden: tuple[int, ...], batch_norm: bool = False):
        super().__init__()
        c, h, w = shape
        layers: list[nn.Module] = []
        for a, b in zip((in_dim, *hidden[:-1]), hidden):
            layers += [nn.Linear(a, b, bias=not batch_norm), nn.BatchNorm1d(b), nn.ReLU()] if batch_norm \
                else [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(hidden[-1] if hidden else in_dim, c * h * w))
        self.body = nn.Sequential(*layers)
        self.shape = shape

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).view(z.shape[0], *self.shape)


class MLPDiscriminator(nn.Module):
    """x -> features through LeakyReLU layers, each followed by dropout at rate `dropout` (Goodfellow et al.
    regularised their discriminator with dropout); heads live in the model."""

    def __init__(self, shape: tuple[int, int, int], hidden: tuple[int, ...], sn: bool = False, dropout: float = 0.0):
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        c, h, w = shape
        dims = (c * h * w, *hidden)
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [wrap(nn.Linear(a, b)), nn.LeakyReLU(0.2)] + ([nn.Dropout(dropout)] if dropout else [])
        self.body = nn.Sequential(*layers)
        self.out_features = dims[-1]
        self.sn = sn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1))

    def head(self, out: int) -> nn.Module:
        lin = nn.Linear(self.out_features, out)
        return spectral_norm(lin) if self.sn else lin
