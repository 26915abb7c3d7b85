"""Generative Latent Optimization, GLO (Bojanowski et al. 2018, "Optimizing the Latent Space of Generative
Networks"): a generator trained without a discriminator, with one free latent vector per training image,
both optimised for reconstruction.

    min_{theta, z_1..z_N}  1/N sum_i loss(G_theta(z_i), x_i)      subject to  ||z_i||_2 = 1

    loss = Lap1(x, x') = sum_j 2^(2j) |L^j(x) - L^j(x')|_1       (loss=lap1, the default)
         = ||x - x'||_2^2                                         (loss=mse)

The weight 2^(2j) makes up for level j's 4^j times fewer pixels: every level counts alike per pixel (as the
per-level mean L1 of the reference implementations). With 2^(-2j) instead, the residual that carries an
image's mean brightness weighed 1/4096 of the finest band per pixel, and on MNIST the generator saturated to
all-white images that cost no more than black ones (loss 136 both ways) and never left them.
L^j is level j of a Laplacian pyramid, j = 0 the finest band: G^0 = x, G^{j+1} = downsample(blur(G^j)) with
the 5x5 binomial (Gaussian) kernel [1 4 6 4 1]^T [1 4 6 4 1] / 256, L^j = G^j - upsample(G^{j+1}) and the
last level is the low-pass residual itself. Blurring pads by replication and upsampling is bilinear, so
a constant image has all its energy in the residual. `levels` = 0 halves while the coarsest side stays >= 4.

G is the DCGAN generator (as in the paper), whose output goes through the data range's link (tanh for
[-1, 1], sigmoid for [0, 1]); odd image sides are generated one pixel larger and cropped.

Latents: an N x latent_dim table (one row per training image, N = DataInfo.num_train or model.num_train),
initialised by PCA of the pixels as in the paper, lazily: the first batch fixes the principal axes (as many
as it has images minus one, at most latent_dim), and each row becomes its image's coordinates on them,
projected to the unit sphere, the first time its image is in a batch (axes beyond the batch keep a small
share of the random start). From random rows alone, G has to learn 60k arbitrary code -> image pairs and
on MNIST still drew the mean image for every code after an epoch. The table and G take
one step per batch from one optimizer (two parameter groups: model.lr_z for the table), and every row is
projected back onto the unit sphere (L2 norm 1) after the step. The table's gradient is dense (N x d,
zero off the batch), so the configured optimizer and the trainer's clipping and all-reduce apply as
they are; under data parallelism the all-reduce averages each row's gradient over the ranks, which
scales the latents' effective rate by 1 / world.

The model needs to know which training images a batch holds: it declares `needs_indices = True` and the
trainer passes batches (x, y, index), index the images' positions in the training set.

Sampling: a full-covariance Gaussian fitted to the learned latents (`fit_latent_gaussian`, run lazily by
`sample` after training has changed them; stored in buffers, so checkpoints keep it), samples projected
to the sphere. Encoding a new image: gradient descent on the same loss over its latent, G frozen,
projected to the sphere after every step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_choice, check_positive
from ..errors import UserError
from ..losses import output_link, squared_error
from ..nn import DCGenerator, crop_to, even_shape
from ..optim import make_optimizer
from .common import all_gather_rows, frozen
from .registry import register

GLO_LOSSES = ("lap1", "mse")
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16


# ---------------------------------------------------------------------------------------------- Lap1
def auto_levels(height: int, width: int) -> int:
    """Pyramid levels (bands + residual) while the coarsest side stays at least 4."""
    n, side = 1, min(height, width)
    while (side + 1) // 2 >= 4:
        side, n = (side + 1) // 2, n + 1
    return n


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Depthwise 5x5 binomial blur with replicate padding (constants stay constant)."""
    c = x.shape[1]
    k = torch.outer(_BINOMIAL, _BINOMIAL).to(x).expand(c, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), k, groups=c)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[L^0, ..., L^{levels-2}, G^{levels-1}]: band-pass images, finest first, then the low-pass residual."""
    out, g = [], x
    for _ in range(levels - 1):
        down = _blur(g)[..., ::2, ::2]
        out.append(g - F.interpolate(down, size=g.shape[-2:], mode="bilinear", align_corners=False))
        g = down
    out.append(g)
    return out


def lap1_levels(x: torch.Tensor, y: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """The weighted terms 2^(2j) |L^j(x) - L^j(y)|_1 per image, one B-vector per level j."""
    return [4.0 ** j * (a - b).abs().flatten(1).sum(1)
            for j, (a, b) in enumerate(zip(laplacian_pyramid(x, levels), laplacian_pyramid(y, levels)))]


def lap1(x: torch.Tensor, y: torch.Tensor, levels: int) -> torch.Tensor:
    """Lap1(x, y) per image; -> B."""
    return torch.stack(lap1_levels(x, y, levels)).sum(0)


def to_sphere(z: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm."""
    return z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)


