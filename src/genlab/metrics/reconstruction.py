"""Reconstruction error of models that encode and decode."""
from __future__ import annotations

import math

from .registry import MetricContext, metric


@metric("recon", "reconstruct", "reconstruction error: squared error per pixel and per image, PSNR")
def recon(ctx: MetricContext) -> dict:
    se, count = 0.0, 0
    width = 2.0 if ctx.run.data.range == "-11" else 1.0
    for x, y in ctx.batches():
        r = ctx.model.reconstruct(x, *ctx.label_args(y))
        se += float(((r - x) / width).pow(2).sum())
        count += len(x)
    dim = ctx.model.info.dim
    mse = se / (count * dim)
    return {"mse_per_pixel": mse, "sse_per_image": se / count,
            "psnr_db": 10 * math.log10(1.0 / mse) if mse > 0 else float("inf"),
            "protocol": {**ctx.base_protocol(), "scale": "pixels in [0, 1]"}}
