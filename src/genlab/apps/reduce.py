"""Dimensionality reduction: a model's encoder as a reducer, measured against PCA at the same code size.

    LatentReducer(model).fit(x).transform(x) -> codes;  .inverse_transform(z) -> images (the decoder)
    PCAReducer(k).fit(x_train).transform(x)  -> the top-k principal coordinates;  .inverse_transform(z)
    PixelSpace().fit(x).transform(x)         -> the flattened pixels (the identity, for baselines)

Every reducer takes images N x C x H x W in the model's range (`model.info.range`) and returns CPU tensors;
`reconstruct(x)` = inverse_transform(transform(x)). The numbers (`reconstruction_scores`) are computed on
pixels in [0, 1]: mean squared error per pixel, PSNR per image (capped at 100 dB) and SSIM per image, each
averaged over the images. PCA reconstructions are clipped to the data range (which can only help PCA).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..data.transforms import RANGES, as_unit
from ..errors import UserError
from .metrics import psnr, ssim
from .registry import AppContext, app, batched, label_args, model_device, option, positive_int, require

PSNR_CAP_DB = 100.0


class LatentReducer:
    """A trained model as a reducer: transform = `model.encode`, inverse_transform = `model.decode`.

    Batched (`batch_size` images per call), under no_grad, on the model's device. A conditional model gets the
    labels `y` with the images (and with the codes when decoding).
    """

    def __init__(self, model, batch_size: int = 256, what: str = "this application"):
        self.model, self.batch_size, self.what = model, batch_size, what
        self.n_components_: int | None = None

    @property
    def value_range(self) -> str:
        return self.model.info.range

    def fit(self, x: torch.Tensor, y: torch.Tensor | None = None) -> "LatentReducer":
        """The model is trained already: fit checks it can encode and records the code size."""
        require(self.model, "encode", self.what)
        self.n_components_ = int(self.transform(x[:1], None if y is None else y[:1]).shape[1])
        return self

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        require(self.model, "encode", self.what)
        return batched(lambda xb, yb: self.model.encode(xb, *label_args(self.model, yb)).flatten(1),
                       x, y, self.batch_size, model_device(self.model))

    def inverse_transform(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        require(self.model, "decode", self.what)
        return batched(lambda zb, yb: self.model.decode(zb, *label_args(self.model, yb)),
                       z, y, self.batch_size, model_device(self.model))

    def fit_transform(self, x, y=None) -> torch.Tensor:
        return self.fit(x, y).transform(x, y)

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.inverse_transform(self.transform(x, y), y)


class PCAReducer:
    """Principal component analysis on flattened pixels (scikit-learn), with the reducer interface."""

    def __init__(self, n_components: int, value_range: str = "01", seed: int = 0):
        if n_components < 1:
            raise UserError(f"PCA needs at least one component, got {n_components}")
        self.n_components, self.value_range, self.seed = n_components, value_range, seed
        self.pca = None
        self.shape_: tuple[int, ...] | None = None
        self.n_components_: int | None = None

    def fit(self, x: torch.Tensor, y=None) -> "PCAReducer":
        from sklearn.decomposition import PCA

        flat = x.detach().float().cpu().flatten(1).numpy()
        self.shape_ = tuple(x.shape[1:])
        k = min(self.n_components, *flat.shape)
        self.pca = PCA(k, random_state=self.seed).fit(flat)
        self.n_components_ = k
        return self

    def _fitted(self):
        if self.pca is None:
            raise UserError("the PCA reducer is not fitted yet: call fit(x) first")
        return self.pca

    def transform(self, x: torch.Tensor, y=None) -> torch.Tensor:
        return torch.from_numpy(self._fitted().transform(x.detach().float().cpu().flatten(1).numpy())).float()

    def inverse_transform(self, z: torch.Tensor, y=None) -> torch.Tensor:
        flat = self._fitted().inverse_transform(np.asarray(z.detach().cpu(), dtype=np.float32))
        lo, hi = RANGES[self.value_range]
        return torch.from_numpy(flat).float().view(-1, *self.shape_).clamp(lo, hi)

    def fit_transform(self, x, y=None) -> torch.Tensor:
        return self.fit(x).transform(x)

    def reconstruct(self, x: torch.Tensor, y=None) -> torch.Tensor:
        return self.inverse_transform(self.transform(x))


class PixelSpace:
    """The identity reducer: codes are the flattened pixels (the pixel-space baseline of search and clustering)."""

    def __init__(self, value_range: str = "01"):
        self.value_range = value_range
        self.shape_: tuple[int, ...] | None = None
        self.n_components_: int | None = None

    def fit(self, x: torch.Tensor, y=None) -> "PixelSpace":
        self.shape_ = tuple(x.shape[1:])
        self.n_components_ = math.prod(self.shape_)
        return self

    def transform(self, x: torch.Tensor, y=None) -> torch.Tensor:
        return x.detach().float().cpu().flatten(1)

    def inverse_transform(self, z: torch.Tensor, y=None) -> torch.Tensor:
        return z.view(-1, *self.shape_)

    def fit_transform(self, x, y=None) -> torch.Tensor:
        return self.fit(x).transform(x)

    def reconstruct(self, x: torch.Tensor, y=None) -> torch.Tensor:
        return x.detach().float().cpu()


def reconstruction_scores(x: torch.Tensor, r: torch.Tensor, value_range: str = "01") -> dict[str, float]:
    """Images and their reconstructions (model range) -> mse per pixel, mean PSNR (capped), mean SSIM, on [0, 1]."""
    xu, ru = as_unit(x.float().cpu(), value_range), as_unit(r.float().cpu(), value_range)
    return {"mse_per_pixel": float((xu - ru).pow(2).mean()),
            "psnr_db": float(psnr(ru, xu, 1.0, max_db=PSNR_CAP_DB).mean()),
            "ssim": float(ssim(ru, xu, 1.0).mean())}


def compare(model, x_fit: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor | None = None,
            y_fit: torch.Tensor | None = None, batch_size: int = 256, seed: int = 0) -> dict:
    """Reconstruction error of the model's code against PCA with as many components (fitted on x_fit),
    both on x_test. -> {"results": {"latent": scores, "pca": scores}, "code_size": k}."""
    latent = LatentReducer(model, batch_size, "dimensionality reduction").fit(x_test, y_test)
    require(model, "decode", "dimensionality reduction")
    pca = PCAReducer(latent.n_components_, model.info.range, seed).fit(x_fit)
    rng = model.info.range
    return {"results": {"latent": reconstruction_scores(x_test, latent.reconstruct(x_test, y_test), rng),
                        "pca": reconstruction_scores(x_test, pca.reconstruct(x_test), rng)},
            "code_size": latent.n_components_, "pca_components": pca.n_components_}


# ---------------------------------------------------------------- figures
def scatter(panels: list[tuple[torch.Tensor, str]], labels: torch.Tensor | None, classes: list[str] | None,
            path, max_points: int = 5000) -> str:
    """One 2-D scatter per (codes N x d, title), points coloured by label with a legend; codes with d > 2 are
    shown on their first two principal axes (said in the axis labels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), dpi=110, squeeze=False)
    lab = None if labels is None else labels[:max_points].cpu().numpy()
    for ax, (codes, title) in zip(axes[0], panels):
        z = codes[:max_points].double().cpu().numpy()
        if z.shape[1] > 2:
            from sklearn.decomposition import PCA

            z = PCA(2, random_state=0).fit_transform(z)
            ax.set_xlabel("principal axis 1 of the codes")
            ax.set_ylabel("principal axis 2 of the codes")
        else:
            ax.set_xlabel("z1")
            ax.set_ylabel("z2" if z.shape[1] == 2 else "")
            if z.shape[1] == 1:
                z = np.c_[z, np.zeros(len(z))]
        if lab is None:
            ax.scatter(z[:, 0], z[:, 1], s=3, alpha=0.6, c="tab:blue", linewidths=0)
        else:
            cmap = plt.get_cmap("tab10" if lab.max() < 10 else "tab20")
            for c in np.unique(lab):
                m = lab == c
                name = classes[c] if classes and c < len(classes) else str(c)
                ax.scatter(z[m, 0], z[m, 1], s=3, alpha=0.7, color=cmap(int(c) % cmap.N), label=name, linewidths=0)
            ax.legend(fontsize=6, markerscale=3, loc="best", ncol=2 if len(np.unique(lab)) > 10 else 1)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def manifold_codes(model, codes: torch.Tensor, steps: int = 15) -> tuple[torch.Tensor, str]:
    """A steps x steps grid of 2-D codes over the latent range, row-major with z2 decreasing down the rows:
    Gaussian quantiles at probabilities 0.05..0.95 for a model with a N(0, I) prior (`elbo`: a VAE), else the
    1st..99th percentiles of the given codes. -> (steps^2 x 2 codes, how the range was chosen)."""
    if codes.shape[1] != 2:
        raise UserError(f"the manifold grid needs a 2-D latent space, this one has {codes.shape[1]} dimensions")
    if hasattr(model, "elbo"):
        from scipy.stats import norm

        axis = torch.from_numpy(norm.ppf(np.linspace(0.05, 0.95, steps))).float()
        axes, how = (axis, axis), "N(0, 1) quantiles at probabilities 0.05..0.95"
    else:
        lo, hi = torch.quantile(codes.float(), 0.01, dim=0), torch.quantile(codes.float(), 0.99, dim=0)
        axes = tuple(torch.linspace(float(lo[j]), float(hi[j]), steps) for j in range(2))
        how = "1st..99th percentiles of the test codes"
    z2, z1 = torch.meshgrid(axes[1].flip(0), axes[0], indexing="ij")
    return torch.stack([z1.flatten(), z2.flatten()], 1), how


