"""Likelihood metrics: the ELBO and the importance-weighted (IWAE) bound for VAEs, exact NLL for models
with `log_prob`, in nats per image and bits per dimension.

Conventions (stated in every protocol):
- bits/dim = NLL_nats / (D ln 2), D = C * H * W.
- Binary data (dynamic or static binarisation): NLL of the binary image, no correction.
- 8-bit data modelled by a density on a continuous range [lo, hi] after uniform dequantisation
  x = lo + (u + U(0,1)) (hi - lo) / 256: the probability of the 8-bit image is bounded by the density
  times the bin volume, so NLL_discrete = NLL_density + D log(256 / (hi - lo)) (= D log 256 on [0, 1]).
"""
from __future__ import annotations

import math

from ..losses import discrete_nll
from ..progress import track
from .registry import MetricContext, metric


def bits_per_dim(nats: float, dim: int) -> float:
    return nats / (dim * math.log(2))


def _meaning(data_cfg) -> str:
    if data_cfg.binarize != "none":
        return f"NLL of {data_cfg.binarize}ally binarised images"
    if data_cfg.dequantize:
        return "NLL of 8-bit images (dequantised density + D log(256 / range width))"
    return "cross-entropy of grey levels: not a normalised likelihood"


def _to_discrete(nats: float, ctx: MetricContext, dim: int) -> float:
    return discrete_nll(nats, dim, ctx.run.data.range) if ctx.run.data.dequantize else nats


@metric("elbo", "elbo", "evidence lower bound on log p(x): nats per image and bits/dim (one posterior sample)")
def elbo(ctx: MetricContext) -> dict:
    total, count = 0.0, 0
    for x, y in ctx.batches():
        total += float(ctx.model.elbo(x, *ctx.label_args(y)).sum())
        count += len(x)
    dim = ctx.model.info.dim
    nats = _to_discrete(-total / count, ctx, dim)
    return {"elbo": total / count, "neg_elbo_nats": nats, "bits_per_dim": bits_per_dim(nats, dim),
            "protocol": {**ctx.base_protocol(), "posterior_samples": 1, "dim": dim, "meaning": _meaning(ctx.run.data)}}


@metric("nll", ("log_prob", "iwae"), "test NLL: exact for explicit densities, the IWAE-k bound for VAEs")
def nll(ctx: MetricContext) -> dict:
    model, dim = ctx.model, ctx.model.info.dim
    exact = hasattr(model, "log_prob")
    total, elbo_total, count = 0.0, 0.0, 0
    batch = ctx.batch_size if exact else 100  # IWAE holds batch x 100 decoded samples at a time
    data = ctx.data.subset(ctx.n)
    from ..data import Batches, Pipeline

    batches = Batches(data, Pipeline(ctx.run.data), batch, shuffle=False, drop_last=False, device=ctx.device)
    for x, y in track(batches.epoch(0), -(-len(data) // batch), "nll", ctx.progress):
        lab = ctx.label_args(y)
        if exact:
            total += float(model.log_prob(x, *lab).sum())
        else:
            total += float(model.iwae(x, *lab, k=ctx.iwae_k).sum())
            elbo_total += float(model.elbo(x, *lab).sum())
        count += len(x)
    nats = _to_discrete(-total / count, ctx, dim)
    out = {"nll_nats": nats, "bits_per_dim": bits_per_dim(nats, dim)}
    # a model whose log_prob is a bound (diffusion) says so, and what it measures
    proto = {**ctx.base_protocol(), "dim": dim, "meaning": getattr(model, "nll_meaning", None) or _meaning(ctx.run.data),
             "estimator": getattr(model, "nll_estimator", "exact") if exact
             else f"IWAE, k={ctx.iwae_k} importance samples per image"}
    if not exact:
        e = _to_discrete(-elbo_total / count, ctx, dim)
        out.update({"neg_elbo_nats": e, "elbo_bits_per_dim": bits_per_dim(e, dim)})
    return {**out, "protocol": proto}
