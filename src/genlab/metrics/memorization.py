"""Memorisation: is each sample a copy of a training image?

For every sample, its nearest training image in pixel space (L2 on [0, 1] pixels) and in feature space.
The yardstick is the held-out test set: how far test images lie from their nearest training image.
A model that memorises puts samples much closer to training images than fresh data from the same
distribution ever is. Figures: samples over their nearest neighbours (as in the papers), and the
distance distributions.
"""
from __future__ import annotations

import torch

from ..errors import UserError
from .cache import real_features
from .registry import MetricContext, metric

N_MEMO = 2000  # samples checked (each against the whole training split)
COPY_QUANTILE = 0.01  # 'suspiciously close': nearer than 99% of test images are to the training set


def nearest(queries: torch.Tensor, pool: torch.Tensor, block: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean nearest neighbour in `pool` (M x D) of each query (N x D): (distances N, indices N)."""
    dists, idx = [], []
    q = queries.flatten(1).float()
    p = pool.flatten(1).float()
    for i in range(0, len(q), block):
        d = torch.cdist(q[i : i + block], p)  # block x M
        m = d.min(1)
        dists.append(m.values)
        idx.append(m.indices)
    return torch.cat(dists), torch.cat(idx)


def _figure(samples, train_images, pix_idx, feat_idx, path, info) -> None:
    from ..viz import save_grid, upscale_for_display

    k = min(16, len(samples))
    rows = torch.cat([samples[:k], train_images[pix_idx[:k]], train_images[feat_idx[:k]]])
    save_grid(rows, path, nrow=k, scale=upscale_for_display(info.height))


def _histogram(sample_d, test_d, path, space: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    hi = float(torch.quantile(torch.cat([sample_d, test_d]), 0.995))
    bins = torch.linspace(0, hi, 50).numpy()
    ax.hist(test_d.numpy(), bins=bins, alpha=0.6, density=True, label="test image -> nearest train")
    ax.hist(sample_d.numpy(), bins=bins, alpha=0.6, density=True, label="sample -> nearest train")
    ax.set_xlabel(f"{space} distance to the nearest training image")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@metric("memorization", "sample", "nearest training image of each sample (pixels and features) against test images' own",
        uses=("features",))
def memorization(ctx: MetricContext) -> dict:
    if ctx.train is None or ctx.heldout is None:
        raise UserError("memorisation needs the dataset's train and test splits, and this source lacks one")
    n = min(ctx.n, N_MEMO, len(ctx.heldout))
    samples = ctx.samples()[:n]
    train_px = ctx.train.images.float() / 255
    test_px = ctx.heldout.images[:n].float() / 255
    s_pix, s_pix_idx = nearest(samples, train_px)
    t_pix, _ = nearest(test_px, train_px)
    train_f = ctx.reference_features("train", len(ctx.train))
    s_feat, s_feat_idx = nearest(ctx.sample_features()[:n], train_f)
    # the whole test split's features, as FID caches them, so they are extracted once for both
    test_f = real_features(ctx.extractor(), ctx.heldout, ctx.run.data, "test", len(ctx.heldout), ctx.progress)
    t_feat, _ = nearest(test_f[:n], train_f)
    out: dict = {}
    for space, s_d, t_d in (("pixel", s_pix, t_pix), ("feature", s_feat, t_feat)):
        thresh = torch.quantile(t_d, COPY_QUANTILE)
        out[f"{space}_median_sample_to_train"] = float(s_d.median())
        out[f"{space}_median_test_to_train"] = float(t_d.median())
        out[f"{space}_fraction_suspiciously_close"] = float((s_d < thresh).float().mean())
    if ctx.out_dir is not None:
        _figure(samples, train_px, s_pix_idx, s_feat_idx, ctx.out_dir / "memorization.png", ctx.model.info)
        _histogram(s_pix, t_pix, ctx.out_dir / "memorization_pixels.png", "pixel")
        _histogram(s_feat, t_feat, ctx.out_dir / "memorization_features.png", "feature")
    return {**out, "protocol": {"n_samples": n, "n_train": len(ctx.train), "n_test": n, "extractor": ctx.extractor().name,
                                "suspicious_if_below_test_quantile": COPY_QUANTILE, "sample_seed": ctx.seed,
                                "figures": "memorization.png rows: samples, nearest train (pixels), nearest train (features)"}}
