"""The metric registry. A metric is `fn(ctx) -> dict` of numbers plus a 'protocol' dict saying how
they were measured (split, sample count, binarisation, ...), so no number travels without it."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..data import Batches, ImageSet, Pipeline
from ..errors import UserError, unknown


@dataclass
class MetricContext:
    model: torch.nn.Module
    run: object  # RunConfig
    data: ImageSet  # the evaluation split, load-time transforms applied
    split: str
    n: int
    seed: int = 0
    batch_size: int = 500

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """The first n images of the split through the run's batch-time transforms, with fixed noise."""
        device = next(self.model.parameters()).device
        data = self.data.subset(self.n)
        yield from Batches(data, Pipeline(self.run.data), self.batch_size, shuffle=False, drop_last=False,
                           device=device).epoch(0)

    def base_protocol(self) -> dict:
        d = self.run.data
        return {"split": self.split, "n": min(self.n, len(self.data)), "data": d.source,
                "binarization": d.binarize, "dequantized": d.dequantize, "range": d.range}


@dataclass
class Metric:
    fn: Callable[[MetricContext], dict]
    needs: str  # the model capability it calls
    summary: str


METRICS: dict[str, Metric] = {}


def metric(name: str, needs: str, summary: str):
    def wrap(fn):
        METRICS[name] = Metric(fn, needs, summary)
        return fn

    return wrap


def evaluate(names: list[str], ctx: MetricContext) -> dict[str, dict]:
    for name in names:
        if name not in METRICS:
            raise unknown("metric", name, METRICS)
        need = METRICS[name].needs
        if not hasattr(ctx.model, need):
            raise UserError(f"metric '{name}' needs a model with `{need}`, and {ctx.run.model} has none")
    out = {}
    with torch.no_grad(), torch.random.fork_rng():
        for name in names:
            torch.manual_seed(ctx.seed)
            out[name] = METRICS[name].fn(ctx)
    return out


def _labels(cond: bool, y):
    return (y,) if cond else ()


@metric("elbo", "elbo", "evidence lower bound on log p(x), nats per image and bits/dim (one posterior sample)")
def elbo(ctx: MetricContext) -> dict:
    cond = getattr(ctx.model, "conditional", False)
    total, count = 0.0, 0
    for x, y in ctx.batches():
        total += float(ctx.model.elbo(x, *_labels(cond, y)).sum())
        count += len(x)
    mean = total / count
    dim = ctx.model.info.dim
    nats = -mean
    # a density on [0,1]^D becomes a probability of 8-bit bins by adding D log 256 (bins of width 1/256)
    if ctx.run.data.dequantize:
        nats += dim * math.log(256)
    note = "bound on -log p(x) of binary data" if ctx.run.data.binarize != "none" else (
        "discrete NLL bound of 8-bit data (dequantised, + D log 256)" if ctx.run.data.dequantize else
        "cross-entropy of grey levels: not a normalised likelihood")
    return {"elbo": mean, "neg_elbo_nats": nats, "bits_per_dim": nats / (dim * math.log(2)),
            "protocol": {**ctx.base_protocol(), "posterior_samples": 1, "dim": dim, "meaning": note}}


@metric("recon", "reconstruct", "reconstruction error: squared error per pixel and per image, PSNR")
def recon(ctx: MetricContext) -> dict:
    cond = getattr(ctx.model, "conditional", False)
    se, count = 0.0, 0
    lo_hi = 2.0 if ctx.run.data.range == "-11" else 1.0
    for x, y in ctx.batches():
        r = ctx.model.reconstruct(x, *_labels(cond, y))
        se += float(((r - x) / lo_hi).pow(2).sum())
        count += len(x)
    dim = ctx.model.info.dim
    mse_pixel = se / (count * dim)
    return {"mse_per_pixel": mse_pixel, "sse_per_image": se / count,
            "psnr_db": 10 * math.log10(1.0 / mse_pixel) if mse_pixel > 0 else float("inf"),
            "protocol": {**ctx.base_protocol(), "scale": "pixels in [0, 1]"}}
