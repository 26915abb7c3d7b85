"""Deterministic autoencoders: undercomplete (any depth, MLP or conv), sparse, denoising, contractive, linear.

    undercomplete   min  E ||x - g(f(x))||                  (dim z < dim x; depth > 1 = stacked AE)
    sparse          + lambda * sum_j |h_j|   or   + beta * sum_j KL(rho || rho_hat_j)   (Ng 2011)
    denoising       min  E ||x - g(f(x~))||,  x~ ~ C(x~ | x)                            (Vincent et al. 2008)
    contractive     + lambda * ||J_f(x)||_F^2                                           (Rifai et al. 2011)
    linear          f, g linear, squared error: g spans the top principal subspace       (Baldi & Hornik 1989)

The reconstruction error is binary cross-entropy for [0, 1] data or squared error (`loss`), summed over
pixels and averaged over the batch; or the perceptual distance in a fixed network's feature maps
(`loss=perceptual`, `perceptual_net`: models/perceptual.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import check_choice, check_positive
from ..data.corruptions import CORRUPTIONS, corrupt
from ..data.transforms import as_unit
from ..errors import UserError, unknown
from ..losses import bernoulli_nll, output_link, squared_error
from ..nn import BODIES, Decoder, Encoder
from .perceptual import NETWORKS as PERCEPTUAL_NETS
from .perceptual import PerceptualDistance
from .common import SingleLoss
from .registry import register

LOSSES = ("auto", "bce", "mse", "perceptual")


@dataclass
class AEConfig:
    arch: str = "mlp"  # mlp | conv | dcgan (nn/blocks.py)
    hidden: tuple[int, ...] = (512, 256)  # MLP widths (conv: widths after the conv stack)
    channels: tuple[int, ...] = ()  # conv widths, one stride-2 layer each; () = sized to the image (nn/blocks.py)
    latent_dim: int = 32
    # auto (bce on [0,1] data, else mse) | bce | mse | perceptual (distances in a fixed network's feature maps,
    # Johnson et al. 2016)
    loss: str = "auto"
    # the perceptual loss's network: auto (the MNIST classifier for 1x28x28, else efficientnet-lite0) | mnist |
    # efficientnet-lite0 (ImageNet features for colour images)
    perceptual_net: str = "auto"

    def validate(self) -> None:
        check_choice("model.arch", self.arch, BODIES)
        check_choice("model.loss", self.loss, LOSSES)
        check_choice("model.perceptual_net", self.perceptual_net, PERCEPTUAL_NETS)
        check_positive("model.latent_dim", self.latent_dim)


class AutoEncoder(SingleLoss, nn.Module):
    """Undercomplete autoencoder, MLP or convolutional; several hidden layers make it a stacked AE."""

    def __init__(self, cfg: AEConfig, info):
        super().__init__()
        self.cfg, self.info = cfg, info
        if cfg.loss == "bce" and info.range != "01":
            raise UserError("model.loss=bce needs data in [0, 1]: use --set data.range=01 or model.loss=mse")
        self.loss_kind = cfg.loss if cfg.loss != "auto" else ("bce" if info.range == "01" else "mse")
        self.perceptual = PerceptualDistance(info.shape, cfg.perceptual_net) if self.loss_kind == "perceptual" else None
        self.encoder, self.to_code = self.build_encoder(cfg, info)
        self.decoder = Decoder(info.shape, cfg.arch, cfg.hidden, cfg.channels, cfg.latent_dim)
        self.link = output_link(info.range)

    def build_encoder(self, cfg, info) -> tuple[nn.Module, nn.Module]:
        """(body, code head): body maps images to features, the head maps features to the code."""
        body = Encoder(info.shape, cfg.arch, cfg.hidden, cfg.channels)
        return body, nn.Sequential(nn.Linear(body.out_features, cfg.latent_dim), self.code_activation(cfg))

    def code_activation(self, cfg) -> nn.Module:
        return nn.Identity()

    # x: B x C x H x W -> z: B x latent_dim
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_code(self.encoder(x))

    # z: B x latent_dim -> x: B x C x H x W in the data range
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.link(self.decoder(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def recon_error(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-image reconstruction error of decoder pre-activations against clean x; -> B."""
        if self.loss_kind == "bce":
            return bernoulli_nll(logits, x)
        if self.perceptual is not None:
            return self.perceptual(as_unit(self.link(logits), self.info.range), as_unit(x, self.info.range))
        return squared_error(self.link(logits), x)

    def regularizer(self, x: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra loss terms (scalars, already weighted); none for the plain autoencoder."""
        return {}

    def corrupt_input(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def losses(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        z = self.encode(self.corrupt_input(x))
        recon = self.recon_error(self.decoder(z), x).mean()
        terms = self.regularizer(x, z)
        loss = recon
        for v in terms.values():
            loss = loss + v
        return {"loss": loss, "recon": recon, **terms}


register("ae", AEConfig)(AutoEncoder)


# ---------------------------------------------------------------- sparse
@dataclass
class SparseAEConfig(AEConfig):
    hidden: tuple[int, ...] = ()
    latent_dim: int = 1024  # overcomplete: more code units than MNIST pixels
    penalty: str = "l1"  # l1: lambda * sum_j |h_j|   kl: beta * sum_j KL(rho || rho_hat_j)
    weight: float = 1e-3  # lambda or beta
    rho: float = 0.05  # target mean activation for the KL penalty

    def validate(self) -> None:
        super().validate()
        check_choice("model.penalty", self.penalty, ("l1", "kl"))
        check_positive("model.weight", self.weight, allow_zero=True)
        if not 0 < self.rho < 1:
            raise UserError(f"model.rho must lie strictly between 0 and 1, got {self.rho}")


@register("sparse_ae", SparseAEConfig)
class SparseAE(AutoEncoder):
    """Overcomplete autoencoder with a sparsity penalty on the code (L1, or KL to a target activation rho)."""

    def code_activation(self, cfg):
        # KL needs codes in (0, 1) to read as firing rates; L1 works on non-negative ReLU codes.
        return nn.Sigmoid() if cfg.penalty == "kl" else nn.ReLU()

    def regularizer(self, x, z):
        if self.cfg.penalty == "l1":
            return {"sparsity": self.cfg.weight * z.abs().sum(1).mean()}
        rho, rho_hat = self.cfg.rho, z.mean(0).clamp(1e-6, 1 - 1e-6)  # rho_hat_j: mean activation of unit j
        kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))
        return {"sparsity": self.cfg.weight * kl.sum()}


# ---------------------------------------------------------------- denoising
@dataclass
class DenoisingAEConfig(AEConfig):
    hidden: tuple[int, ...] = ()
    latent_dim: int = 1024
    noise: str = "gaussian"  # gaussian | salt_pepper | mask | block | half | gray (colourisation)
    level: float = 0.3  # noise std as a fraction of the range, or fraction of pixels / block side

    def validate(self) -> None:
        super().validate()
        if self.noise not in CORRUPTIONS:
            raise unknown("noise type (model.noise)", self.noise, CORRUPTIONS)
        if not 0 <= self.level <= 1:
            raise UserError(f"model.level must lie in [0, 1], got {self.level}")


@register("denoising_ae", DenoisingAEConfig)
class DenoisingAE(AutoEncoder):
    """Overcomplete autoencoder that reconstructs clean images from corrupted ones (Gaussian, salt-and-pepper, masks)."""

    def corrupt_input(self, x):
        return corrupt(self.cfg.noise, x, self.cfg.level, self.info.range)


# ---------------------------------------------------------------- contractive
@dataclass
class ContractiveAEConfig(AEConfig):
    hidden: tuple[int, ...] = ()  # encoder layers before the code; () = Rifai et al.'s single layer
    latent_dim: int = 1024
    weight: float = 0.1  # lambda on ||J_f(x)||_F^2

    def validate(self) -> None:
        super().validate()
        if self.arch != "mlp":
            raise UserError("contractive_ae computes its exact Jacobian penalty for arch=mlp only")
        check_positive("model.weight", self.weight, allow_zero=True)


@register("contractive_ae", ContractiveAEConfig)
class ContractiveAE(AutoEncoder):
    """Overcomplete autoencoder penalised by the squared Frobenius norm of the encoder Jacobian (exact)."""

    def build_encoder(self, cfg, info):
        # a stack of sigmoid layers h_l = s(W_l h_{l-1} + b_l), the last being the code
        sizes = [info.dim, *cfg.hidden, cfg.latent_dim]
        return nn.Flatten(), nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def _layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        hs = [x.flatten(1)]
        for lin in self.to_code:
            hs.append(torch.sigmoid(lin(hs[-1])))
        return hs  # [x, h_1, ..., h_L = z]

    def encode(self, x):
        return self._layers(x)[-1]

    def jacobian_norm(self, x: torch.Tensor) -> torch.Tensor:
        """||J_f(x)||_F^2 per image, exactly, with J = D_L W_L ... D_1 W_1 and D_l = diag(h_l (1 - h_l)); -> B.

        One layer: sum_j (h_j (1 - h_j))^2 sum_i W_ji^2, which costs O(B d_z + d_z d_x).
        Deeper: the product is carried from the code back to the input, B x d_z x d_l at each layer.
        """
        hs = self._layers(x)
        ds = [h * (1 - h) for h in hs[1:]]  # sigmoid'(a_l) = h_l (1 - h_l); B x d_l
        weights = [lin.weight for lin in self.to_code]  # d_l x d_{l-1}
        if len(weights) == 1:
            return ds[0].pow(2) @ weights[0].pow(2).sum(1)
        m = ds[-1].unsqueeze(2) * weights[-1]  # B x d_L x d_{L-1}
        for d, w in zip(reversed(ds[:-1]), reversed(weights[:-1])):
            m = (m * d.unsqueeze(1)) @ w  # B x d_L x d_{l-1}
        return m.pow(2).sum((1, 2))

    def regularizer(self, x, z):
        return {"contractive": self.cfg.weight * self.jacobian_norm(x).mean()}


# ---------------------------------------------------------------- linear
@dataclass
class LinearAEConfig:
    latent_dim: int = 16

    def validate(self) -> None:
        check_positive("model.latent_dim", self.latent_dim)


@register("linear_ae", LinearAEConfig)
class LinearAE(SingleLoss, nn.Module):
    """Linear encoder and decoder with squared error; at its optimum the decoder spans PCA's top subspace."""

    def __init__(self, cfg: LinearAEConfig, info):
        super().__init__()
        self.cfg, self.info = cfg, info
        self.encoder = nn.Linear(info.dim, cfg.latent_dim)
        self.decoder = nn.Linear(cfg.latent_dim, info.dim)

    def encode(self, x):
        return self.encoder(x.flatten(1))  # B x C x H x W -> B x k

    def decode(self, z):
        return self.decoder(z).view(-1, *self.info.shape)  # B x k -> B x C x H x W

    def reconstruct(self, x):
        return self.decode(self.encode(x))

    def losses(self, x, y=None):
        recon = squared_error(self.reconstruct(x), x).mean()
        return {"loss": recon, "recon": recon}