# ---------------------------------------------------------------------------------------------- model
@dataclass
class GLOConfig:
    latent_dim: int = 100
    width: int = 64  # the DCGAN generator's channels at full resolution, doubling with depth
    loss: str = "lap1"  # lap1 | mse
    levels: int = 0  # Laplacian pyramid levels; 0 = halve while the coarsest side stays >= 4
    num_train: int = 0  # rows of the latent table; 0 = the training set's size (DataInfo.num_train)
    lr_z: float = 0.0  # learning rate of the latent table; 0 = train.lr
    cov_eps: float = 1e-5  # added to the latent covariance's diagonal when fitting the sampling Gaussian

    def validate(self) -> None:
        check_choice("model.loss", self.loss, GLO_LOSSES)
        check_positive("model.latent_dim", self.latent_dim)
        check_positive("model.width", self.width)
        for name in ("levels", "num_train", "lr_z", "cov_eps"):
            check_positive(f"model.{name}", getattr(self, name), allow_zero=True)


@register("glo", GLOConfig, {"data": {"range": "-11"}})
class GLO(nn.Module):
    """GLO: a generator and one learned unit-norm latent per training image, fitted by Laplacian-pyramid L1."""

    needs_indices = True  # train_step takes (x, y, index): the trainer adds the images' dataset indices

    def __init__(self, cfg: GLOConfig, info):
        super().__init__()
        self.cfg, self.info = cfg, info
        n_data = getattr(info, "num_train", 0)
        if cfg.num_train and n_data and cfg.num_train != n_data:
            raise UserError(f"model.num_train={cfg.num_train} but the training set has {n_data} images; "
                            f"leave model.num_train at 0 to take it from the data")
        n = cfg.num_train or n_data
        if n <= 0:
            raise UserError("glo keeps one latent per training image and needs their number: the data info has "
                            "num_train = 0; set model.num_train")
        d = cfg.latent_dim
        self.G = DCGenerator(even_shape(info.shape), d, cfg.width)  # odd sides: generated even, cropped
        self.latents = nn.Embedding(n, d)
        with torch.no_grad():
            self.latents.weight.copy_(to_sphere(torch.randn(n, d)))
        self.levels = cfg.levels or auto_levels(info.height, info.width)
        self.link = output_link(info.range)
        # the sampling Gaussian N(mean, chol chol^T), refitted lazily once training has moved the latents
        self.register_buffer("latent_mean", torch.zeros(d))
        self.register_buffer("latent_chol", torch.eye(d))
        self.register_buffer("latent_fitted", torch.zeros(()))  # 1.0 once fitted (float: broadcastable by any backend)
        # PCA initialisation: the first batch's principal axes (D x d; zero columns past its rank), rows set so far
        self.register_buffer("pca_mean", torch.zeros(info.dim))
        self.register_buffer("pca_axes", torch.zeros(info.dim, d))
        self.register_buffer("pca_fitted", torch.zeros(()))
        self.register_buffer("row_initialised", torch.zeros(n, dtype=torch.bool))

    # ------------------------------------------------------------ loss
    def recon_loss(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Lap1 or squared error per image; -> B."""
        if self.cfg.loss == "mse":
            return squared_error(x_hat, x)
        return lap1(x_hat, x, self.levels)

    # ------------------------------------------------------------ capabilities
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) in the data range; z: B x latent_dim (G was trained on unit-norm codes)."""
        return self.link(crop_to(self.G(z), self.info.shape))

    def encode(self, x: torch.Tensor, steps: int = 100, lr: float = 0.05,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Latents of new images by projected gradient descent (Adam) on the training loss, G frozen in eval
        mode; starts from unit-norm N(0, I) draws of `generator` (default: seeded 0, so encoding is
        deterministic). -> B x latent_dim, each row of norm 1."""
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        z = to_sphere(torch.randn(len(x), self.cfg.latent_dim, generator=g, device=g.device))
        z = z.to(x.device).requires_grad_(True)
        x = x.detach()
        was_training = self.G.training
        self.G.eval()  # no batch statistics of, or running-stat updates from, the images being encoded
        try:
            with torch.enable_grad(), frozen(self.G):
                opt = torch.optim.Adam([z], lr=lr)
                for _ in range(steps):
                    opt.zero_grad(set_to_none=True)
                    self.recon_loss(self.decode(z), x).sum().backward()  # per image: each latent its own loss
                    opt.step()
                    with torch.no_grad():
                        z.copy_(to_sphere(z))
        finally:
            self.G.train(was_training)
        return z.detach()

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def fit_latent_gaussian(self) -> None:
        """Fit N(mean, cov) to the learned latents (full covariance, cov_eps on the diagonal) into the buffers."""
        z = self.latents.weight.detach().double()
        mean = z.mean(0)
        zc = z - mean
        cov = zc.T @ zc / max(len(z) - 1, 1) + self.cfg.cov_eps * torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
        self.latent_mean.copy_(mean)
        self.latent_chol.copy_(torch.linalg.cholesky(cov))
        self.latent_fitted.fill_(1.0)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images from latents drawn from the fitted Gaussian and projected to the sphere."""
        if not bool(self.latent_fitted):
            self.fit_latent_gaussian()
        eps = torch.randn(n, self.cfg.latent_dim, generator=generator, device=self.latent_mean.device)
        return self.decode(to_sphere(self.latent_mean + eps @ self.latent_chol.T))

    # ------------------------------------------------------------ training
    def configure_optimizers(self, cfg) -> dict[str, torch.optim.Optimizer]:
        groups = [{"params": list(self.G.parameters())},
                  {"params": [self.latents.weight], "lr": self.cfg.lr_z or cfg.lr}]
        return {"main": make_optimizer(groups, cfg)}

    @torch.no_grad()
    def pca_init(self, x: torch.Tensor, index: torch.Tensor) -> None:
        """Rows of `index` seen for the first time <- their images' PCA coordinates, on the unit sphere.
        Under data parallelism every rank sees every rank's batch here, so the table stays identical."""
        if bool(self.row_initialised.all()):
            return
        flat, index = all_gather_rows(x.flatten(1)), all_gather_rows(index)  # B x D, B
        if not bool(self.pca_fitted):
            self.pca_mean.copy_(flat.mean(0))
            _, _, vt = torch.linalg.svd(flat - self.pca_mean, full_matrices=False)  # rows: principal axes
            k = min(self.cfg.latent_dim, len(flat) - 1)
            self.pca_axes.zero_()
            self.pca_axes[:, :k] = vt[:k].T
            self.pca_fitted.fill_(1.0)
        new = ~self.row_initialised[index]
        if bool(new.any()):
            rows = index[new]
            coords = (flat[new] - self.pca_mean) @ self.pca_axes  # b x d, zero past the batch's rank
            start = 0.01 * self.latents.weight[rows] * (self.pca_axes.abs().sum(0) == 0)  # the unused axes
            self.latents.weight[rows] = to_sphere(coords / coords.norm(dim=1, keepdim=True).clamp_min(1e-12) + start)
            self.row_initialised[rows] = True

    def train_step(self, batch, opts, step: int) -> dict[str, torch.Tensor]:
        if len(batch) < 3:
            raise UserError("glo learns one latent per training image and needs each batch's indices: "
                            "train_step((x, y, index), ...); the genlab trainer passes them to models with "
                            "needs_indices = True")
        x, _, index = batch[:3]
        self.pca_init(x, index)
        loss = self.recon_loss(self.decode(self.latents(index)), x).mean()
        opts["main"].step(loss)
        with torch.no_grad():  # back onto the unit sphere (every row: Adam's momentum moves rows off the batch too)
            self.latents.weight.copy_(to_sphere(self.latents.weight))
        self.latent_fitted.fill_(0.0)
        return {"loss": loss.detach()}