# ---------------------------------------------------------------- the application
@app("reduce", ("encode", "decode"),
     "dimensionality reduction: reconstruction error against PCA at equal code size; latent scatter, manifold grid",
     options=(option("--fit-n", type=positive_int,
                     help="training images the PCA baseline is fitted on (default 10000)"),
              option("--grid", type=positive_int, help="side of the decoded manifold grid for 2-D codes (default 15)")))
def run(ctx: AppContext) -> dict:
    model = ctx.model
    x, y, classes = ctx.tensors()
    x_fit, _, _ = ctx.tensors("train", ctx.option("fit_n", 10000))
    y_arg = y if getattr(model, "conditional", False) else None
    latent = LatentReducer(model, ctx.batch_size, "genlab apply reduce").fit(x, y_arg)
    k = latent.n_components_
    pca = PCAReducer(k, ctx.info.range, ctx.seed).fit(x_fit)
    codes = latent.transform(x, y_arg)
    recon = latent.inverse_transform(codes, y_arg)
    pca_recon = pca.reconstruct(x)
    rng = ctx.info.range
    results = {"latent": reconstruction_scores(x, recon, rng), "pca": reconstruction_scores(x, pca_recon, rng)}
    proto = ctx.protocol(split=ctx.split, n=len(x), code_size=k, baseline=f"PCA with {pca.n_components_} components "
                         f"fitted on {len(x_fit)} training images", scale="pixels in [0, 1]",
                         psnr=f"per image, capped at {PSNR_CAP_DB:g} dB, averaged", ssim="Wang et al. 2004, per image")
    m = min(16, len(x))
    figures = [ctx.save_images(torch.cat([x[:m], recon[:m], pca_recon[:m]]), "reconstructions.png", nrow=m),
               scatter([(codes, f"{proto['model']} codes (d = {k})"), (pca.transform(x), f"PCA codes (k = {k})")],
                       y, classes, ctx.path("scatter.png"))]
    if k == 2:
        steps = ctx.option("grid", 15)
        grid_z, how = manifold_codes(model, codes, steps)
        y_grid = torch.zeros(len(grid_z), dtype=torch.long) if getattr(model, "conditional", False) else None
        figures.append(ctx.save_images(latent.inverse_transform(grid_z, y_grid), "manifold.png", nrow=steps))
        proto["manifold_grid"] = how + (" (class 0)" if y_grid is not None else "")
    proto["figures"] = "reconstructions.png rows: originals, model, PCA; scatter.png: codes coloured by label"
    return {"results": results, "protocol": proto, "figures": figures}
